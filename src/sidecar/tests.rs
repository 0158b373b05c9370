//! The sidecar against SPEC §5 and Go's bytes.

use super::*;
use crate::fsutil::tmp_path;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::json;
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
    let mut v: Value = serde_json::from_slice(&sample().to_json().expect("json")).expect("json");
    v["future_field"] = json!({"x": 1});
    let parsed = Sidecar::parse(&serde_json::to_vec(&v).expect("ser")).expect("parse");
    let again: Value = serde_json::from_slice(&parsed.to_json().expect("json")).expect("json");
    assert_eq!(again["future_field"], json!({"x": 1}));
}

#[test]
fn reader_rejects_what_spec_says() {
    let good: Value = serde_json::from_slice(&sample().to_json().expect("json")).expect("json");
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, &str, Mutation)> = vec![
        (
            "version 3",
            "unsupported_version",
            Box::new(|v| v["version"] = json!(3)),
        ),
        (
            "version 0",
            "unsupported_version",
            Box::new(|v| v["version"] = json!(0)),
        ),
        (
            "no version",
            "missing_field",
            Box::new(|v| {
                v.as_object_mut().map(|o| o.remove("version"));
            }),
        ),
        (
            "zero id",
            "reserved_key_id",
            Box::new(|v| v["keys"]["0"] = v["keys"]["1"].clone()),
        ),
        (
            "non-decimal id",
            "bad_key_id",
            Box::new(|v| v["keys"]["x1"] = v["keys"]["1"].clone()),
        ),
        (
            "leading zero id",
            "bad_key_id",
            Box::new(|v| v["keys"]["07"] = v["keys"]["1"].clone()),
        ),
        (
            "signed id",
            "bad_key_id",
            Box::new(|v| v["keys"]["+7"] = v["keys"]["1"].clone()),
        ),
        (
            "huge id",
            "bad_key_id",
            Box::new(|v| v["keys"]["4294967296"] = v["keys"]["1"].clone()),
        ),
        (
            "unknown purpose",
            "bad_value",
            Box::new(|v| v["keys"]["1"]["purpose"] = json!("blob")),
        ),
        (
            "active missing",
            "active_not_a_key",
            Box::new(|v| v["active"]["storage"] = json!(9)),
        ),
        (
            "active other purpose",
            "active_wrong_purpose",
            Box::new(|v| v["active"]["storage"] = json!(2)),
        ),
        (
            "bad base64",
            "bad_value",
            Box::new(|v| v["keys"]["1"]["wrapped"] = json!("***")),
        ),
        (
            "bad created",
            "bad_value",
            Box::new(|v| v["keys"]["1"]["created"] = json!("yesterday")),
        ),
        (
            "epoch too big",
            "bad_value",
            Box::new(|v| v["keys"]["1"]["local_epoch"] = json!(65536)),
        ),
        (
            "active not object",
            "bad_value",
            Box::new(|v| v["active"] = json!(1)),
        ),
        (
            "keys not object",
            "bad_value",
            Box::new(|v| v["keys"] = json!([])),
        ),
    ];
    for (name, code, mutate) in cases {
        let mut v = good.clone();
        mutate(&mut v);
        let bytes = serde_json::to_vec(&v).expect("ser");
        match Sidecar::parse(&bytes) {
            Ok(_) => panic!("{name} was accepted"),
            Err(problem) => assert_eq!(problem.code(), code, "{name}: {problem}"),
        }
    }
    assert_eq!(Sidecar::parse(b"{").map_err(|p| p.code()), Err("not_json"));
    assert_eq!(
        Sidecar::parse(b"[]").map_err(|p| p.code()),
        Err("not_an_object")
    );
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
fn rfc3339_parsed() {
    let t = |y, mo, d, h, mi, s, ns, off| Timestamp {
        year: y,
        month: mo,
        day: d,
        hour: h,
        minute: mi,
        second: s,
        nanosecond: ns,
        offset_minutes: off,
    };
    assert_eq!(
        parse_rfc3339("2026-05-16T17:53:00Z"),
        Some(t(2026, 5, 16, 17, 53, 0, 0, 0))
    );
    assert_eq!(
        parse_rfc3339("2000-02-29t01:02:03.5+09:30"),
        Some(t(2000, 2, 29, 1, 2, 3, 500_000_000, 570))
    );
    assert_eq!(
        parse_rfc3339("2026-05-16T17:53:00.1234567891-01:00"),
        Some(t(2026, 5, 16, 17, 53, 0, 123_456_789, -60))
    );
    // The right shape, but no instant: left to the caller (None).
    for none in [
        "2026-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-05-16T23:59:60Z",
        "0000-01-01T00:00:00Z",
        "2026-05-16T17:53:00+24:00",
        "2026-05-16T17:53:00+00:60",
        "not a time",
    ] {
        assert_eq!(parse_rfc3339(none), None, "{none}");
    }
    assert!(parse_rfc3339(&rfc3339_now()).is_some());
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

#[test]
fn every_problem_has_a_distinct_listed_code() {
    let mut codes = SidecarProblem::CODES.to_vec();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), SidecarProblem::CODES.len());
    let samples = [
        SidecarProblem::CannotOpen("x".into()),
        SidecarProblem::NotRegularFile,
        SidecarProblem::TooLarge { size: 1 },
        SidecarProblem::CannotRead("x".into()),
        SidecarProblem::NotJson("x".into()),
        SidecarProblem::NotAnObject,
        SidecarProblem::MissingField("version".into()),
        SidecarProblem::UnsupportedVersion("3".into()),
        SidecarProblem::bad_value("keys", "an object", None),
        SidecarProblem::BadKeyId("x".into()),
        SidecarProblem::ReservedKeyId,
        SidecarProblem::ActiveNotAKey {
            purpose: Purpose::Raft,
            dek_id: 9,
        },
        SidecarProblem::ActiveWrongPurpose {
            purpose: Purpose::Storage,
            dek_id: 2,
        },
        SidecarProblem::CannotSerialise("x".into()),
        SidecarProblem::NotWritten("x".into()),
        SidecarProblem::NotDurable("x".into()),
        SidecarProblem::CannotResolvePath("x".into()),
        SidecarProblem::NotBootstrapped,
        SidecarProblem::NoSuchKey { dek_id: 3 },
        SidecarProblem::RaftCutOverWithoutRaftKey,
    ];
    let found: Vec<&str> = samples.iter().map(SidecarProblem::code).collect();
    assert_eq!(found, SidecarProblem::CODES.to_vec());
    assert_eq!(
        samples[12].to_string(),
        "active.storage = 2 names a raft key"
    );
}

