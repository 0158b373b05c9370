//! The JSON of [`SidecarStateReport`] and [`ResyncSidecarResponse`]: the
//! proto3 JSON mapping of Go's messages (protojson with the proto field
//! names and every field written: `uint64` as a decimal string, `uint32`
//! and `bool` as themselves, `bytes` as standard base64, map keys as
//! decimal strings, in field-number order and ascending key order), and
//! the extras as one more object, `"extras"`, in the same mapping.
//!
//! The reader is strict: unknown fields, a field given under both of its
//! names, a number out of range or a bad base64 string are refused. It
//! reads what protojson writes too: lowerCamelCase names
//! (`wrappedDeksById`), zero fields left out, `null` for a zero field,
//! numbers quoted or not, URL-safe or unpadded base64. After reading, a
//! message is checked as a follower must ([`SidecarStateReport::validate`],
//! the rules in `super::check`).

use std::collections::BTreeMap;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{Map, Value};

use super::{check, EnvelopeFlags, Extras, ResyncSidecarResponse, SidecarStateReport};
use crate::sidecar::{is_rfc3339, SidecarKey};
use crate::wire::Purpose;

/// A message that cannot be read: the field (dotted) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}.{field}: {problem}")]
pub struct MessageError {
    /// `SidecarStateReport` or `ResyncSidecarResponse`.
    pub message: &'static str,
    pub field: String,
    pub problem: String,
}

const STATE: &str = "SidecarStateReport";
const RESYNC: &str = "ResyncSidecarResponse";

// ---- writing

/// A JSON value to render: a scalar already in JSON, or an object.
enum J {
    Raw(String),
    Obj(Vec<(String, J)>),
}

fn string(text: &str) -> J {
    J::Raw(Value::from(text).to_string())
}

fn u64_text(n: u64) -> J {
    string(&n.to_string())
}

fn render(j: &J, indent: usize, out: &mut String) {
    match j {
        J::Raw(text) => out.push_str(text),
        J::Obj(fields) if fields.is_empty() => out.push_str("{}"),
        J::Obj(fields) => {
            out.push_str("{\n");
            for (i, (name, value)) in fields.iter().enumerate() {
                out.push_str(&"  ".repeat(indent + 1));
                out.push_str(&Value::from(name.as_str()).to_string());
                out.push_str(": ");
                render(value, indent + 1, out);
                out.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
            }
            out.push_str(&"  ".repeat(indent));
            out.push('}');
        }
    }
}

fn wrapped_json(map: &BTreeMap<u32, Vec<u8>>) -> J {
    J::Obj(
        map.iter()
            .map(|(id, w)| (id.to_string(), string(&STANDARD.encode(w))))
            .collect(),
    )
}

fn projection_json(map: &BTreeMap<u32, u32>) -> J {
    J::Obj(
        map.iter()
            .map(|(id, v)| (id.to_string(), J::Raw(v.to_string())))
            .collect(),
    )
}

fn extras_json(x: &Extras) -> J {
    let keys = x
        .keys
        .iter()
        .map(|(id, k)| {
            let key = J::Obj(vec![
                ("purpose".into(), string(k.purpose.as_str())),
                ("created".into(), string(&k.created)),
                ("local_epoch".into(), J::Raw(k.local_epoch.to_string())),
            ]);
            (id.to_string(), key)
        })
        .collect();
    let mut fields = vec![
        ("keys".to_owned(), J::Obj(keys)),
        (
            "storage_envelope_cutover_index".to_owned(),
            u64_text(x.storage_envelope_cutover_index),
        ),
    ];
    if let Some(flags) = x.envelope {
        fields.push((
            "storage_envelope_active".into(),
            J::Raw(flags.storage_envelope_active.to_string()),
        ));
        fields.push((
            "raft_envelope_cutover_index".into(),
            u64_text(flags.raft_envelope_cutover_index),
        ));
    }
    fields.extend([
        (
            "sidecar_raft_applied_index".to_owned(),
            u64_text(x.sidecar_raft_applied_index),
        ),
        (
            "sidecar_version".to_owned(),
            J::Raw(x.sidecar_version.to_string()),
        ),
        (
            "caller_full_node_id".to_owned(),
            u64_text(x.caller_full_node_id),
        ),
        ("sidecar".to_owned(), string(&x.sidecar)),
        (
            "registry".to_owned(),
            x.registry.as_deref().map_or(J::Raw("null".into()), string),
        ),
    ]);
    J::Obj(fields)
}

fn finish(mut fields: Vec<(String, J)>, extras: Option<&Extras>) -> String {
    if let Some(x) = extras {
        fields.push(("extras".into(), extras_json(x)));
    }
    let mut out = String::new();
    render(&J::Obj(fields), 0, &mut out);
    out
}

