//! The `keys.json` sidecar (SPEC §5): which DEKs exist, wrapped under the
//! KEK, and which are active. Same JSON fields as elastickv's.
//!
//! Reading is strict (an invalid sidecar is an error, never "no keys").
//! Writing is crash-durable: a fresh temporary file, fsync, rename over
//! `keys.json`, fsync of the directory. The rename is the commit point, so
//! a crash leaves either the old file or the new one, never a torn one.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::fsutil::{open_for_reading, replace_private_durable, Follow};
use crate::wire::Purpose;

/// A `keys.json` sidecar that cannot be read, is invalid, or could not be
/// written durably.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sidecar {}: {reason}", path.display())]
pub struct SidecarError {
    pub path: PathBuf,
    pub reason: String,
}

/// The version written: 2, with `storage_envelope_cutover_index` (as Go
/// HEAD). Versions 1 and 2 are read; a version-1 file becomes version 2 on
/// its next write, as in Go.
pub const SIDECAR_VERSION: u64 = 2;
pub const SIDECAR_READABLE_VERSIONS: std::ops::RangeInclusive<u64> = 1..=2;
pub const SIDECAR_FILE: &str = "keys.json";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarKey {
    pub purpose: Purpose,
    /// `nonce ‖ ciphertext ‖ tag` under the KEK (not secret).
    pub wrapped: Vec<u8>,
    /// RFC 3339 UTC, kept as written.
    pub created: String,
    pub local_epoch: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sidecar {
    /// The version read (1 or 2); what is written is always
    /// [`SIDECAR_VERSION`].
    pub version: u64,
    pub raft_applied_index: u64,
    pub storage_envelope_active: bool,
    /// The Raft index of the storage cutover (0 before it, or when it was
    /// applied without an index).
    pub storage_envelope_cutover_index: u64,
    pub raft_envelope_cutover_index: u64,
    /// 0 = none.
    pub active_storage: u32,
    pub active_raft: u32,
    pub keys: BTreeMap<u32, SidecarKey>,
    /// Top-level fields this version does not know, written back unchanged.
    pub extra: Map<String, Value>,
}

impl Default for Sidecar {
    fn default() -> Self {
        Sidecar {
            version: SIDECAR_VERSION,
            raft_applied_index: 0,
            storage_envelope_active: false,
            storage_envelope_cutover_index: 0,
            raft_envelope_cutover_index: 0,
            active_storage: 0,
            active_raft: 0,
            keys: BTreeMap::new(),
            extra: Map::new(),
        }
    }
}

const KNOWN_FIELDS: [&str; 7] = [
    "version",
    "raft_applied_index",
    "storage_envelope_active",
    "storage_envelope_cutover_index",
    "raft_envelope_cutover_index",
    "active",
    "keys",
];

fn uint(v: &Value, what: &str, max: u64) -> Result<u64, String> {
    v.as_u64()
        .filter(|n| *n <= max)
        .ok_or_else(|| format!("{what} must be an integer in 0..={max}, got {v}"))
}

/// A decimal id as written by elastickv: digits only, no sign, no leading
/// zero, not zero, fits in u32.
fn parse_key_id(text: &str) -> Result<u32, String> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && !(text.len() > 1 && text.starts_with('0'));
    let id = if canonical {
        text.parse::<u32>().ok()
    } else {
        None
    };
    match id {
        Some(0) => Err("key id \"0\" is reserved".to_owned()),
        Some(id) => Ok(id),
        None => Err(format!("key id {text:?} is not a decimal u32")),
    }
}

