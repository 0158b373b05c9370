//! Envelopes and nonces (SPEC §7, parity study N5): what the registry
//! exists for. elastickv encrypts each storage value and (after the Raft
//! cutover) each Raft entry with AES-256-GCM under a DEK, in an envelope
//! `version ‖ flag ‖ key_id ‖ nonce ‖ ciphertext ‖ tag`, with the nonce
//! `node_id16 ‖ local_epoch ‖ write_count`. The registry keeps one node
//! behind each 16-bit prefix per DEK and epochs moving forward; the audit
//! here checks a set of envelopes against that promise.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce as GcmNonce, Tag};

use crate::kek::Dek;
use crate::registry::RegistryRow;
use crate::sidecar::Sidecar;
use crate::wire::node_id16;

pub const ENVELOPE_VERSION: u8 = 0x01;
/// Flag bit 0: the body is compressed (Go writes 0).
pub const FLAG_COMPRESSED: u8 = 0x01;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// `version ‖ flag ‖ key_id ‖ nonce`.
pub const HEADER_LEN: usize = 1 + 1 + 4 + NONCE_LEN;
/// The smallest envelope: a header and a tag (an empty plaintext).
pub const MIN_ENVELOPE_LEN: usize = HEADER_LEN + TAG_LEN;
/// The value-header byte of an encrypted storage value (encryption_state
/// 0b01 in bits 1-2; store/lsm_store.go).
pub const STORAGE_VALUE_HEADER: u8 = 0x02;
/// The first byte of the Raft AAD ('R').
pub const RAFT_AAD_PURPOSE: u8 = b'R';

/// Why bytes are not an envelope, or do not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("envelope is {len} bytes; one is at least {MIN_ENVELOPE_LEN} (header and tag)")]
    Short { len: usize },
    #[error("envelope version 0x{got:02x}; only 0x01 is defined")]
    Version { got: u8 },
    #[error("no key_id={key_id} in the keystore")]
    UnknownKey { key_id: u32 },
    #[error(
        "the envelope under key_id={key_id} does not verify (wrong key, AAD, or tampered bytes)"
    )]
    Integrity { key_id: u32 },
}

/// `node_id16 ‖ local_epoch ‖ write_count`, big-endian (nonce_factory.go).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NonceParts {
    pub node_id16: u16,
    pub local_epoch: u16,
    pub write_count: u64,
}

impl NonceParts {
    pub fn from_bytes(nonce: &[u8; NONCE_LEN]) -> NonceParts {
        let mut count = [0u8; 8];
        count.copy_from_slice(&nonce[4..]);
        NonceParts {
            node_id16: u16::from_be_bytes([nonce[0], nonce[1]]),
            local_epoch: u16::from_be_bytes([nonce[2], nonce[3]]),
            write_count: u64::from_be_bytes(count),
        }
    }

    pub fn to_bytes(self) -> [u8; NONCE_LEN] {
        let mut out = [0u8; NONCE_LEN];
        out[..2].copy_from_slice(&self.node_id16.to_be_bytes());
        out[2..4].copy_from_slice(&self.local_epoch.to_be_bytes());
        out[4..].copy_from_slice(&self.write_count.to_be_bytes());
        out
    }
}

/// A decoded envelope (envelope.go).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Envelope {
    pub version: u8,
    pub flag: u8,
    pub key_id: u32,
    pub nonce: [u8; NONCE_LEN],
    /// `ciphertext ‖ tag`.
    pub body: Vec<u8>,
}

