//! The wire codec for the three encryption payloads (SPEC §2).
//!
//! Decoders fail closed: anything that is not exactly one well-formed
//! payload is a [`MalformedPayload`], never a best-effort parse. Lengths
//! and counts read from the wire are checked against the bytes actually
//! present before anything is allocated, so a hostile prefix that claims
//! gigabytes costs nothing.

use crate::error::{MalformedPayload, MalformedReason, PayloadKind};

pub const OP_REGISTRATION: u8 = 0x03;
pub const OP_BOOTSTRAP: u8 = 0x04;
pub const OP_ROTATION: u8 = 0x05;
/// Reserved encryption opcodes: they must halt, never be ignored.
pub const OP_RESERVED: [u8; 2] = [0x06, 0x07];
pub const WIRE_VERSION: u8 = 0x01;
pub const ROTATE_DEK: u8 = 0x01;
/// Sub-tags reserved for future rotation kinds; not applicable today.
pub const RESERVED_SUB_TAGS: std::ops::RangeInclusive<u8> = 0x02..=0x05;
pub const MAX_BOOTSTRAP_BATCH: u32 = 16384;

/// Registration payload length: ver + dek_id + full_node_id + local_epoch.
pub const REGISTRATION_PAYLOAD_LEN: usize = 1 + 4 + 8 + 2;
/// One batch row (or a rotation's proposer): a registration without version.
const REGISTRATION_BODY_LEN: usize = 4 + 8 + 2;

/// Whether `opcode` belongs to the encryption range (0x03..=0x07).
pub fn is_encryption_opcode(opcode: u8) -> bool {
    (OP_REGISTRATION..=0x07).contains(&opcode)
}