fn purpose_from_json(v: &Value, id: u32) -> Result<Purpose, String> {
    match v.as_str() {
        Some("storage") => Ok(Purpose::Storage),
        Some("raft") => Ok(Purpose::Raft),
        _ => Err(format!(
            "keys.{id}.purpose must be \"storage\" or \"raft\", got {v}"
        )),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, as RFC 3339 (and Go) write it.
pub fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    let num = |r: std::ops::Range<usize>| {
        std::str::from_utf8(&b[r])
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
    };
    if b.len() < 20
        || !(digits(0..4) && digits(5..7) && digits(8..10))
        || !(digits(11..13) && digits(14..16) && digits(17..19))
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    let in_range = |r, lo, hi| num(r).is_some_and(|n| (lo..=hi).contains(&n));
    if !(in_range(5..7, 1, 12)
        && in_range(8..10, 1, 31)
        && in_range(11..13, 0, 23)
        && in_range(14..16, 0, 59)
        && in_range(17..19, 0, 60))
    {
        return false;
    }
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &rest[1 + n..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

/// Now, as RFC 3339 UTC with second precision.
pub fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339_from_unix(secs)
}

pub fn rfc3339_from_unix(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Sidecar {
    /// Whether a bootstrap has installed active keys.
    pub fn is_bootstrapped(&self) -> bool {
        self.active_storage != 0 || self.active_raft != 0
    }

    pub fn active(&self, purpose: Purpose) -> u32 {
        match purpose {
            Purpose::Storage => self.active_storage,
            Purpose::Raft => self.active_raft,
        }
    }

    /// Records that the entry at `index` was applied: the stored index
    /// only moves up, and an entry without one (or index 0) leaves it
    /// (elastickv applier.go, advanceRaftAppliedIndex).
    pub fn advance_raft_applied_index(&mut self, index: Option<u64>) {
        if let Some(index) = index.filter(|&i| i > self.raft_applied_index) {
            self.raft_applied_index = index;
        }
    }

    pub fn set_active(&mut self, purpose: Purpose, dek_id: u32) {
        match purpose {
            Purpose::Storage => self.active_storage = dek_id,
            Purpose::Raft => self.active_raft = dek_id,
        }
    }

    /// Parses and validates sidecar JSON.
    pub fn parse(bytes: &[u8]) -> Result<Sidecar, String> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
        let Value::Object(mut top) = value else {
            return Err("the top level must be a JSON object".to_owned());
        };
        let version = top.get("version").ok_or("missing \"version\"")?;
        if !version
            .as_u64()
            .is_some_and(|v| SIDECAR_READABLE_VERSIONS.contains(&v))
        {
            return Err(format!(
                "version {version} is not supported (expected 1 or {SIDECAR_VERSION})"
            ));
        }
        let mut sidecar = Sidecar {
            version: version.as_u64().unwrap_or(SIDECAR_VERSION),
            ..Sidecar::default()
        };
        if let Some(v) = top.get("raft_applied_index") {
            sidecar.raft_applied_index = uint(v, "raft_applied_index", u64::MAX)?;
        }
        if let Some(v) = top.get("storage_envelope_active") {
            sidecar.storage_envelope_active = v
                .as_bool()
                .ok_or_else(|| format!("storage_envelope_active must be a boolean, got {v}"))?;
        }
        if let Some(v) = top.get("storage_envelope_cutover_index") {
            sidecar.storage_envelope_cutover_index =
                uint(v, "storage_envelope_cutover_index", u64::MAX)?;
        }
        if let Some(v) = top.get("raft_envelope_cutover_index") {
            sidecar.raft_envelope_cutover_index = uint(v, "raft_envelope_cutover_index", u64::MAX)?;
        }
        let active = top
            .get("active")
            .and_then(Value::as_object)
            .ok_or("\"active\" must be an object with \"storage\" and \"raft\"")?;
        for (field, slot) in [
            ("storage", &mut sidecar.active_storage),
            ("raft", &mut sidecar.active_raft),
        ] {
            let v = active
                .get(field)
                .ok_or_else(|| format!("missing \"active.{field}\""))?;
            *slot = uint(v, &format!("active.{field}"), u64::from(u32::MAX))? as u32;
        }
        let keys = top
            .get("keys")
            .and_then(Value::as_object)
            .ok_or("\"keys\" must be an object")?;
        for (id_text, entry) in keys {
            let id = parse_key_id(id_text)?;
            let entry = entry
                .as_object()
                .ok_or_else(|| format!("keys.{id} must be an object"))?;
            let field = |name: &str| {
                entry
                    .get(name)
                    .ok_or_else(|| format!("keys.{id} is missing \"{name}\""))
            };
            let purpose = purpose_from_json(field("purpose")?, id)?;
            let wrapped = field("wrapped")?
                .as_str()
                .and_then(|s| BASE64.decode(s).ok())
                .ok_or_else(|| format!("keys.{id}.wrapped must be standard base64"))?;
            let created = field("created")?
                .as_str()
                .filter(|s| is_rfc3339(s))
                .ok_or_else(|| format!("keys.{id}.created must be an RFC 3339 timestamp"))?
                .to_owned();
            let local_epoch = uint(
                field("local_epoch")?,
                &format!("keys.{id}.local_epoch"),
                u64::from(u16::MAX),
            )? as u16;
            sidecar.keys.insert(
                id,
                SidecarKey {
                    purpose,
                    wrapped,
                    created,
                    local_epoch,
                },
            );
        }
        for name in KNOWN_FIELDS {
            top.remove(name);
        }
        sidecar.extra = top;
        sidecar.validate()?;
        Ok(sidecar)
    }

    /// The cross-field rules: an active id must be a key of its purpose.
    pub fn validate(&self) -> Result<(), String> {
        for purpose in [Purpose::Storage, Purpose::Raft] {
            let id = self.active(purpose);
            if id == 0 {
                continue;
            }
            match self.keys.get(&id) {
                None => {
                    return Err(format!(
                        "active.{} = {id} is not in \"keys\"",
                        purpose.as_str()
                    ))
                }
                Some(key) if key.purpose != purpose => {
                    return Err(format!(
                        "active.{} = {id} names a {} key",
                        purpose.as_str(),
                        key.purpose.as_str()
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The sidecar as elastickv writes it (`json.MarshalIndent(sc, "", "  ")`):
    /// two-space indent, the struct's field order, key ids sorted as
    /// strings, no trailing newline. Fields this version does not know are
    /// written back after `keys`. Fails (rather than producing a partial
    /// document that would replace keys.json) if serialisation does.
    pub fn to_json(&self) -> Result<Vec<u8>, String> {
        fn value(v: &Value) -> Result<String, String> {
            serde_json::to_string(v).map_err(|e| format!("cannot serialise the sidecar: {e}"))
        }
        let mut ids: Vec<String> = self.keys.keys().map(u32::to_string).collect();
        ids.sort();
        let mut out = String::from("{\n");
        let mut field = |name: &str, rendered: String| {
            if out.len() > 2 {
                out.push_str(",\n");
            }
            out.push_str(&format!("  {}: {rendered}", json!(name)));
        };
        field("version", SIDECAR_VERSION.to_string());
        field("raft_applied_index", self.raft_applied_index.to_string());
        field(
            "storage_envelope_active",
            self.storage_envelope_active.to_string(),
        );
        field(
            "storage_envelope_cutover_index",
            self.storage_envelope_cutover_index.to_string(),
        );
        field(
            "raft_envelope_cutover_index",
            self.raft_envelope_cutover_index.to_string(),
        );
        field(
            "active",
            format!(
                "{{\n    \"storage\": {},\n    \"raft\": {}\n  }}",
                self.active_storage, self.active_raft
            ),
        );
        let keys = if ids.is_empty() {
            "{}".to_owned()
        } else {
            let mut body = Vec::with_capacity(ids.len());
            for id in &ids {
                let key = &self.keys[&id.parse::<u32>().map_err(|e| e.to_string())?];
                body.push(format!(
                    "    {}: {{\n      \"purpose\": {},\n      \"wrapped\": {},\n      \"created\": {},\n      \"local_epoch\": {}\n    }}",
                    json!(id),
                    json!(key.purpose.as_str()),
                    json!(BASE64.encode(&key.wrapped)),
                    value(&json!(key.created))?,
                    key.local_epoch
                ));
            }
            format!("{{\n{}\n  }}", body.join(",\n"))
        };
        field("keys", keys);
        for (name, extra) in &self.extra {
            let pretty = serde_json::to_string_pretty(extra)
                .map_err(|e| format!("cannot serialise the sidecar: {e}"))?
                .replace('\n', "\n  ");
            field(name, pretty);
        }
        out.push_str("\n}");
        Ok(out.into_bytes())
    }
}

fn sidecar_error(path: &Path, reason: impl Into<String>) -> SidecarError {
    SidecarError {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The largest sidecar read: about 60 000 keys, far beyond any cluster's
/// key history, and small enough that a hostile file costs little memory.
pub const MAX_SIDECAR_BYTES: u64 = 16 << 20;

/// Reads and validates the sidecar at `path`; `None` when there is none.
/// The file is opened once and checked on that descriptor: `O_NONBLOCK` so
/// a FIFO cannot block the open, a regular file only, and at most
/// [`MAX_SIDECAR_BYTES`] read, so `/dev/zero` or a huge file is refused
/// instead of filling memory.
pub fn read(path: &Path) -> Result<Option<Sidecar>, SidecarError> {
    let Some(bytes) = read_bytes(path)? else {
        return Ok(None);
    };
    Sidecar::parse(&bytes)
        .map(Some)
        .map_err(|reason| sidecar_error(path, reason))
}

/// The sidecar's bytes, with [`read`]'s checks on the file (not parsed).
pub fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>, SidecarError> {
    let (file, meta) = match open_for_reading(path, Follow::Symlinks) {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(sidecar_error(path, format!("cannot open: {e}"))),
    };
    if !meta.file_type().is_file() {
        return Err(sidecar_error(
            path,
            "not a regular file (a sidecar is a JSON file the applier writes)",
        ));
    }
    let too_big = |size: u64| {
        sidecar_error(
            path,
            format!("is {size} bytes or more; a sidecar is at most {MAX_SIDECAR_BYTES} bytes"),
        )
    };
    if meta.len() > MAX_SIDECAR_BYTES {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    (&file)
        .take(MAX_SIDECAR_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| sidecar_error(path, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_SIDECAR_BYTES {
        // It grew between fstat and read.
        return Err(too_big(bytes.len() as u64));
    }
    Ok(Some(bytes))
}

/// Replaces the sidecar at `path` with `sidecar`, crash-durably, mode 0600.
pub fn write_durable(path: &Path, sidecar: &Sidecar) -> Result<(), SidecarError> {
    write_durable_or_renamed(path, sidecar).map_err(|failure| match failure {
        WriteFailure::Invalid(e) => e,
        WriteFailure::NotWritten(e) => sidecar_error(path, e.to_string()),
        WriteFailure::NotDurable(e) => sidecar_error(
            path,
            format!("{e} (the new file is in place, not yet durable)"),
        ),
    })
}

/// How a durable sidecar write failed.
#[derive(Debug)]
pub enum WriteFailure {
    /// The document could not be serialised: nothing was written.
    Invalid(SidecarError),
    /// A file-system fault before the rename: nothing changed on disk.
    NotWritten(crate::fsutil::WriteError),
    /// A fault after the rename: the new file is in place, not durable yet.
    NotDurable(crate::fsutil::WriteError),
}

/// [`write_durable`], telling the three kinds of failure apart.
pub fn write_durable_or_renamed(path: &Path, sidecar: &Sidecar) -> Result<(), WriteFailure> {
    // Serialised first: a failure here leaves nothing behind.
    let json = sidecar
        .to_json()
        .map_err(|reason| WriteFailure::Invalid(sidecar_error(path, reason)))?;
    replace_private_durable(path, &json).map_err(|e| {
        if e.renamed {
            WriteFailure::NotDurable(e)
        } else {
            WriteFailure::NotWritten(e)
        }
    })
}

/// The sidecar an apply starts from: `current` (or an empty one) at the
/// version written. An apply that reaches the sidecar writes it whenever
/// this differs from `current`, so a version-1 file becomes version 2 even
/// when no field changes, as Go's `WriteSidecar` does on every branch
/// (sidecar.go:240-249).
pub fn next_version(current: Option<&Sidecar>) -> Sidecar {
    let mut next = current.cloned().unwrap_or_default();
    next.version = SIDECAR_VERSION;
    next
}

/// Why a node's local epoch could not be moved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpochError {
    #[error(transparent)]
    Sidecar(#[from] SidecarError),
    /// Every nonce prefix of this key is used up: only a new key helps.
    #[error("local epoch exhausted: dek_id={dek_id} is already at local_epoch=0xffff in {}; rotate to a new DEK (rotate-dek) before writing again", path.display())]
    Exhausted { dek_id: u32, path: PathBuf },
}

/// The highest local epoch: after it, a key's nonces could repeat.
pub const LOCAL_EPOCH_MAX: u16 = u16::MAX;

/// Moves the local epoch of key `dek_id` up by one, durably, and returns
/// it: what a node does at each start before it writes under the key, so
/// that no nonce of an earlier run (node_id16 ‖ local_epoch ‖ count) can
/// come again (elastickv write_path_startup.go, BumpLocalEpoch). Meant for
/// start-up, before an `Applier` opens the same sidecar. `dek_id` 0 is
/// reserved and must be refused by the caller.
pub fn bump_local_epoch(path: &Path, dek_id: u32) -> Result<u16, EpochError> {
    let mut sidecar = read(path)?
        .ok_or_else(|| sidecar_error(path, "no sidecar: the cluster is not bootstrapped"))?;
    let key = sidecar
        .keys
        .get_mut(&dek_id)
        .ok_or_else(|| sidecar_error(path, format!("no key dek_id={dek_id} in the sidecar")))?;
    if key.local_epoch == LOCAL_EPOCH_MAX {
        return Err(EpochError::Exhausted {
            dek_id,
            path: path.to_path_buf(),
        });
    }
    key.local_epoch += 1;
    let epoch = key.local_epoch;
    write_durable(path, &sidecar)?;
    Ok(epoch)
}

/// The epochs a node pins at start (elastickv main_encryption_write_wiring
/// .go): `(0, 0)` without a sidecar; the active storage key's epoch bumped
/// (0 without one), and the active Raft key's bumped once the Raft layer is
/// cut over (else 0).
pub fn prepare_epochs(path: &Path) -> Result<(u16, u16), EpochError> {
    let Some(sidecar) = read(path)? else {
        return Ok((0, 0));
    };
    let raft_cut_over = sidecar.raft_envelope_cutover_index != 0;
    // Checked before anything is bumped, so a refusal writes nothing.
    if raft_cut_over && sidecar.active_raft == 0 {
        return Err(sidecar_error(
            path,
            "the Raft layer is cut over but there is no active Raft key",
        )
        .into());
    }
    let storage = if sidecar.active_storage == 0 {
        0
    } else {
        bump_local_epoch(path, sidecar.active_storage)?
    };
    let raft = if raft_cut_over {
        bump_local_epoch(path, sidecar.active_raft)?
    } else {
        0
    };
    Ok((storage, raft))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::tmp_path;
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> Sidecar {
        let mut s = Sidecar {
            active_storage: 1,
            active_raft: 2,
            raft_applied_index: 42,
            ..Sidecar::default()
        };
        for (id, purpose) in [(1, Purpose::Storage), (2, Purpose::Raft)] {
            s.keys.insert(
                id,
                SidecarKey {
                    purpose,
                    wrapped: vec![id as u8; 60],
                    created: "2026-05-16T17:53:00Z".into(),
                    local_epoch: 3,
                },
            );
        }
        s
    }

    #[test]
    fn round_trip_and_field_names() {
        let s = sample();
        let json = s.to_json().expect("json");
        let v: Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(v["version"], 2);
        assert_eq!(v["active"]["storage"], 1);
        assert_eq!(v["active"]["raft"], 2);
        assert_eq!(v["keys"]["1"]["purpose"], "storage");
        assert_eq!(v["keys"]["2"]["local_epoch"], 3);
        assert_eq!(v["raft_applied_index"], 42);
        assert_eq!(v["storage_envelope_active"], false);
        assert_eq!(v["raft_envelope_cutover_index"], 0);
        assert_eq!(Sidecar::parse(&json).expect("parse"), s);
    }

    #[test]
    fn written_byte_for_byte_as_go_marshal_indent() {
        let mut s = sample();
        s.storage_envelope_cutover_index = 7;
        s.keys.insert(
            10,
            SidecarKey {
                purpose: Purpose::Storage,
                wrapped: vec![0xFF, 0xEE],
                created: "2026-05-16T17:53:00Z".into(),
                local_epoch: 65535,
            },
        );
        let w1 = BASE64.encode([1u8; 60]);
        let w2 = BASE64.encode([2u8; 60]);
        // json.MarshalIndent(sc, "", "  "): struct order, keys as strings
        // ("10" before "2"), no trailing newline.
        let expected = format!(
            r#"{{
  "version": 2,
  "raft_applied_index": 42,
  "storage_envelope_active": false,
  "storage_envelope_cutover_index": 7,
  "raft_envelope_cutover_index": 0,
  "active": {{
    "storage": 1,
    "raft": 2
  }},
  "keys": {{
    "1": {{
      "purpose": "storage",
      "wrapped": "{w1}",
      "created": "2026-05-16T17:53:00Z",
      "local_epoch": 3
    }},
    "10": {{
      "purpose": "storage",
      "wrapped": "/+4=",
      "created": "2026-05-16T17:53:00Z",
      "local_epoch": 65535
    }},
    "2": {{
      "purpose": "raft",
      "wrapped": "{w2}",
      "created": "2026-05-16T17:53:00Z",
      "local_epoch": 3
    }}
  }}
}}"#
        );
        assert_eq!(
            String::from_utf8(s.to_json().expect("json")).expect("utf8"),
            expected
        );
        let empty = Sidecar {
            raft_applied_index: 1,
            ..Sidecar::default()
        };
        assert!(String::from_utf8(empty.to_json().expect("json"))
            .expect("utf8")
            .contains("\"keys\": {}\n}"));
    }

    #[test]
    fn unknown_top_level_fields_survive_a_rewrite() {
        let mut v: Value =
            serde_json::from_slice(&sample().to_json().expect("json")).expect("json");
        v["future_field"] = json!({"x": 1});
        let parsed = Sidecar::parse(&serde_json::to_vec(&v).expect("ser")).expect("parse");
        let again: Value = serde_json::from_slice(&parsed.to_json().expect("json")).expect("json");
        assert_eq!(again["future_field"], json!({"x": 1}));
    }

    #[test]
    fn reader_rejects_what_spec_says() {
        let good: Value = serde_json::from_slice(&sample().to_json().expect("json")).expect("json");
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("version 3", Box::new(|v| v["version"] = json!(3))),
            ("version 0", Box::new(|v| v["version"] = json!(0))),
            (
                "no version",
                Box::new(|v| {
                    v.as_object_mut().map(|o| o.remove("version"));
                }),
            ),
            (
                "zero id",
                Box::new(|v| v["keys"]["0"] = v["keys"]["1"].clone()),
            ),
            (
                "non-decimal id",
                Box::new(|v| v["keys"]["x1"] = v["keys"]["1"].clone()),
            ),
            (
                "leading zero id",
                Box::new(|v| v["keys"]["07"] = v["keys"]["1"].clone()),
            ),
            (
                "signed id",
                Box::new(|v| v["keys"]["+7"] = v["keys"]["1"].clone()),
            ),
            (
                "huge id",
                Box::new(|v| v["keys"]["4294967296"] = v["keys"]["1"].clone()),
            ),
            (
                "unknown purpose",
                Box::new(|v| v["keys"]["1"]["purpose"] = json!("blob")),
            ),
            (
                "active missing",
                Box::new(|v| v["active"]["storage"] = json!(9)),
            ),
            (
                "active other purpose",
                Box::new(|v| v["active"]["storage"] = json!(2)),
            ),
            (
                "bad base64",
                Box::new(|v| v["keys"]["1"]["wrapped"] = json!("***")),
            ),
            (
                "bad created",
                Box::new(|v| v["keys"]["1"]["created"] = json!("yesterday")),
            ),
            (
                "epoch too big",
                Box::new(|v| v["keys"]["1"]["local_epoch"] = json!(65536)),
            ),
            ("active not object", Box::new(|v| v["active"] = json!(1))),
            ("keys not object", Box::new(|v| v["keys"] = json!([]))),
        ];
        for (name, mutate) in cases {
            let mut v = good.clone();
            mutate(&mut v);
            let bytes = serde_json::to_vec(&v).expect("ser");
            assert!(Sidecar::parse(&bytes).is_err(), "{name} was accepted");
        }
        assert!(Sidecar::parse(b"{").is_err());
        assert!(Sidecar::parse(b"[]").is_err());
    }

    #[test]
    fn rfc3339() {
        for ok in [
            "2026-05-16T17:53:00Z",
            "2026-05-16T17:53:00.123456789Z",
            "2026-05-16t17:53:00+09:00",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "2026-05-16 17:53:00Z",
            "2026-13-16T17:53:00Z",
            "2026-05-16T17:53:00",
            "2026-05-16T17:53:00.Z",
            "",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
        assert_eq!(rfc3339_from_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_from_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_from_unix(1_779_000_000), "2026-05-17T06:40:00Z");
        assert!(is_rfc3339(&rfc3339_now()));
    }

    #[test]
    fn durable_write_replaces_stale_tmp_and_sets_mode() {
        let dir = crate::test_support::fresh_dir("sidecar");
        let path = dir.join(SIDECAR_FILE);
        std::fs::write(tmp_path(&path), b"torn garbage").expect("stale");
        std::fs::set_permissions(tmp_path(&path), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        write_durable(&path, &sample()).expect("write");
        assert!(!tmp_path(&path).exists());
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read(&path).expect("read"), Some(sample()));
        assert_eq!(read(&dir.join("missing.json")).expect("none"), None);
        std::fs::write(&path, b"{\"version\": 1}").expect("write");
        assert!(read(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