impl SidecarStateReport {
    /// The message as JSON (see the module doc); without the extras when
    /// `with_extras` is false: then exactly Go's message.
    pub fn to_json(&self, with_extras: bool) -> String {
        let fields = vec![
            (
                "wrapped_deks_by_id".into(),
                wrapped_json(&self.wrapped_deks_by_id),
            ),
            (
                "active_storage_id".into(),
                J::Raw(self.active_storage_id.to_string()),
            ),
            (
                "active_raft_id".into(),
                J::Raw(self.active_raft_id.to_string()),
            ),
            (
                "storage_envelope_active".into(),
                J::Raw(self.storage_envelope_active.to_string()),
            ),
            (
                "raft_envelope_cutover_index".into(),
                u64_text(self.raft_envelope_cutover_index),
            ),
            (
                "latest_applied_index".into(),
                u64_text(self.latest_applied_index),
            ),
            (
                "writer_registry_for_caller".into(),
                projection_json(&self.writer_registry_for_caller),
            ),
        ];
        finish(fields, self.extras.as_ref().filter(|_| with_extras))
    }

    /// Reads [`Self::to_json`]'s JSON, or a Go server's.
    pub fn from_json(text: &str) -> Result<Self, MessageError> {
        Self::from_value(&parse_text(STATE, text)?)
    }

    /// Reads a parsed JSON value (the Python bindings build one from a
    /// dict), then [`Self::validate`]s it.
    pub fn from_value(value: &Value) -> Result<Self, MessageError> {
        let mut f = Fields::of(STATE, value)?;
        let mut report = SidecarStateReport {
            wrapped_deks_by_id: f.wrapped()?,
            active_storage_id: f.uint("active_storage_id", "activeStorageId", U32)? as u32,
            active_raft_id: f.uint("active_raft_id", "activeRaftId", U32)? as u32,
            storage_envelope_active: f
                .bool("storage_envelope_active", "storageEnvelopeActive")?
                .unwrap_or(false),
            raft_envelope_cutover_index: f.uint(
                "raft_envelope_cutover_index",
                "raftEnvelopeCutoverIndex",
                u64::MAX,
            )?,
            latest_applied_index: f.uint("latest_applied_index", "latestAppliedIndex", u64::MAX)?,
            writer_registry_for_caller: f.projection()?,
            extras: f.extras(false)?,
        };
        f.done()?;
        fill_wrapped(&mut report.extras, &report.wrapped_deks_by_id);
        report.validate()?;
        Ok(report)
    }

    /// What a reader refuses though the proto allows it, since no server
    /// builds it: see `check` (in `status/mod.rs`).
    pub fn validate(&self) -> Result<(), MessageError> {
        check(
            STATE,
            &self.wrapped_deks_by_id,
            [self.active_storage_id, self.active_raft_id],
            &self.writer_registry_for_caller,
            self.extras.as_ref(),
            false,
        )
    }
}

impl ResyncSidecarResponse {
    /// The message as JSON (see the module doc); without the extras when
    /// `with_extras` is false: then exactly Go's message.
    pub fn to_json(&self, with_extras: bool) -> String {
        let fields = vec![
            (
                "wrapped_deks_by_id".into(),
                wrapped_json(&self.wrapped_deks_by_id),
            ),
            (
                "active_storage_id".into(),
                J::Raw(self.active_storage_id.to_string()),
            ),
            (
                "active_raft_id".into(),
                J::Raw(self.active_raft_id.to_string()),
            ),
            (
                "leader_latest_applied_index".into(),
                u64_text(self.leader_latest_applied_index),
            ),
            (
                "writer_registry_for_caller".into(),
                projection_json(&self.writer_registry_for_caller),
            ),
        ];
        finish(fields, self.extras.as_ref().filter(|_| with_extras))
    }

    /// Reads [`Self::to_json`]'s JSON, or a Go leader's.
    pub fn from_json(text: &str) -> Result<Self, MessageError> {
        Self::from_value(&parse_text(RESYNC, text)?)
    }

    /// Reads a parsed JSON value, then [`Self::validate`]s it.
    pub fn from_value(value: &Value) -> Result<Self, MessageError> {
        let mut f = Fields::of(RESYNC, value)?;
        let mut response = ResyncSidecarResponse {
            wrapped_deks_by_id: f.wrapped()?,
            active_storage_id: f.uint("active_storage_id", "activeStorageId", U32)? as u32,
            active_raft_id: f.uint("active_raft_id", "activeRaftId", U32)? as u32,
            leader_latest_applied_index: f.uint(
                "leader_latest_applied_index",
                "leaderLatestAppliedIndex",
                u64::MAX,
            )?,
            writer_registry_for_caller: f.projection()?,
            extras: f.extras(true)?,
        };
        f.done()?;
        fill_wrapped(&mut response.extras, &response.wrapped_deks_by_id);
        response.validate()?;
        Ok(response)
    }