impl Envelope {
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        if bytes.len() < MIN_ENVELOPE_LEN {
            return Err(EnvelopeError::Short { len: bytes.len() });
        }
        if bytes[0] != ENVELOPE_VERSION {
            return Err(EnvelopeError::Version { got: bytes[0] });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[6..HEADER_LEN]);
        Ok(Envelope {
            version: bytes[0],
            flag: bytes[1],
            key_id: u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]),
            nonce,
            body: bytes[HEADER_LEN..].to_vec(),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.body.len());
        out.push(self.version);
        out.push(self.flag);
        out.extend_from_slice(&self.key_id.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.body);
        out
    }

    pub fn nonce_parts(&self) -> NonceParts {
        NonceParts::from_bytes(&self.nonce)
    }

    /// The AAD of a storage value: `version ‖ flag ‖ key_id ‖ value header
    /// (0x02 ‖ LE64 expire_at) ‖ user_key ‖ BE64(!commit_ts)`
    /// (store/encryption_glue.go).
    pub fn storage_aad(&self, user_key: &[u8], commit_ts: u64, expire_at: u64) -> Vec<u8> {
        let mut aad = Vec::with_capacity(6 + 9 + user_key.len() + 8);
        aad.push(self.version);
        aad.push(self.flag);
        aad.extend_from_slice(&self.key_id.to_be_bytes());
        aad.push(STORAGE_VALUE_HEADER);
        aad.extend_from_slice(&expire_at.to_le_bytes());
        aad.extend_from_slice(user_key);
        aad.extend_from_slice(&(!commit_ts).to_be_bytes());
        aad
    }

    /// The AAD of a Raft entry: `'R' ‖ version ‖ key_id` (raft_envelope.go).
    pub fn raft_aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(6);
        aad.push(RAFT_AAD_PURPOSE);
        aad.push(self.version);
        aad.extend_from_slice(&self.key_id.to_be_bytes());
        aad
    }

    /// Seals `plaintext` under `dek` with `nonce`: an envelope (version 1,
    /// flag 0) whose AAD `aad` computes from its header (the storage or
    /// Raft AAD). The caller owns the nonce's uniqueness under the key.
    pub fn seal(
        dek: &Dek,
        key_id: u32,
        nonce: NonceParts,
        plaintext: &[u8],
        aad: impl FnOnce(&Envelope) -> Vec<u8>,
    ) -> Result<Envelope, EnvelopeError> {
        let mut env = Envelope {
            version: ENVELOPE_VERSION,
            flag: 0,
            key_id,
            nonce: nonce.to_bytes(),
            body: Vec::new(),
        };
        let aad = aad(&env);
        let mut body = plaintext.to_vec();
        let tag = Aes256Gcm::new(dek.expose().into())
            .encrypt_inout_detached(&GcmNonce::from(env.nonce), &aad, (&mut body[..]).into())
            .map_err(|_| EnvelopeError::Integrity { key_id })?;
        body.extend_from_slice(&tag);
        env.body = body;
        Ok(env)
    }

    /// Opens the body under `dek` with `aad`.
    pub fn open(&self, dek: &Dek, aad: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let fail = EnvelopeError::Integrity {
            key_id: self.key_id,
        };
        if self.body.len() < TAG_LEN {
            return Err(fail);
        }
        let split = self.body.len() - TAG_LEN;
        let mut plain = self.body[..split].to_vec();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&self.body[split..]);
        Aes256Gcm::new(dek.expose().into())
            .decrypt_inout_detached(
                &GcmNonce::from(self.nonce),
                aad,
                (&mut plain[..]).into(),
                &Tag::from(tag),
            )
            .map_err(|_| fail)?;
        Ok(plain)
    }
}

/// What the audit found wrong with envelopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FindingKind {
    /// One `(key_id, nonce)` with different bodies: AES-GCM is broken for
    /// that key (the keystream and the authentication key leak).
    Reuse,
    /// A nonce whose prefix is not this node's.
    ForeignPrefix,
    /// A local epoch beyond the one the sidecar records for the key.
    EpochAhead,
    /// A write count of 0, which the nonce factory never issues.
    ZeroCount,
    /// No registry row covers the nonce prefix (or another node's does).
    /// A warning: apply-path writes may come before their registration.
    Unregistered,
}

impl FindingKind {
    pub fn code(self) -> &'static str {
        match self {
            FindingKind::Reuse => "reuse",
            FindingKind::ForeignPrefix => "foreign_prefix",
            FindingKind::EpochAhead => "epoch_ahead",
            FindingKind::ZeroCount => "zero_count",
            FindingKind::Unregistered => "unregistered",
        }
    }

    pub fn is_warning(self) -> bool {
        self == FindingKind::Unregistered
    }
}

/// One finding: which envelopes (by position in the input) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    pub key_id: u32,
    pub nonce: NonceParts,
    pub positions: Vec<usize>,
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at envelopes {:?}: key_id={} nonce=(node_id16=0x{:04x}, local_epoch={}, write_count={}): {}",
            self.kind.code(),
            self.positions,
            self.key_id,
            self.nonce.node_id16,
            self.nonce.local_epoch,
            self.nonce.write_count,
            self.detail
        )
    }
}