#[test]
fn the_raft_cutover_is_none_until_an_index_is_recorded() {
    let mut s = sample();
    assert_eq!(s.raft_cutover_index(), None);
    s.raft_envelope_cutover_index = 12;
    assert_eq!(s.raft_cutover_index(), Some(12));
}

#[test]
fn pinned_epochs_read_what_prepare_epochs_pins_and_write_nothing() {
    let dir = crate::test_support::fresh_dir("pinned");
    let path = dir.join("keys.json");
    assert_eq!(pinned_epochs(&path, false), Ok((0, 0)), "no sidecar");
    let mut s = sample();
    write_durable(&path, &s).expect("write");
    let before = std::fs::read(&path).expect("read");
    // Raft not cut over: only the storage key is pinned.
    assert_eq!(pinned_epochs(&path, false), Ok((4, 0)));
    assert_eq!(pinned_epochs(&path, true), Ok((3, 0)));
    s.raft_envelope_cutover_index = 9;
    s.keys.get_mut(&2).expect("raft key").local_epoch = 7;
    write_durable(&path, &s).expect("write");
    let before_cut = std::fs::read(&path).expect("read");
    assert_ne!(before, before_cut);
    assert_eq!(pinned_epochs(&path, false), Ok((4, 8)));
    assert_eq!(pinned_epochs(&path, true), Ok((3, 7)));
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before_cut,
        "nothing written"
    );
    assert_eq!(prepare_epochs(&path), Ok((4, 8)), "the same as the bump");
    assert_eq!(pinned_epochs(&path, true), Ok((4, 8)));
    s.keys.get_mut(&1).expect("storage key").local_epoch = LOCAL_EPOCH_MAX;
    write_durable(&path, &s).expect("write");
    assert!(matches!(
        pinned_epochs(&path, false),
        Err(EpochError::Exhausted { dek_id: 1, .. })
    ));
    assert_eq!(pinned_epochs(&path, true), Ok((LOCAL_EPOCH_MAX, 7)));
}