    /// What a follower refuses though the proto allows it: see `check` (in
    /// `status/mod.rs`).
    pub fn validate(&self) -> Result<(), MessageError> {
        check(
            RESYNC,
            &self.wrapped_deks_by_id,
            [self.active_storage_id, self.active_raft_id],
            &self.writer_registry_for_caller,
            self.extras.as_ref(),
            true,
        )
    }
}

// ---- reading

const U32: u64 = u32::MAX as u64;

fn parse_text(message: &'static str, text: &str) -> Result<Value, MessageError> {
    serde_json::from_str(text).map_err(|e| MessageError {
        message,
        field: "(document)".into(),
        problem: format!("not valid JSON: {e}"),
    })
}

/// The fields of one JSON object, each taken once by one of its names.
struct Fields<'a> {
    message: &'static str,
    /// Dotted path of this object, "" at the top.
    at: String,
    obj: &'a Map<String, Value>,
    known: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    fn of(message: &'static str, value: &'a Value) -> Result<Fields<'a>, MessageError> {
        Fields::nested(message, String::new(), value)
    }

    fn nested(message: &'static str, at: String, value: &'a Value) -> Result<Self, MessageError> {
        let obj = value.as_object().ok_or_else(|| MessageError {
            message,
            field: if at.is_empty() {
                "(document)".into()
            } else {
                at.clone()
            },
            problem: "must be a JSON object".into(),
        })?;
        Ok(Fields {
            message,
            at,
            obj,
            known: Vec::new(),
        })
    }

    fn err(&self, field: &str, problem: impl Into<String>) -> MessageError {
        MessageError {
            message: self.message,
            field: if self.at.is_empty() {
                field.to_owned()
            } else {
                format!("{}.{field}", self.at)
            },
            problem: problem.into(),
        }
    }

    /// The value under `proto` or `camel` (protojson reads both); `None`
    /// when absent or null.
    fn take(
        &mut self,
        proto: &'static str,
        camel: &'static str,
    ) -> Result<Option<&'a Value>, MessageError> {
        self.known.extend([proto, camel]);
        let (a, b) = (
            self.obj.get(proto),
            self.obj.get(camel).filter(|_| camel != proto),
        );
        if a.is_some() && b.is_some() {
            return Err(self.err(proto, format!("given twice, also as {camel:?}")));
        }
        Ok(a.or(b).filter(|v| !v.is_null()))
    }

    fn uint(
        &mut self,
        proto: &'static str,
        camel: &'static str,
        max: u64,
    ) -> Result<u64, MessageError> {
        match self.take(proto, camel)? {
            None => Ok(0),
            Some(v) => uint_of(v, max).map_err(|p| self.err(proto, p)),
        }
    }

    fn bool(
        &mut self,
        proto: &'static str,
        camel: &'static str,
    ) -> Result<Option<bool>, MessageError> {
        self.take(proto, camel)?
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| self.err(proto, "must be true or false"))
            })
            .transpose()
    }

    fn text(&mut self, name: &'static str) -> Result<Option<String>, MessageError> {
        self.take(name, name)?
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| self.err(name, "must be a string"))
            })
            .transpose()
    }

    /// A map with uint32 keys, each value read by `f`.
    fn map<T>(
        &mut self,
        proto: &'static str,
        camel: &'static str,
        f: impl Fn(&Value) -> Result<T, String>,
    ) -> Result<BTreeMap<u32, T>, MessageError> {
        let mut out = BTreeMap::new();
        let Some(v) = self.take(proto, camel)? else {
            return Ok(out);
        };
        let obj = v
            .as_object()
            .ok_or_else(|| self.err(proto, "must be an object keyed by dek_id"))?;
        for (key, value) in obj {
            let id = key_id(key)
                .ok_or_else(|| self.err(proto, format!("key {key:?} is not a decimal uint32")))?;
            let item = f(value).map_err(|p| self.err(&format!("{proto}.{id}"), p))?;
            out.insert(id, item);
        }
        Ok(out)
    }

    fn wrapped(&mut self) -> Result<BTreeMap<u32, Vec<u8>>, MessageError> {
        self.map("wrapped_deks_by_id", "wrappedDeksById", bytes_of)
    }

    fn projection(&mut self) -> Result<BTreeMap<u32, u32>, MessageError> {
        self.map(
            "writer_registry_for_caller",
            "writerRegistryForCaller",
            |v| uint_of(v, U32).map(|n| n as u32),
        )
    }

    /// The extras object, if any (the wrapped bytes of its keys are filled
    /// from `wrapped_deks_by_id` by the caller's check).
    fn extras(&mut self, resync: bool) -> Result<Option<Extras>, MessageError> {
        let Some(v) = self.take("extras", "extras")? else {
            return Ok(None);
        };
        let mut x = Fields::nested(self.message, "extras".into(), v)?;
        // Every field but `registry` is always written: none may be missing.
        for name in [
            "keys",
            "storage_envelope_cutover_index",
            "sidecar_raft_applied_index",
            "sidecar_version",
            "caller_full_node_id",
            "sidecar",
        ] {
            if x.obj.get(name).is_none_or(Value::is_null) {
                return Err(x.err(name, "missing"));
            }
        }
        let keys = x.map("keys", "keys", key_info)?;
        let storage_envelope_cutover_index = x.uint(
            "storage_envelope_cutover_index",
            "storage_envelope_cutover_index",
            u64::MAX,
        )?;
        let active = x.bool("storage_envelope_active", "storage_envelope_active")?;
        let raft = x
            .take("raft_envelope_cutover_index", "raft_envelope_cutover_index")?
            .map(|v| uint_of(v, u64::MAX).map_err(|p| x.err("raft_envelope_cutover_index", p)))
            .transpose()?;
        let envelope = match (active, raft) {
            (None, None) => None,
            (Some(a), Some(r)) => Some(EnvelopeFlags {
                storage_envelope_active: a,
                raft_envelope_cutover_index: r,
            }),
            _ => {
                return Err(x.err(
                    "storage_envelope_active",
                    "goes with raft_envelope_cutover_index (both or neither)",
                ))
            }
        };
        if resync && envelope.is_none() {
            return Err(x.err(
                "storage_envelope_active",
                "a resync response's extras carry the envelope flags",
            ));
        }
        let extras = Extras {
            keys,
            storage_envelope_cutover_index,
            envelope,
            sidecar_raft_applied_index: x.uint(
                "sidecar_raft_applied_index",
                "sidecar_raft_applied_index",
                u64::MAX,
            )?,
            sidecar_version: x.uint("sidecar_version", "sidecar_version", u64::MAX)?,
            caller_full_node_id: x.uint("caller_full_node_id", "caller_full_node_id", u64::MAX)?,
            sidecar: x.text("sidecar")?.unwrap_or_default(),
            registry: x.text("registry")?,
        };
        x.done()?;
        Ok(Some(extras))
    }

    /// Refuses any field no `take` asked for.
    fn done(self) -> Result<(), MessageError> {
        match self.obj.keys().find(|k| !self.known.contains(&k.as_str())) {
            Some(unknown) => Err(self.err(unknown, "unknown field")),
            None => Ok(()),
        }
    }
}

