//! The module-level codec functions: the registry key/value helpers of
//! SPEC §6 (`registry_key`, `decode_registry_key`, `encode_registry_value`,
//! `decode_registry_value`), `decode_entry` and `is_encryption_opcode`
//! (§2, §7), the node-id helpers of §7 (`derive_node_id`, `node_id16`,
//! `find_node_id_collisions`), and `hex_ids`, node ids as the frames show
//! them.

use pyo3::buffer::{Element, PyBuffer};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use super::convert::{bytes_arg, U16, U32, U64, U8};
use super::errors::{corruption_to_py, malformed_to_py};
use super::payloads::entry_to_py;
use crate::nodeid;
use crate::registry::{self as codec, CorruptionKind, RegistryCorruption, RegistryValue};
use crate::wire::{self, Entry};

/// The 27-byte registry key of a row: `b"!encryption|writers|" ‖ dek_id u32
/// ‖ b"|" ‖ node_id16 u16`, big-endian.
///
/// ```pycon
/// >>> ea.registry_key(1, 0x0001)
/// b'!encryption|writers|\x00\x00\x00\x01|\x00\x01'
/// >>> ea.decode_registry_key(ea.registry_key(1, 0x0001))
/// (1, 1)
///
/// ```
#[pyfunction]
pub(super) fn registry_key<'py>(
    py: Python<'py>,
    dek_id: U32,
    node_id16: U16,
) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &codec::registry_key(dek_id.value(), node_id16.value()))
}

/// `(dek_id, node_id16)` from a registry key; `RegistryCorruptionError`
/// for a key of the wrong length or layout.
///
/// ```pycon
/// >>> ea.decode_registry_key(b"!encryption|writers|\x00\x00\x00\x07|\xd4\xc0")
/// (7, 54464)
///
/// ```
#[pyfunction]
pub(super) fn decode_registry_key(py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<(u32, u16)> {
    let bytes = bytes_arg(key, "key")?;
    codec::decode_registry_key(&bytes).map_err(|c| corruption_to_py(py, &c))
}

/// The 12-byte registry value: `full_node_id u64 ‖ first u16 ‖ last u16`,
/// big-endian, where `first`/`last` are the first- and last-seen local epochs.
///
/// ```pycon
/// >>> ea.encode_registry_value(0xABCD0001, 1, 2).hex()
/// '00000000abcd000100010002'
///
/// ```
#[pyfunction]
#[pyo3(signature = (full_node_id, first, last))]
pub(super) fn encode_registry_value(
    py: Python<'_>,
    full_node_id: U64,
    first: U16,
    last: U16,
) -> Bound<'_, PyBytes> {
    PyBytes::new(
        py,
        &codec::encode_registry_value(&RegistryValue {
            full_node_id: full_node_id.value(),
            first_seen_local_epoch: first.value(),
            last_seen_local_epoch: last.value(),
        }),
    )
}

/// `(full_node_id, first, last)` from a registry value;
/// `RegistryCorruptionError` (`problem="value_length"`) unless it is 12 bytes.
///
/// ```pycon
/// >>> full, first, last = ea.decode_registry_value(bytes.fromhex("00000000abcd000100010002"))
/// >>> hex(full), first, last
/// ('0xabcd0001', 1, 2)
///
/// ```
#[pyfunction]
pub(super) fn decode_registry_value(
    py: Python<'_>,
    value: &Bound<'_, PyAny>,
) -> PyResult<(u64, u16, u16)> {
    let bytes = bytes_arg(value, "value")?;
    match codec::decode_registry_value(&bytes) {
        Some(v) => Ok((
            v.full_node_id,
            v.first_seen_local_epoch,
            v.last_seen_local_epoch,
        )),
        None => Err(corruption_to_py(
            py,
            &RegistryCorruption {
                kind: CorruptionKind::ValueLength,
                key: Vec::new(),
                value: Some(codec::value_excerpt(&bytes)),
                value_len: bytes.len(),
                dek_id: None,
                node_id16: None,
            },
        )),
    }
}

/// Decodes `opcode ‖ payload` into a Registration, Bootstrap or Rotation.
///
/// ```pycon
/// >>> ea.decode_entry(bytes.fromhex("03010000000100000000abcd00010002"))
/// Registration(dek_id=1, full_node_id=0xabcd0001, local_epoch=2)
/// >>> ea.decode_entry(b"\x06")
/// Traceback (most recent call last):
///   ...
/// encryption_applier.MalformedPayloadError: malformed entry payload: opcode 0x06 is reserved for encryption and must not be applied
///
/// ```
#[pyfunction]
pub(super) fn decode_entry(py: Python<'_>, entry: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let bytes = bytes_arg(entry, "entry")?;
    let decoded = Entry::decode(&bytes).map_err(|m| malformed_to_py(py, &m))?;
    entry_to_py(py, decoded)
}

/// elastickv's DeriveNodeID: FNV-1a 64 of the Raft id's UTF-8 bytes; ""
/// gives 0 and a hash of 0 becomes 1.
///
/// ```pycon
/// >>> full = ea.derive_node_id("n1")
/// >>> hex(full), hex(ea.node_id16(full))
/// ('0x8b37b07b558d4c0', '0xd4c0')
///
/// ```
#[pyfunction]
pub(super) fn derive_node_id(raft_id: &str) -> u64 {
    nodeid::derive_node_id(raft_id)
}

