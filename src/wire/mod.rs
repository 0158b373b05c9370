//! The wire codec for the three encryption payloads (SPEC §2).
//!
//! Decoders fail closed: anything that is not exactly one well-formed
//! payload is a [`MalformedPayload`], never a best-effort parse. Lengths
//! and counts read from the wire are checked against the bytes actually
//! present before anything is allocated, so a hostile prefix that claims
//! gigabytes costs nothing.

mod error;

pub use error::{MalformedPayload, MalformedReason, PayloadKind};

pub const OP_REGISTRATION: u8 = 0x03;
pub const OP_BOOTSTRAP: u8 = 0x04;
pub const OP_ROTATION: u8 = 0x05;
/// Reserved encryption opcodes: they must halt, never be ignored.
pub const OP_RESERVED: [u8; 2] = [0x06, 0x07];
/// The encryption range of the Raft log's opcodes (SPEC §2).
pub const ENCRYPTION_OPCODES: std::ops::RangeInclusive<u8> = OP_REGISTRATION..=OP_RESERVED[1];
/// The encryption opcodes whose entries record their index in keys.json
/// (bootstrap, rotation) or halt (the reserved ones): every one but the
/// registration, which only writes a registry row.
pub const SIDECAR_OPCODES: std::ops::RangeInclusive<u8> = OP_BOOTSTRAP..=OP_RESERVED[1];
pub const WIRE_VERSION: u8 = 0x01;
pub const ROTATE_DEK: u8 = 0x01;
/// The one-shot storage-layer cutover: from this entry on, storage values
/// are written in envelopes (SPEC §7, elastickv wire.go).
pub const ENABLE_STORAGE_ENVELOPE: u8 = 0x04;
/// The one-shot Raft-layer cutover: entries after this one are enveloped.
pub const ENABLE_RAFT_ENVELOPE: u8 = 0x05;
/// Reserved for elastickv's Stage 9 (wire.go): re-wrap every DEK under a
/// new KEK. It halts until it is specified.
pub const REWRAP_DEKS: u8 = 0x02;
/// Reserved for elastickv's Stage 9 (wire.go): retire a DEK. It halts.
pub const RETIRE_DEK: u8 = 0x03;
/// The sub-tags reserved for future rotation kinds; they halt, as every
/// byte not listed above does.
pub const RESERVED_SUB_TAGS: std::ops::RangeInclusive<u8> = REWRAP_DEKS..=RETIRE_DEK;
/// The sub-tags a rotation entry may carry, as the messages list them.
pub const KNOWN_SUB_TAGS: &str =
    "0x01 (rotate-dek), 0x04 (enable-storage-envelope) and 0x05 (enable-raft-envelope)";

/// The name elastickv's design gives a reserved sub-tag.
pub fn reserved_sub_tag_name(sub_tag: u8) -> &'static str {
    match sub_tag {
        REWRAP_DEKS => "rewrap-deks",
        RETIRE_DEK => "retire-dek",
        _ => "unnamed",
    }
}
pub const MAX_BOOTSTRAP_BATCH: u32 = 16384;

/// Registration payload length: ver + dek_id + full_node_id + local_epoch.
pub const REGISTRATION_PAYLOAD_LEN: usize = 1 + 4 + 8 + 2;
/// One batch row (or a rotation's proposer): a registration without version.
const REGISTRATION_BODY_LEN: usize = 4 + 8 + 2;

/// Whether `opcode` belongs to the encryption range (0x03..=0x07).
pub fn is_encryption_opcode(opcode: u8) -> bool {
    ENCRYPTION_OPCODES.contains(&opcode)
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
        // A well-formed payload (version, then exactly the body) in one
        // step; anything else goes through the reader, which names what is
        // wrong (the same rules: `decode_fast_path_agrees` checks it).
        if let [WIRE_VERSION, body @ ..] = payload {
            if let Ok(body) = <&[u8; REGISTRATION_BODY_LEN]>::try_from(body) {
                let [d0, d1, d2, d3, n0, n1, n2, n3, n4, n5, n6, n7, e0, e1] = *body;
                return Ok(Registration {
                    dek_id: u32::from_be_bytes([d0, d1, d2, d3]),
                    full_node_id: u64::from_be_bytes([n0, n1, n2, n3, n4, n5, n6, n7]),
                    local_epoch: u16::from_be_bytes([e0, e1]),
                });
            }
        }
        Registration::decode_by_reader(payload)
    }

    fn decode_by_reader(payload: &[u8]) -> Result<Registration, MalformedPayload> {
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
    let reason = if matches!(
        sub_tag,
        ROTATE_DEK | ENABLE_STORAGE_ENVELOPE | ENABLE_RAFT_ENVELOPE
    ) {
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
mod tests;