/// A canonical decimal uint32 (no sign, no leading zero).
fn key_id(text: &str) -> Option<u32> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && !(text.len() > 1 && text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// An unsigned integer as protojson writes it: a JSON integer, or a
/// decimal string.
fn uint_of(v: &Value, max: u64) -> Result<u64, String> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        _ => None,
    };
    n.filter(|n| *n <= max)
        .ok_or_else(|| format!("must be an integer in 0..={max}, got {v}"))
}

fn bytes_of(v: &Value) -> Result<Vec<u8>, String> {
    let text = v.as_str().ok_or("must be a base64 string")?;
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or_else(|| "is not valid base64".to_owned())
}

/// One key of the extras: purpose, created, local_epoch (its wrapped bytes
/// come from `wrapped_deks_by_id`).
fn key_info(v: &Value) -> Result<SidecarKey, String> {
    let obj = v.as_object().ok_or("must be an object")?;
    if let Some(unknown) = obj
        .keys()
        .find(|k| !["purpose", "created", "local_epoch"].contains(&k.as_str()))
    {
        return Err(format!("unknown field {unknown:?}"));
    }
    let purpose = match obj.get("purpose").and_then(Value::as_str) {
        Some("storage") => Purpose::Storage,
        Some("raft") => Purpose::Raft,
        _ => return Err("purpose must be \"storage\" or \"raft\"".into()),
    };
    let created = obj
        .get("created")
        .and_then(Value::as_str)
        .filter(|s| is_rfc3339(s))
        .ok_or("created must be an RFC 3339 timestamp")?
        .to_owned();
    let local_epoch = obj
        .get("local_epoch")
        .ok_or("missing local_epoch")
        .and_then(|v| {
            uint_of(v, u64::from(u16::MAX)).map_err(|_| "local_epoch must be in 0..=65535")
        })? as u16;
    Ok(SidecarKey {
        purpose,
        wrapped: Vec::new(),
        created,
        local_epoch,
    })
}

/// Fills the extras' keys' wrapped bytes from Go's map (a message carries
/// them once), before the check compares the two id sets.
fn fill_wrapped(extras: &mut Option<Extras>, wrapped: &BTreeMap<u32, Vec<u8>>) {
    if let Some(x) = extras {
        for (id, key) in x.keys.iter_mut() {
            if let Some(w) = wrapped.get(id) {
                key.wrapped.clone_from(w);
            }
        }
    }
}