/// The low 16 bits of a full node id: its nonce prefix and registry key part.
///
/// ```pycon
/// >>> hex(ea.node_id16(0xABCD0001))
/// '0x1'
///
/// ```
#[pyfunction]
pub(super) fn node_id16(full_node_id: U64) -> u16 {
    wire::node_id16(full_node_id.value())
}

/// Pairs of distinct ids sharing their low 16 bits, `(first seen, later)`
/// in input order; zero ids and repeats are ignored.
///
/// ```pycon
/// >>> [(hex(a), hex(b)) for a, b in ea.find_node_id_collisions([0xABCD0001, 0xFFFF0001, 0x2])]
/// [('0xabcd0001', '0xffff0001')]
///
/// ```
#[pyfunction]
pub(super) fn find_node_id_collisions(ids: Vec<U64>) -> Vec<(u64, u64)> {
    let ids: Vec<u64> = ids.iter().map(U64::value).collect();
    nodeid::find_node_id_collisions(&ids)
}

/// Whether `opcode` is in the encryption range 0x03–0x07 (0x06 and 0x07 are
/// reserved: an applier halts on them rather than skip them).
///
/// ```pycon
/// >>> ea.is_encryption_opcode(ea.OP_REGISTRATION), ea.is_encryption_opcode(0x06), ea.is_encryption_opcode(0x01)
/// (True, True, False)
///
/// ```
#[pyfunction]
pub(super) fn is_encryption_opcode(opcode: U8) -> bool {
    wire::is_encryption_opcode(opcode.value())
}

/// Each id of `ids` (a buffer of unsigned 16-, 32- or 64-bit integers:
/// `array.array` `'H'`/`'I'`/`'Q'`, a numpy array or a memoryview of one,
/// such as `Registry.columns()["full_node_id"]`) as `0x` and `digits`
/// (4 or 16) lower-case hex digits, the way the CLI and the frames show
/// node ids: one loop in Rust instead of a format per row in Python
/// (`to_pandas`). A 16-bit buffer is read as it is, not widened first.
/// Private to the package (`_frames.py`).
#[pyfunction]
#[pyo3(name = "_hex_ids")]
pub(super) fn hex_ids<'py>(
    py: Python<'py>,
    ids: &Bound<'py, PyAny>,
    digits: usize,
) -> PyResult<Bound<'py, PyList>> {
    if digits != 4 && digits != 16 {
        return Err(PyValueError::new_err(format!(
            "digits must be 4 (a node_id16) or 16 (a full node id), not {digits}"
        )));
    }
    // An empty array has no buffer to align (a null pointer), which
    // PyBuffer refuses: nothing to read anyway.
    if ids.len()? == 0 {
        return Ok(PyList::empty(py));
    }
    if let Ok(buffer) = PyBuffer::<u16>::get(ids) {
        return hex_list(py, &buffer, digits);
    }
    if let Ok(buffer) = PyBuffer::<u32>::get(ids) {
        return hex_list(py, &buffer, digits);
    }
    match PyBuffer::<u64>::get(ids) {
        Ok(buffer) => hex_list(py, &buffer, digits),
        Err(_) => Err(PyTypeError::new_err(format!(
            "ids must be a buffer of unsigned 16-, 32- or 64-bit integers \
             (array.array 'H', 'I' or 'Q', or a numpy array), not {}",
            ids.get_type().name()?
        ))),
    }
}

/// Two lower-case hex digits for each byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        pairs[b] = [HEX[b >> 4], HEX[b & 0xF]];
        b += 1;
    }
    pairs
};

/// `hex_ids` over one buffer's element type. The ids are copied out
/// first: making the strings can run Python code (a collection), which
/// could change a buffer read in place.
fn hex_list<'py, T: Element + Copy + Into<u64>>(
    py: Python<'py>,
    buffer: &PyBuffer<T>,
    digits: usize,
) -> PyResult<Bound<'py, PyList>> {
    let values = buffer.to_vec(py)?;
    hex_strings(py, values.iter().map(|&v| v.into()), digits)
}

/// The strings of `hex_ids`: a range check first (a failed call builds
/// nothing), then one string per id.
fn hex_strings<'py>(
    py: Python<'py>,
    ids: impl ExactSizeIterator<Item = u64> + Clone,
    digits: usize,
) -> PyResult<Bound<'py, PyList>> {
    if digits == 4 {
        if let Some(big) = ids.clone().find(|&v| v > 0xFFFF) {
            return Err(PyValueError::new_err(format!(
                "{big:#x} does not fit 4 hex digits"
            )));
        }
    }
    let bytes = digits / 2;
    let mut text = [0u8; 18];
    text[..2].copy_from_slice(b"0x");
    let strings = ids.map(|v| {
        for (i, &b) in v.to_be_bytes()[8 - bytes..].iter().enumerate() {
            text[2 + 2 * i..4 + 2 * i].copy_from_slice(&HEX_PAIRS[usize::from(b)]);
        }
        // ASCII by construction.
        PyString::new(
            py,
            std::str::from_utf8(&text[..2 + digits]).unwrap_or("0x?"),
        )
    });
    PyList::new(py, strings)
}
