//! The sidecar's JSON (SPEC §5): a strict reader of versions 1 and 2 that
//! names every problem ([`SidecarProblem`]), the cross-field rules, and
//! the writer that produces elastickv's bytes exactly
//! (`json.MarshalIndent`, sidecar.go).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Value};

use super::rfc3339::is_rfc3339;
use super::{Sidecar, SidecarKey, SidecarProblem, SIDECAR_READABLE_VERSIONS, SIDECAR_VERSION};
use crate::wire::Purpose;

const KNOWN_FIELDS: [&str; 7] = [
    "version",
    "raft_applied_index",
    "storage_envelope_active",
    "storage_envelope_cutover_index",
    "raft_envelope_cutover_index",
    "active",
    "keys",
];

fn uint(v: &Value, what: &str, max: u64) -> Result<u64, SidecarProblem> {
    v.as_u64().filter(|n| *n <= max).ok_or_else(|| {
        SidecarProblem::bad_value(
            what,
            format!("an integer in 0..={max}"),
            Some(v.to_string()),
        )
    })
}

/// A decimal id as written by elastickv: digits only, no sign, no leading
/// zero, not zero, fits in u32.
fn parse_key_id(text: &str) -> Result<u32, SidecarProblem> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && !(text.len() > 1 && text.starts_with('0'));
    let id = if canonical {
        text.parse::<u32>().ok()
    } else {
        None
    };
    match id {
        Some(0) => Err(SidecarProblem::ReservedKeyId),
        Some(id) => Ok(id),
        None => Err(SidecarProblem::BadKeyId(text.to_owned())),
    }
}

fn purpose_from_json(v: &Value, id: u32) -> Result<Purpose, SidecarProblem> {
    match v.as_str() {
        Some("storage") => Ok(Purpose::Storage),
        Some("raft") => Ok(Purpose::Raft),
        _ => Err(SidecarProblem::bad_value(
            &format!("keys.{id}.purpose"),
            "\"storage\" or \"raft\"",
            Some(v.to_string()),
        )),
    }
}

impl Sidecar {
    /// Parses and validates sidecar JSON.
    pub fn parse(bytes: &[u8]) -> Result<Sidecar, SidecarProblem> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| SidecarProblem::NotJson(e.to_string()))?;
        let Value::Object(mut top) = value else {
            return Err(SidecarProblem::NotAnObject);
        };
        let version = top
            .get("version")
            .ok_or_else(|| SidecarProblem::MissingField("version".to_owned()))?;
        if !version
            .as_u64()
            .is_some_and(|v| SIDECAR_READABLE_VERSIONS.contains(&v))
        {
            return Err(SidecarProblem::UnsupportedVersion(version.to_string()));
        }
        let mut sidecar = Sidecar {
            version: version.as_u64().unwrap_or(SIDECAR_VERSION),
            ..Sidecar::default()
        };
        if let Some(v) = top.get("raft_applied_index") {
            sidecar.raft_applied_index = uint(v, "raft_applied_index", u64::MAX)?;
        }
        if let Some(v) = top.get("storage_envelope_active") {
            sidecar.storage_envelope_active = v.as_bool().ok_or_else(|| {
                SidecarProblem::bad_value(
                    "storage_envelope_active",
                    "a boolean",
                    Some(v.to_string()),
                )
            })?;
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
            .ok_or_else(|| {
                SidecarProblem::bad_value("active", "an object with \"storage\" and \"raft\"", None)
            })?;
        for (field, slot) in [
            ("storage", &mut sidecar.active_storage),
            ("raft", &mut sidecar.active_raft),
        ] {
            let v = active
                .get(field)
                .ok_or_else(|| SidecarProblem::MissingField(format!("active.{field}")))?;
            *slot = uint(v, &format!("active.{field}"), u64::from(u32::MAX))? as u32;
        }
        let keys = top
            .get("keys")
            .and_then(Value::as_object)
            .ok_or_else(|| SidecarProblem::bad_value("keys", "an object", None))?;
        for (id_text, entry) in keys {
            let id = parse_key_id(id_text)?;
            let entry = entry.as_object().ok_or_else(|| {
                SidecarProblem::bad_value(&format!("keys.{id}"), "an object", None)
            })?;
            let field = |name: &str| {
                entry
                    .get(name)
                    .ok_or_else(|| SidecarProblem::MissingField(format!("keys.{id}.{name}")))
            };
            let purpose = purpose_from_json(field("purpose")?, id)?;
            let wrapped = field("wrapped")?
                .as_str()
                .and_then(|s| BASE64.decode(s).ok())
                .ok_or_else(|| {
                    SidecarProblem::bad_value(
                        &format!("keys.{id}.wrapped"),
                        "standard base64",
                        None,
                    )
                })?;
            let created = field("created")?
                .as_str()
                .filter(|s| is_rfc3339(s))
                .ok_or_else(|| {
                    SidecarProblem::bad_value(
                        &format!("keys.{id}.created"),
                        "an RFC 3339 timestamp",
                        None,
                    )
                })?
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
    pub fn validate(&self) -> Result<(), SidecarProblem> {
        for purpose in [Purpose::Storage, Purpose::Raft] {
            let id = self.active(purpose);
            if id == 0 {
                continue;
            }
            match self.keys.get(&id) {
                None => {
                    return Err(SidecarProblem::ActiveNotAKey {
                        purpose,
                        dek_id: id,
                    })
                }
                Some(key) if key.purpose != purpose => {
                    return Err(SidecarProblem::ActiveWrongPurpose {
                        purpose,
                        dek_id: id,
                    })
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
    pub fn to_json(&self) -> Result<Vec<u8>, SidecarProblem> {
        fn value(v: &Value) -> Result<String, SidecarProblem> {
            serde_json::to_string(v).map_err(|e| SidecarProblem::CannotSerialise(e.to_string()))
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
                let key = &self.keys[&id
                    .parse::<u32>()
                    .map_err(|e| SidecarProblem::CannotSerialise(e.to_string()))?];
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
                .map_err(|e| SidecarProblem::CannotSerialise(e.to_string()))?
                .replace('\n', "\n  ");
            field(name, pretty);
        }
        out.push_str("\n}");
        Ok(out.into_bytes())
    }
}