/// The lower 16 bits of a full node id: the AES-GCM nonce prefix and the
/// registry key's node component.
pub fn node_id16(full_node_id: u64) -> u16 {
    (full_node_id & 0xFFFF) as u16
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Registration {
    pub dek_id: u32,
    pub full_node_id: u64,
    pub local_epoch: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    Storage = 1,
    Raft = 2,
}

impl Purpose {
    pub fn from_byte(byte: u8) -> Option<Purpose> {
        match byte {
            1 => Some(Purpose::Storage),
            2 => Some(Purpose::Raft),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Storage => "storage",
            Purpose::Raft => "raft",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Bootstrap {
    pub storage_dek_id: u32,
    pub wrapped_storage: Vec<u8>,
    pub raft_dek_id: u32,
    pub wrapped_raft: Vec<u8>,
    pub batch_registry: Vec<Registration>,
}

/// A rotation. `sub_tag` is kept as the raw byte so that entries with a
/// reserved or unknown sub-tag can be built (to test that they halt);
/// [`Rotation::validate`] rejects them before anything is applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rotation {
    pub sub_tag: u8,
    pub dek_id: u32,
    pub purpose: Purpose,
    pub wrapped: Vec<u8>,
    pub proposer: Registration,
}

/// A decoded encryption entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Entry {
    Registration(Registration),
    Bootstrap(Bootstrap),
    Rotation(Rotation),
}

/// A cursor over payload bytes that turns every shortfall into a
/// `Truncated` or `LengthOverrun` naming the field and offset.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    kind: PayloadKind,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], kind: PayloadKind) -> Self {
        Reader { buf, pos: 0, kind }
    }

    fn fail(&self, reason: MalformedReason) -> MalformedPayload {
        MalformedPayload::new(self.kind, reason)
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], MalformedPayload> {
        if self.remaining() < n {
            return Err(self.fail(MalformedReason::Truncated {
                field,
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            }));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], MalformedPayload> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, MalformedPayload> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, MalformedPayload> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, MalformedPayload> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, MalformedPayload> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    fn version(&mut self) -> Result<(), MalformedPayload> {
        let version = self.u8("version")?;
        if version != WIRE_VERSION {
            return Err(self.fail(MalformedReason::WrongVersion(version)));
        }
        Ok(())
    }

    /// A `u32` length prefix and that many bytes. The length is checked
    /// against what is left before any allocation.
    fn length_prefixed(&mut self, field: &'static str) -> Result<Vec<u8>, MalformedPayload> {
        let offset = self.pos;
        let claimed = self.u32(field)?;
        if claimed as usize > self.remaining() {
            return Err(self.fail(MalformedReason::LengthOverrun {
                field,
                offset,
                claimed,
                available: self.remaining(),
            }));
        }
        Ok(self.take(claimed as usize, field)?.to_vec())
    }

    fn registration_body(&mut self) -> Result<Registration, MalformedPayload> {
        Ok(Registration {
            dek_id: self.u32("dek_id")?,
            full_node_id: self.u64("full_node_id")?,
            local_epoch: self.u16("local_epoch")?,
        })
    }

    fn finish(&self) -> Result<(), MalformedPayload> {
        if self.remaining() != 0 {
            return Err(self.fail(MalformedReason::TrailingBytes {
                offset: self.pos,
                count: self.remaining(),
            }));
        }
        Ok(())
    }
}

fn put_registration_body(out: &mut Vec<u8>, reg: &Registration) {
    out.extend_from_slice(&reg.dek_id.to_be_bytes());
    out.extend_from_slice(&reg.full_node_id.to_be_bytes());
    out.extend_from_slice(&reg.local_epoch.to_be_bytes());
}

fn put_length_prefixed(
    out: &mut Vec<u8>,
    bytes: &[u8],
    field: &'static str,
    kind: PayloadKind,
) -> Result<(), MalformedPayload> {
    let len = u32::try_from(bytes.len()).map_err(|_| {
        MalformedPayload::new(
            kind,
            MalformedReason::FieldTooLong {
                field,
                len: bytes.len(),
            },
        )
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

impl Registration {
    pub fn node_id16(&self) -> u16 {
        node_id16(self.full_node_id)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REGISTRATION_PAYLOAD_LEN);
        out.push(WIRE_VERSION);
        put_registration_body(&mut out, self);
        out
    }

    pub fn decode(payload: &[u8]) -> Result<Registration, MalformedPayload> {
        let mut r = Reader::new(payload, PayloadKind::Registration);
        r.version()?;
        let reg = r.registration_body()?;
        r.finish()?;
        Ok(reg)
    }
}

impl Bootstrap {
    /// The rules a payload object must meet to be encodable and decodable:
    /// the same ones the decoder enforces on bytes.
    pub fn validate(&self) -> Result<(), MalformedPayload> {
        let fail = |reason| Err(MalformedPayload::new(PayloadKind::Bootstrap, reason));
        if self.batch_registry.len() > MAX_BOOTSTRAP_BATCH as usize {
            return fail(MalformedReason::BatchTooLarge {
                count: self.batch_registry.len() as u64,
            });
        }
        for (field, bytes) in [
            ("wrapped_storage", &self.wrapped_storage),
            ("wrapped_raft", &self.wrapped_raft),
        ] {
            if u32::try_from(bytes.len()).is_err() {
                return fail(MalformedReason::FieldTooLong {
                    field,
                    len: bytes.len(),
                });
            }
        }
        Ok(())
    }

    /// Encodes the payload exactly as held, including a batch over the cap
    /// (such bytes exist to test that decoders refuse them). Fails only for
    /// a field longer than its u32 length prefix can say.
    pub fn encode(&self) -> Result<Vec<u8>, MalformedPayload> {
        let kind = PayloadKind::Bootstrap;
        let mut out = Vec::with_capacity(
            1 + 2 * 8
                + self.wrapped_storage.len()
                + self.wrapped_raft.len()
                + 4
                + self.batch_registry.len() * REGISTRATION_BODY_LEN,
        );
        out.push(WIRE_VERSION);
        out.extend_from_slice(&self.storage_dek_id.to_be_bytes());
        put_length_prefixed(&mut out, &self.wrapped_storage, "wrapped_storage", kind)?;
        out.extend_from_slice(&self.raft_dek_id.to_be_bytes());
        put_length_prefixed(&mut out, &self.wrapped_raft, "wrapped_raft", kind)?;
        let count = u32::try_from(self.batch_registry.len()).map_err(|_| {
            MalformedPayload::new(
                kind,
                MalformedReason::FieldTooLong {
                    field: "batch_registry",
                    len: self.batch_registry.len(),
                },
            )
        })?;
        out.extend_from_slice(&count.to_be_bytes());
        for row in &self.batch_registry {
            put_registration_body(&mut out, row);
        }
        Ok(out)
    }

    pub fn decode(payload: &[u8]) -> Result<Bootstrap, MalformedPayload> {
        let mut r = Reader::new(payload, PayloadKind::Bootstrap);
        r.version()?;
        let storage_dek_id = r.u32("storage_dek_id")?;
        let wrapped_storage = r.length_prefixed("wrapped_storage")?;
        let raft_dek_id = r.u32("raft_dek_id")?;
        let wrapped_raft = r.length_prefixed("wrapped_raft")?;
        let count_offset = r.pos;
        let count = r.u32("batch count")?;
        // The cap, then the bytes actually present, are both checked before
        // the batch vector is allocated.
        if count > MAX_BOOTSTRAP_BATCH {
            return Err(r.fail(MalformedReason::BatchTooLarge {
                count: u64::from(count),
            }));
        }
        let needed = count as usize * REGISTRATION_BODY_LEN;
        if needed > r.remaining() {
            return Err(r.fail(MalformedReason::Truncated {
                field: "batch rows",
                offset: count_offset + 4,
                needed,
                available: r.remaining(),
            }));
        }
        let mut batch_registry = Vec::with_capacity(count as usize);
        for _ in 0..count {
            batch_registry.push(r.registration_body()?);
        }
        r.finish()?;
        Ok(Bootstrap {
            storage_dek_id,
            wrapped_storage,
            raft_dek_id,
            wrapped_raft,
            batch_registry,
        })
    }
}

fn check_sub_tag(sub_tag: u8) -> Result<(), MalformedPayload> {
    let reason = if sub_tag == ROTATE_DEK {
        return Ok(());
    } else if RESERVED_SUB_TAGS.contains(&sub_tag) {
        MalformedReason::ReservedSubTag(sub_tag)
    } else {
        MalformedReason::UnknownSubTag(sub_tag)
    };
    Err(MalformedPayload::new(PayloadKind::Rotation, reason))
}

impl Rotation {
    /// The rules the decoder enforces, for a rotation built as an object.
    pub fn validate(&self) -> Result<(), MalformedPayload> {
        check_sub_tag(self.sub_tag)?;
        if u32::try_from(self.wrapped.len()).is_err() {
            return Err(MalformedPayload::new(
                PayloadKind::Rotation,
                MalformedReason::FieldTooLong {
                    field: "wrapped",
                    len: self.wrapped.len(),
                },
            ));
        }
        Ok(())
    }

    /// Encodes the payload as given, including a reserved or unknown
    /// sub-tag: such bytes exist to test that decoders refuse them.
    pub fn encode(&self) -> Result<Vec<u8>, MalformedPayload> {
        let mut out =
            Vec::with_capacity(1 + 1 + 4 + 1 + 4 + self.wrapped.len() + REGISTRATION_BODY_LEN);
        out.push(WIRE_VERSION);
        out.push(self.sub_tag);
        out.extend_from_slice(&self.dek_id.to_be_bytes());
        out.push(self.purpose as u8);
        put_length_prefixed(&mut out, &self.wrapped, "wrapped", PayloadKind::Rotation)?;
        put_registration_body(&mut out, &self.proposer);
        Ok(out)
    }

    pub fn decode(payload: &[u8]) -> Result<Rotation, MalformedPayload> {
        let mut r = Reader::new(payload, PayloadKind::Rotation);
        r.version()?;
        let sub_tag = r.u8("sub_tag")?;
        check_sub_tag(sub_tag)?;
        let dek_id = r.u32("dek_id")?;
        let purpose_byte = r.u8("purpose")?;
        let purpose = Purpose::from_byte(purpose_byte)
            .ok_or_else(|| r.fail(MalformedReason::UnknownPurpose(purpose_byte)))?;
        let wrapped = r.length_prefixed("wrapped")?;
        let proposer = r.registration_body()?;
        r.finish()?;
        Ok(Rotation {
            sub_tag,
            dek_id,
            purpose,
            wrapped,
            proposer,
        })
    }
}

impl Entry {
    pub fn opcode(&self) -> u8 {
        match self {
            Entry::Registration(_) => OP_REGISTRATION,
            Entry::Bootstrap(_) => OP_BOOTSTRAP,
            Entry::Rotation(_) => OP_ROTATION,
        }
    }

    /// `opcode ‖ payload`.
    pub fn encode(&self) -> Result<Vec<u8>, MalformedPayload> {
        let payload = match self {
            Entry::Registration(reg) => reg.encode(),
            Entry::Bootstrap(b) => b.encode()?,
            Entry::Rotation(r) => r.encode()?,
        };
        let mut out = Vec::with_capacity(1 + payload.len());
        out.push(self.opcode());
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// Decodes `opcode ‖ payload`. Reserved opcodes 0x06/0x07 and bytes
    /// outside the encryption range are malformed: an applier that was
    /// handed them must halt, not skip.
    pub fn decode(entry: &[u8]) -> Result<Entry, MalformedPayload> {
        let fail = |reason| MalformedPayload::new(PayloadKind::Entry, reason);
        let (&opcode, payload) = entry
            .split_first()
            .ok_or_else(|| fail(MalformedReason::EmptyEntry))?;
        match opcode {
            OP_REGISTRATION => Registration::decode(payload).map(Entry::Registration),
            OP_BOOTSTRAP => Bootstrap::decode(payload).map(Entry::Bootstrap),
            OP_ROTATION => Rotation::decode(payload).map(Entry::Rotation),
            op if OP_RESERVED.contains(&op) => Err(fail(MalformedReason::ReservedOpcode(op))),
            op => Err(fail(MalformedReason::NotEncryptionOpcode(op))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test hex"))
            .collect()
    }

    fn reason(err: MalformedPayload) -> MalformedReason {
        err.reason
    }

    #[test]
    fn registration_pinned_bytes() {
        let reg = Registration {
            dek_id: 0x01020304,
            full_node_id: 0x05060708090A0B0C,
            local_epoch: 0x0D0E,
        };
        let pinned = unhex("01 01020304 05060708090a0b0c 0d0e");
        assert_eq!(reg.encode(), pinned);
        assert_eq!(Registration::decode(&pinned), Ok(reg));
        assert_eq!(reg.node_id16(), 0x0B0C);
    }

    #[test]
    fn bootstrap_pinned_bytes() {
        let b = Bootstrap {
            storage_dek_id: 1,
            wrapped_storage: vec![],
            raft_dek_id: 2,
            wrapped_raft: vec![],
            batch_registry: vec![],
        };
        let pinned = unhex("01 00000001 00000000 00000002 00000000 00000000");
        assert_eq!(b.encode().as_deref(), Ok(&pinned[..]));
        assert_eq!(Bootstrap::decode(&pinned), Ok(b));
    }

    #[test]
    fn bootstrap_with_keys_and_rows_layout() {
        let b = Bootstrap {
            storage_dek_id: 0x0a,
            wrapped_storage: vec![0xaa, 0xbb],
            raft_dek_id: 0x0b,
            wrapped_raft: vec![0xcc],
            batch_registry: vec![Registration {
                dek_id: 0x0a,
                full_node_id: 0x1122334455667788,
                local_epoch: 0x0102,
            }],
        };
        let pinned = unhex(
            "01 0000000a 00000002 aabb 0000000b 00000001 cc 00000001
             0000000a 1122334455667788 0102",
        );
        assert_eq!(b.encode().as_deref(), Ok(&pinned[..]));
        assert_eq!(Bootstrap::decode(&pinned), Ok(b));
    }

    #[test]
    fn rotation_layout() {
        let r = Rotation {
            sub_tag: ROTATE_DEK,
            dek_id: 3,
            purpose: Purpose::Raft,
            wrapped: vec![0xee; 3],
            proposer: Registration {
                dek_id: 3,
                full_node_id: 0xabcd0001,
                local_epoch: 7,
            },
        };
        let pinned = unhex("01 01 00000003 02 00000003 eeeeee 00000003 00000000abcd0001 0007");
        assert_eq!(r.encode().as_deref(), Ok(&pinned[..]));
        assert_eq!(Rotation::decode(&pinned), Ok(r));
    }

    #[test]
    fn registration_rejects_every_wrong_length_and_version() {
        let good = unhex("01 01020304 05060708090a0b0c 0d0e");
        for cut in 0..good.len() {
            assert!(
                matches!(
                    reason(Registration::decode(&good[..cut]).unwrap_err()),
                    MalformedReason::Truncated { .. }
                ),
                "cut at {cut}"
            );
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            reason(Registration::decode(&long).unwrap_err()),
            MalformedReason::TrailingBytes {
                offset: 15,
                count: 1
            }
        );
        let mut v2 = good;
        v2[0] = 0x02;
        assert_eq!(
            reason(Registration::decode(&v2).unwrap_err()),
            MalformedReason::WrongVersion(2)
        );
    }

    #[test]
    fn bootstrap_every_truncation_point_is_malformed() {
        let b = Bootstrap {
            storage_dek_id: 1,
            wrapped_storage: vec![1; 5],
            raft_dek_id: 2,
            wrapped_raft: vec![2; 7],
            batch_registry: vec![
                Registration {
                    dek_id: 1,
                    full_node_id: 0x10001,
                    local_epoch: 1,
                },
                Registration {
                    dek_id: 2,
                    full_node_id: 0x20002,
                    local_epoch: 3,
                },
            ],
        };
        let bytes = b.encode().expect("encodable");
        assert_eq!(Bootstrap::decode(&bytes).as_ref(), Ok(&b));
        for cut in 0..bytes.len() {
            let err = Bootstrap::decode(&bytes[..cut]).unwrap_err();
            assert_eq!(err.kind, PayloadKind::Bootstrap);
            assert!(
                matches!(
                    err.reason,
                    MalformedReason::Truncated { .. } | MalformedReason::LengthOverrun { .. }
                ),
                "cut at {cut}: {err}"
            );
        }
        let mut long = bytes.clone();
        long.push(0xff);
        assert!(matches!(
            reason(Bootstrap::decode(&long).unwrap_err()),
            MalformedReason::TrailingBytes { count: 1, .. }
        ));
    }

    #[test]
    fn bootstrap_length_prefix_overrun_is_caught() {
        // storage wrapped claims 0xffffffff bytes with 0 present.
        let bytes = unhex("01 00000001 ffffffff");
        assert_eq!(
            reason(Bootstrap::decode(&bytes).unwrap_err()),
            MalformedReason::LengthOverrun {
                field: "wrapped_storage",
                offset: 5,
                claimed: u32::MAX,
                available: 0
            }
        );
    }

    #[test]
    fn bootstrap_batch_cap_checked_before_rows_are_read() {
        // A count one over the cap with no rows behind it: the cap wins over
        // truncation, so the decoder never considered allocating.
        let mut bytes = unhex("01 00000001 00000000 00000002 00000000");
        bytes.extend_from_slice(&(MAX_BOOTSTRAP_BATCH + 1).to_be_bytes());
        assert_eq!(
            reason(Bootstrap::decode(&bytes).unwrap_err()),
            MalformedReason::BatchTooLarge {
                count: u64::from(MAX_BOOTSTRAP_BATCH + 1)
            }
        );
        let mut huge = unhex("01 00000001 00000000 00000002 00000000");
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            reason(Bootstrap::decode(&huge).unwrap_err()),
            MalformedReason::BatchTooLarge { .. }
        ));
        // At the cap but without the rows: truncation, detected before allocating.
        let mut at_cap = unhex("01 00000001 00000000 00000002 00000000");
        at_cap.extend_from_slice(&MAX_BOOTSTRAP_BATCH.to_be_bytes());
        assert!(matches!(
            reason(Bootstrap::decode(&at_cap).unwrap_err()),
            MalformedReason::Truncated {
                field: "batch rows",
                ..
            }
        ));
    }

    #[test]
    fn bootstrap_at_the_cap_round_trips() {
        let row = Registration {
            dek_id: 1,
            full_node_id: 5,
            local_epoch: 1,
        };
        let b = Bootstrap {
            storage_dek_id: 1,
            wrapped_storage: vec![],
            raft_dek_id: 2,
            wrapped_raft: vec![],
            batch_registry: vec![row; MAX_BOOTSTRAP_BATCH as usize],
        };
        let bytes = b.encode().expect("at the cap is allowed");
        assert_eq!(Bootstrap::decode(&bytes), Ok(b.clone()));
        assert_eq!(b.validate(), Ok(()));
        let mut over = b;
        over.batch_registry.push(row);
        assert!(matches!(
            reason(over.validate().unwrap_err()),
            MalformedReason::BatchTooLarge { .. }
        ));
        // Over-cap bytes can be produced (to test decoders) but never decode.
        let over_bytes = over.encode().expect("encodable");
        assert!(matches!(
            reason(Bootstrap::decode(&over_bytes).unwrap_err()),
            MalformedReason::BatchTooLarge { .. }
        ));
    }

    #[test]
    fn rotation_sub_tag_and_purpose_rules() {
        let base = unhex("01 01 00000003 01 00000000 00000003 0000000000000001 0001");
        assert!(Rotation::decode(&base).is_ok());
        for tag in 0u8..=255 {
            let mut bytes = base.clone();
            bytes[1] = tag;
            let result = Rotation::decode(&bytes);
            match tag {
                0x01 => assert!(result.is_ok()),
                0x02..=0x05 => assert_eq!(
                    reason(result.unwrap_err()),
                    MalformedReason::ReservedSubTag(tag)
                ),
                _ => assert_eq!(
                    reason(result.unwrap_err()),
                    MalformedReason::UnknownSubTag(tag)
                ),
            }
        }
        for purpose in 0u8..=255 {
            let mut bytes = base.clone();
            bytes[6] = purpose;
            let result = Rotation::decode(&bytes);
            if purpose == 1 || purpose == 2 {
                assert!(result.is_ok());
            } else {
                assert_eq!(
                    reason(result.unwrap_err()),
                    MalformedReason::UnknownPurpose(purpose)
                );
            }
        }
        for cut in 0..base.len() {
            assert!(Rotation::decode(&base[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn entry_dispatch_and_reserved_opcodes() {
        let reg = Registration {
            dek_id: 1,
            full_node_id: 2,
            local_epoch: 3,
        };
        let entry = Entry::Registration(reg).encode().expect("encodable");
        assert_eq!(entry[0], OP_REGISTRATION);
        assert_eq!(Entry::decode(&entry), Ok(Entry::Registration(reg)));
        assert_eq!(
            reason(Entry::decode(&[]).unwrap_err()),
            MalformedReason::EmptyEntry
        );
        for op in 0u8..=255 {
            let mut bytes = entry.clone();
            bytes[0] = op;
            let result = Entry::decode(&bytes);
            match op {
                0x03 => assert!(result.is_ok()),
                // The registration bytes are not a valid bootstrap/rotation.
                0x04 | 0x05 => assert!(result.is_err()),
                0x06 | 0x07 => assert_eq!(
                    reason(result.unwrap_err()),
                    MalformedReason::ReservedOpcode(op)
                ),
                _ => assert_eq!(
                    reason(result.unwrap_err()),
                    MalformedReason::NotEncryptionOpcode(op)
                ),
            }
            assert_eq!(is_encryption_opcode(op), (0x03..=0x07).contains(&op));
        }
    }
}
