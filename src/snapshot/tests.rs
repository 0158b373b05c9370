//! Unit tests of the snapshot reader: the CRC, the header parser, WAL
//! names, and every case of the Go golden file
//! (`tests/core/golden/go/snapshot.json`, written by
//! `scripts/go_vectors/snapshot.py`) replayed against the core, including
//! why a directory has no snapshot (not visible from Python).

use std::path::Path;

use serde_json::Value;

use super::header::{parse, HeaderKind};
use super::problem::{Detail, SnapshotError};
use super::wal::is_wal_name;
use super::*;
use crate::test_support::fresh_dir;

#[test]
fn crc32c_is_castagnoli() {
    assert_eq!(crc32c_update(0, b"123456789"), 0xe306_9283);
    assert_eq!(crc32c_update(0, b""), 0);
    // Continuing equals one pass, across the 8-byte stride.
    let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let (a, b) = data.split_at(13);
    assert_eq!(
        crc32c_update(crc32c_update(0, a), b),
        crc32c_update(0, &data)
    );
}

#[test]
fn header_kinds() {
    let v2 = [
        b"EKVTHLC2".as_slice(),
        &[0, 16],
        &7u64.to_be_bytes(),
        &9u64.to_be_bytes(),
    ]
    .concat();
    let h = parse(&v2, v2.len() as u64).unwrap();
    assert_eq!(h.kind, HeaderKind::V2 { payload_len: 16 });
    assert_eq!(
        (h.ceiling_ms, h.raft_envelope_cutover_index, h.length()),
        (7, 9, 26)
    );
    assert_eq!(parse(b"EKVTHLC", 7).unwrap().kind, HeaderKind::Legacy);
    assert_eq!(
        parse(b"EKVTHLC1", 8).unwrap_err().code(),
        "truncated_header"
    );
    assert_eq!(parse(b"EKVTHLC3", 8).unwrap_err().code(), "unknown_magic");
    assert_eq!(
        parse(b"EKVTHLC2\x04\x01", 10).unwrap_err().code(),
        "invalid_length"
    );
}

#[test]
fn wal_names_as_sscanf() {
    for (name, ok) in [
        ("0000000000000000-0000000000000000.wal", true),
        ("1-2.wal", true),
        (" 1- 2.wal", true),
        ("\u{a0}1-2.wal", true),
        ("1-2.wal.wal", true),
        ("00000000000000001-0.wal", false),
        ("1 -2.wal", false),
        ("1\n-2.wal", false),
        ("\n1-2.wal", false),
        ("x.wal", false),
        ("1-2.WAL", false),
    ] {
        assert_eq!(is_wal_name(name.as_bytes()), ok, "{name:?}");
    }
}

fn int(v: &Value) -> Option<u64> {
    v.as_u64()
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap().to_string_lossy().into_owned()
}

fn header_json(root: &Path, h: &SnapshotHeader) -> Value {
    let header = h.header;
    serde_json::json!({
        "path": rel(root, &h.path),
        "payload_path": rel(root, &h.payload_path),
        "format": h.format.as_str(),
        "term": h.term,
        "index": h.index,
        "token_index": h.token_index,
        "payload_size": h.payload_size,
        "kind": match header.map(|x| x.kind) {
            None => "none",
            Some(HeaderKind::Legacy) => "legacy",
            Some(HeaderKind::V1) => "v1",
            Some(HeaderKind::V2 { .. }) => "v2",
        },
        "version": header.and_then(|x| x.version()),
        "header_length": header.map_or(0, |x| x.length()),
        "ceiling_ms": header.map_or(0, |x| x.ceiling_ms),
        "raft_envelope_cutover_index": h.raft_envelope_cutover_index(),
    })
}

