//! Python values to core types and back, shared by every class file:
//! byte-like arguments, checked unsigned ints, purposes and outcome
//! strings, and the `group_commit=` count. It serves no Python name of its own.

use std::borrow::Cow;

use pyo3::exceptions::{PyException, PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyInt, PyList, PyMemoryView, PyString};

use super::py_imports::PURPOSE_ENUM;
use crate::rules::Outcome;
use crate::wire::Purpose;

/// Accepts `bytes`, `bytearray` or `memoryview`; refuses `str`, ints and
/// sequences, which `bytes(x)` would silently accept.
pub(super) fn bytes_arg<'a>(obj: &'a Bound<'_, PyAny>, what: &str) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Cow::Owned(b.to_vec()));
    }
    if obj.cast::<PyMemoryView>().is_ok() {
        let b: Vec<u8> = obj.call_method0("tobytes")?.extract()?;
        return Ok(Cow::Owned(b));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be bytes, bytearray or memoryview, not {}",
        obj.get_type().name()?
    )))
}

/// An int argument for an unsigned wire field of `BITS` bits. Out-of-range
/// values raise `OverflowError` saying the range (never wrap), bools and
/// non-ints raise `TypeError`; pyo3 adds the argument's name as a note.
pub(super) struct Unsigned<const BITS: u32>(pub(super) u64);

impl<const BITS: u32> Unsigned<BITS> {
    const MAX: u64 = if BITS >= 64 {
        u64::MAX
    } else {
        (1u64 << BITS) - 1
    };
    /// For keyword arguments that default to 0.
    pub(super) const ZERO: Self = Unsigned(0);
}

impl<'a, 'py, const BITS: u32> FromPyObject<'a, 'py> for Unsigned<BITS> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let range = || format!("0..={} (unsigned {BITS}-bit)", Self::MAX);
        // Objects with __index__ (e.g. numpy integers) count as ints; bools
        // do not, since passing one is almost surely a mistake.
        let int_like = obj.is_instance_of::<PyInt>() || obj.hasattr("__index__")?;
        if obj.is_instance_of::<PyBool>() || !int_like {
            return Err(PyTypeError::new_err(format!(
                "expected an int in {}, got {}",
                range(),
                obj.get_type().name()?
            )));
        }
        match obj.extract::<u64>() {
            Ok(v) if v <= Self::MAX => Ok(Unsigned(v)),
            Ok(v) => Err(PyOverflowError::new_err(format!(
                "{v} is out of range {}",
                range()
            ))),
            Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => {
                let what = if obj.lt(0)? {
                    "a negative int"
                } else {
                    "too large an int"
                };
                Err(PyOverflowError::new_err(format!(
                    "{what} is out of range {}",
                    range()
                )))
            }
            Err(e) => Err(e),
        }
    }
}

pub(super) type U8 = Unsigned<8>;
pub(super) type U16 = Unsigned<16>;
pub(super) type U32 = Unsigned<32>;
pub(super) type U64 = Unsigned<64>;

// The extractor bounded each value by its width, so these narrowings are
// exact; each width only narrows to its own type.
impl Unsigned<8> {
    pub(super) fn value(&self) -> u8 {
        self.0 as u8
    }
}
impl Unsigned<16> {
    pub(super) fn value(&self) -> u16 {
        self.0 as u16
    }
}
impl Unsigned<32> {
    pub(super) fn value(&self) -> u32 {
        self.0 as u32
    }
}
impl Unsigned<64> {
    pub(super) fn value(&self) -> u64 {
        self.0
    }
}

pub(super) fn purpose_arg(value: &Bound<'_, PyAny>) -> PyResult<Purpose> {
    let raw: i64 = value.extract().map_err(|_| {
        PyTypeError::new_err("purpose must be Purpose.STORAGE, Purpose.RAFT, 1 or 2")
    })?;
    u8::try_from(raw)
        .ok()
        .and_then(Purpose::from_byte)
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "purpose must be 1 (Purpose.STORAGE) or 2 (Purpose.RAFT), got {raw}"
            ))
        })
}

/// How a purpose reads in a repr: the Python enum member.
pub(super) fn purpose_repr(purpose: Purpose) -> &'static str {
    match purpose {
        Purpose::Storage => "Purpose.STORAGE",
        Purpose::Raft => "Purpose.RAFT",
    }
}

pub(super) fn purpose_to_py(py: Python<'_>, purpose: Purpose) -> PyResult<Py<PyAny>> {
    let cls = PURPOSE_ENUM
        .get(py)
        .ok_or_else(|| PyException::new_err("encryption_applier.Purpose is not initialised"))?;
    cls.call1(py, (purpose as u8,))
}

/// Outcomes as interned strings: a batch of 10 000 costs 10 000 reference
/// increments, not 10 000 new strings.
pub(super) fn outcome_str(py: Python<'_>, outcome: Outcome) -> Bound<'_, PyString> {
    let s = match outcome {
        Outcome::Inserted => pyo3::intern!(py, "inserted"),
        Outcome::Advanced => pyo3::intern!(py, "advanced"),
        Outcome::Unchanged => pyo3::intern!(py, "unchanged"),
        Outcome::Bootstrapped => pyo3::intern!(py, "bootstrapped"),
        Outcome::Rotated => pyo3::intern!(py, "rotated"),
        Outcome::Skipped => pyo3::intern!(py, "skipped"),
        Outcome::Enabled => pyo3::intern!(py, "enabled"),
        Outcome::AlreadyActive => pyo3::intern!(py, "already-active"),
        Outcome::StaleDek => pyo3::intern!(py, "stale-dek"),
    };
    s.clone()
}

/// The outcomes as a list of the interned strings, each string looked up
/// once per call rather than once per entry.
pub(super) fn outcome_list<'py>(
    py: Python<'py>,
    outcomes: &[Outcome],
) -> PyResult<Bound<'py, PyList>> {
    // Indexed by discriminant (`Outcome::ALL` is in that order).
    let strings = Outcome::ALL.map(|o| outcome_str(py, o));
    // (An outcome ALL lacks would be looked up, not a panic.)
    PyList::new(
        py,
        outcomes.iter().map(|&o| {
            strings
                .get(o as usize)
                .cloned()
                .unwrap_or_else(|| outcome_str(py, o))
        }),
    )
}

/// `copy.replace(obj, **changes)` (Python 3.13) of an immutable value
/// class: its constructor called with every field of `__match_args__`,
/// `changes` over them, so the constructor's checks apply to the copy. A
/// name that is not a field is a `TypeError` naming it (and the fields).
pub(super) fn replace_fields<'py>(
    slf: &Bound<'py, PyAny>,
    changes: Option<&Bound<'py, pyo3::types::PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let class = slf.get_type();
    let names: Vec<String> = class.getattr("__match_args__")?.extract()?;
    let kwargs = pyo3::types::PyDict::new(py);
    for name in &names {
        kwargs.set_item(name, slf.getattr(name.as_str())?)?;
    }
    if let Some(changes) = changes {
        let mut unknown = Vec::new();
        for (key, value) in changes.iter() {
            let key: String = key.extract()?;
            if names.contains(&key) {
                kwargs.set_item(&key, value)?;
            } else {
                unknown.push(key);
            }
        }
        if !unknown.is_empty() {
            return Err(PyTypeError::new_err(format!(
                "{}.__replace__() got {} {}; its fields are {}",
                class.name()?,
                if unknown.len() == 1 {
                    "an unknown field"
                } else {
                    "unknown fields"
                },
                unknown.join(", "),
                names.join(", ")
            )));
        }
    }
    class.call((), Some(&kwargs))
}