/// Audits envelopes written by the node `full_node_id` (each replica
/// encrypts with its own nonce factory, so a set comes from one node):
/// nonce reuse, a foreign prefix, an epoch ahead of the sidecar's, a zero
/// count, and (warning) nonces no registry row covers. `row` looks up the
/// registry at `(key_id, node_id16)`.
pub fn audit_nonces<E>(
    envelopes: &[Envelope],
    sidecar: Option<&Sidecar>,
    full_node_id: u64,
    mut row: impl FnMut(u32, u16) -> Result<Option<RegistryRow>, E>,
) -> Result<Vec<Finding>, E> {
    let mut out = Vec::new();
    let mine = node_id16(full_node_id);
    let mut by_nonce: BTreeMap<(u32, [u8; NONCE_LEN]), Vec<usize>> = BTreeMap::new();
    for (i, env) in envelopes.iter().enumerate() {
        by_nonce.entry((env.key_id, env.nonce)).or_default().push(i);
    }
    for ((key_id, nonce), positions) in &by_nonce {
        let bodies: std::collections::BTreeSet<&[u8]> = positions
            .iter()
            .map(|&i| envelopes[i].body.as_slice())
            .collect();
        if bodies.len() > 1 {
            out.push(Finding {
                kind: FindingKind::Reuse,
                key_id: *key_id,
                nonce: NonceParts::from_bytes(nonce),
                positions: positions.clone(),
                detail: format!("{} different bodies under one key and nonce", bodies.len()),
            });
        }
    }
    let mut rows: BTreeMap<(u32, u16), Option<RegistryRow>> = BTreeMap::new();
    for (i, env) in envelopes.iter().enumerate() {
        let parts = env.nonce_parts();
        let finding = |kind, detail: String| Finding {
            kind,
            key_id: env.key_id,
            nonce: parts,
            positions: vec![i],
            detail,
        };
        if parts.node_id16 != mine {
            out.push(finding(
                FindingKind::ForeignPrefix,
                format!("this node's prefix is 0x{mine:04x}"),
            ));
        }
        if let Some(key) = sidecar.and_then(|s| s.keys.get(&env.key_id)) {
            if parts.local_epoch > key.local_epoch {
                out.push(finding(
                    FindingKind::EpochAhead,
                    format!("the sidecar records local_epoch={}", key.local_epoch),
                ));
            }
        }
        if parts.write_count == 0 {
            out.push(finding(
                FindingKind::ZeroCount,
                "the nonce factory starts at 1".to_owned(),
            ));
        }
        let found = match rows.get(&(env.key_id, parts.node_id16)) {
            Some(found) => *found,
            None => {
                let found = row(env.key_id, parts.node_id16)?;
                rows.insert((env.key_id, parts.node_id16), found);
                found
            }
        };
        match found {
            None => out.push(finding(
                FindingKind::Unregistered,
                "no registry row for this key and prefix".to_owned(),
            )),
            Some(r) if r.full_node_id != full_node_id => out.push(finding(
                FindingKind::Unregistered,
                format!(
                    "the registry row for this prefix belongs to full_node_id=0x{:x}",
                    r.full_node_id
                ),
            )),
            Some(_) => {}
        }
    }
    out.sort_by(|a, b| (a.positions.first(), a.kind).cmp(&(b.positions.first(), b.kind)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_under_either_aad() {
        let dek = Dek::from_bytes([7u8; 32]);
        let nonce = NonceParts {
            node_id16: 0x0102,
            local_epoch: 4,
            write_count: 1,
        };
        let env =
            Envelope::seal(&dek, 9, nonce, b"value", |e| e.storage_aad(b"k", 5, 0)).expect("seal");
        assert_eq!((env.version, env.flag, env.key_id), (1, 0, 9));
        assert_eq!(env.nonce_parts(), nonce);
        assert_eq!(env.body.len(), 5 + TAG_LEN);
        let aad = env.storage_aad(b"k", 5, 0);
        assert_eq!(env.open(&dek, &aad).expect("open"), b"value");
        assert!(env.open(&dek, &env.raft_aad()).is_err());
        let raft = Envelope::seal(&dek, 9, nonce, b"entry", Envelope::raft_aad).expect("seal");
        assert_eq!(raft.open(&dek, &raft.raft_aad()).expect("open"), b"entry");
    }

    #[test]
    fn decode_encode_and_nonce_layout() {
        let nonce = NonceParts {
            node_id16: 0xABCD,
            local_epoch: 3,
            write_count: 7,
        };
        assert_eq!(nonce.to_bytes(), [0xAB, 0xCD, 0, 3, 0, 0, 0, 0, 0, 0, 0, 7]);
        let env = Envelope {
            version: 1,
            flag: 0,
            key_id: 9,
            nonce: nonce.to_bytes(),
            body: vec![0xEE; TAG_LEN + 2],
        };
        let bytes = env.encode();
        assert_eq!(&bytes[..6], &[1, 0, 0, 0, 0, 9]);
        assert_eq!(Envelope::decode(&bytes), Ok(env.clone()));
        assert_eq!(env.nonce_parts(), nonce);
        assert_eq!(
            Envelope::decode(&bytes[..MIN_ENVELOPE_LEN - 1]),
            Err(EnvelopeError::Short { len: 33 })
        );
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(
            Envelope::decode(&v2),
            Err(EnvelopeError::Version { got: 2 })
        );
        assert_eq!(env.raft_aad(), vec![0x52, 1, 0, 0, 0, 9]);
        assert_eq!(
            env.storage_aad(b"k", 1, 2),
            [
                &[1u8, 0, 0, 0, 0, 9, 2, 2, 0, 0, 0, 0, 0, 0, 0][..],
                b"k",
                &(!1u64).to_be_bytes()
            ]
            .concat()
        );
    }
}