fn error_json(root: &Path, e: &SnapshotError) -> Value {
    let mut details = serde_json::Map::new();
    for (name, d) in e.problem.details() {
        let v = match d {
            Detail::Int(i) => Value::from(i),
            Detail::Text(t) => Value::from(t),
        };
        details.insert(name.to_string(), v);
    }
    serde_json::json!({
        "code": e.code(),
        "path": rel(root, &e.path),
        "index": e.index,
        "details": details,
    })
}

fn answer(root: &Path, op: &str, path: &str) -> Value {
    let path = root.join(path);
    let result = match op {
        "read" => {
            read_snapshot_header(&path).map(|h| serde_json::json!({"ok": header_json(root, &h)}))
        }
        _ => newest(&path).map(|r| match r {
            Ok(h) => serde_json::json!({"chosen": header_json(root, &h)}),
            Err(NoSnapshot::NoWal) => serde_json::json!({"none": "no_wal"}),
            Err(NoSnapshot::NoneVouched) => serde_json::json!({"none": "none_vouched"}),
        }),
    };
    result.unwrap_or_else(|e| serde_json::json!({"error": error_json(root, &e)}))
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn every_go_golden_case() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/core/golden/go/snapshot.json"),
    )
    .unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["elastickv_commit"], "d9a031d0");
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() > 100);
    for case in cases {
        let root = fresh_dir("snapshot-golden");
        for d in case["dirs"].as_array().unwrap() {
            std::fs::create_dir_all(root.join(d.as_str().unwrap())).unwrap();
        }
        for (p, h) in case["files"].as_object().unwrap() {
            let path = root.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, hex(h.as_str().unwrap())).unwrap();
        }
        let got = answer(
            &root,
            case["op"].as_str().unwrap(),
            case["path"].as_str().unwrap(),
        );
        assert_eq!(got, case["expect"], "case {}", case["name"]);
    }
    // The numbers the file holds are u64s throughout.
    assert!(cases.iter().all(|c| c["expect"]
        .get("ok")
        .is_none_or(|ok| int(&ok["raft_envelope_cutover_index"]).is_some())));
}

#[test]
fn a_fifo_is_refused() {
    let dir = fresh_dir("snapshot-fifo");
    let fifo = dir.join("x.fsm");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo has no other precondition.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let err = read_snapshot_header(&fifo).unwrap_err();
    assert_eq!((err.code(), err.refused()), ("not_regular_file", false));
}

#[test]
fn a_file_that_shrinks_is_a_read_error() {
    let dir = fresh_dir("snapshot-shrink");
    let path = dir.join("x.fsm");
    std::fs::write(&path, vec![7u8; 200_000]).unwrap();
    let mut src = source::Source::open(&path, source::Missing::CannotOpen).unwrap();
    std::fs::write(&path, b"short").unwrap();
    let err = src.crc32c(0, 0, src.size).unwrap_err();
    assert_eq!(err.code(), "cannot_read");
    assert!(err.to_string().contains("shrank"), "{err}");
}

#[test]
fn restored_cutover_for_guard_0() {
    let dir = fresh_dir("snapshot-restored");
    let payload = [
        b"EKVTHLC2".as_slice(),
        &[0, 16],
        &1u64.to_be_bytes(),
        &40u64.to_be_bytes(),
    ]
    .concat();
    let fsm = dir.join("x.fsm");
    let file = [
        payload.as_slice(),
        &crc32c_update(0, &payload).to_be_bytes(),
    ]
    .concat();
    std::fs::write(&fsm, file).unwrap();
    let (cutover, read) = restored_cutover(&fsm).unwrap().unwrap();
    assert_eq!((cutover, read.index), (40, None));
    assert_eq!(read.to_string(), fsm.display().to_string());
    // A directory without wal/: nothing to restore.
    assert_eq!(restored_cutover(&dir).unwrap(), None);
    // A file Go refuses is an error.
    std::fs::write(&fsm, b"\x00").unwrap();
    assert_eq!(restored_cutover(&fsm).unwrap_err().code(), "fsm_too_small");
}
