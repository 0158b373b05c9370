//! Unit tests of the status views: the projection's cases against a map
//! of rows, the fence of a view, the JSON round trip and what its reader
//! refuses.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::applier::Applier;
use crate::registry::RegistryRow;
use crate::sidecar::write_durable;
use crate::test_support::{fresh_dir, reg};
use crate::wire::Purpose;

const ME: u64 = 0xCAFE_BABE_0000_1234;
const OTHER: u64 = 0x0BAD_0000_0000_1234; // same node_id16 as ME

struct Rows(BTreeMap<(u32, u16), RegistryRow>);

impl RegistryLookup for Rows {
    fn row(&self, dek_id: u32, node_id16: u16) -> Result<Option<RegistryRow>, RegistryError> {
        Ok(self.0.get(&(dek_id, node_id16)).copied())
    }
    fn applied_index(&self) -> Result<Option<u64>, RegistryError> {
        Ok(None)
    }
}

fn rows(list: &[(u32, u64, u16)]) -> Rows {
    Rows(
        list.iter()
            .map(|&(dek_id, full, last)| {
                let row = RegistryRow {
                    dek_id,
                    node_id16: node_id16(full),
                    full_node_id: full,
                    first_seen_local_epoch: 0,
                    last_seen_local_epoch: last,
                };
                ((dek_id, row.node_id16), row)
            })
            .collect(),
    )
}

fn key(purpose: Purpose, wrapped: &[u8], epoch: u16) -> SidecarKey {
    SidecarKey {
        purpose,
        wrapped: wrapped.to_vec(),
        created: "2025-01-02T03:04:05Z".into(),
        local_epoch: epoch,
    }
}

fn sidecar() -> Sidecar {
    let mut sc = Sidecar {
        raft_applied_index: 42,
        storage_envelope_active: true,
        storage_envelope_cutover_index: 40,
        raft_envelope_cutover_index: 41,
        active_storage: 10,
        active_raft: 11,
        ..Sidecar::default()
    };
    sc.keys.insert(10, key(Purpose::Storage, b"storage", 3));
    sc.keys.insert(11, key(Purpose::Raft, b"raft", 7));
    sc.keys
        .insert(12, key(Purpose::Storage, b"unregistered", 0));
    sc
}

#[test]
fn projection_reads_the_callers_rows_under_the_sidecars_keys() {
    // Go's TestEncryptionAdmin_GetSidecarState_ProjectsLocalWriterRegistry,
    // plus a row of another prefix and a row under a key not in the sidecar.
    let r = rows(&[(10, ME, 3), (11, ME, 7), (10, 0x1111_0002, 9), (99, ME, 5)]);
    let got = projection(&sidecar(), Some(&r), ME).unwrap();
    assert_eq!(got, BTreeMap::from([(10, 3), (11, 7)]));
}

#[test]
fn projection_is_empty_without_registry_or_caller() {
    let r = rows(&[(10, ME, 3)]);
    assert!(projection(&sidecar(), None, ME).unwrap().is_empty());
    assert!(projection(&sidecar(), Some(&r), 0).unwrap().is_empty());
}

#[test]
fn a_foreign_row_names_every_id_and_the_lowest_key_is_reported() {
    let r = rows(&[(10, ME, 3), (11, OTHER, 7), (12, OTHER, 1)]);
    let err = projection(&sidecar(), Some(&r), ME).unwrap_err();
    let StatusError::ForeignRow {
        dek_id,
        node_id16,
        row_full_node_id,
        caller_full_node_id,
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        (dek_id, node_id16, row_full_node_id, caller_full_node_id),
        (11, 0x1234, OTHER, ME)
    );
    let text = err.to_string();
    for part in [
        "dek_id=11",
        "node_id16=0x1234",
        "0xbad000000001234",
        "0xcafebabe00001234",
    ] {
        assert!(text.contains(part), "{text}");
    }
}

fn read_here() -> Read<'static> {
    Read {
        sidecar: Path::new("/d/keys.json"),
        registry: Some(Path::new("/d")),
        caller_full_node_id: ME,
    }
}

#[test]
fn the_two_messages_take_go_fields_from_the_sidecar() {
    let sc = sidecar();
    let p = BTreeMap::from([(10, 3)]);
    let s = state_report(&sc, p.clone(), None, read_here());
    assert_eq!(s.latest_applied_index, 42);
    assert_eq!(
        (
            s.active_storage_id,
            s.active_raft_id,
            s.storage_envelope_active
        ),
        (10, 11, true)
    );
    assert_eq!(s.raft_envelope_cutover_index, 41);
    assert_eq!(
        s.wrapped_deks_by_id.keys().copied().collect::<Vec<_>>(),
        [10, 11, 12]
    );
    assert_eq!(s.extras.as_ref().unwrap().envelope, None);
    assert_eq!(
        state_report(&sc, p.clone(), Some(0), read_here()).latest_applied_index,
        0
    );
    let r = resync_response(&sc, p, Some(9999), read_here());
    assert_eq!(r.leader_latest_applied_index, 9999);
    let x = r.extras.unwrap();
    assert_eq!(
        x.envelope,
        Some(EnvelopeFlags {
            storage_envelope_active: true,
            raft_envelope_cutover_index: 41
        })
    );
    assert_eq!(
        (
            x.storage_envelope_cutover_index,
            x.sidecar_raft_applied_index
        ),
        (40, 42)
    );
}

#[test]
fn json_round_trips_and_drops_extras_on_request() {
    let sc = sidecar();
    let p = BTreeMap::from([(10, 3), (11, 0xFFFF)]);
    let s = state_report(&sc, p.clone(), Some(u64::MAX), read_here());
    assert_eq!(SidecarStateReport::from_json(&s.to_json(true)).unwrap(), s);
    let bare = SidecarStateReport::from_json(&s.to_json(false)).unwrap();
    assert_eq!(bare.extras, None);
    assert_eq!(
        bare,
        SidecarStateReport {
            extras: None,
            ..s.clone()
        }
    );
    assert!(s
        .to_json(true)
        .contains("\"latest_applied_index\": \"18446744073709551615\""));
    let r = resync_response(&sc, p, None, read_here());
    assert_eq!(
        ResyncSidecarResponse::from_json(&r.to_json(true)).unwrap(),
        r
    );
    // A state report's JSON is not a resync response, and back.
    assert!(ResyncSidecarResponse::from_json(&s.to_json(false)).is_err());
    assert!(SidecarStateReport::from_json(&r.to_json(false)).is_err());
}

#[test]
fn json_reads_a_go_leaders_protojson() {
    // lowerCamelCase, zero fields left out, quoted and bare numbers.
    let text = r#"{"wrappedDeksById": {"1": "d3JhcHBlZC0x", "2": "d3JhcHBlZC0y"},
        "activeStorageId": 1, "activeRaftId": "2", "leaderLatestAppliedIndex": "17",
        "writerRegistryForCaller": {"1": 4}}"#;
    let r = ResyncSidecarResponse::from_json(text).unwrap();
    assert_eq!(r.wrapped_deks_by_id[&1], b"wrapped-1");
    assert_eq!(r.leader_latest_applied_index, 17);
    assert_eq!(r.writer_registry_for_caller, BTreeMap::from([(1, 4)]));
    assert_eq!(r.extras, None);
    let empty = ResyncSidecarResponse::from_json("{}").unwrap();
    assert!(empty.wrapped_deks_by_id.is_empty() && empty.active_storage_id == 0);
}

#[test]
fn json_reader_refuses_what_no_server_sends() {
    let refused = [
        r#"{"wrapped_deks_by_id": {"0": ""}}"#,
        r#"{"wrapped_deks_by_id": {"01": ""}}"#,
        r#"{"wrapped_deks_by_id": {"1": "!!"}}"#,
        r#"{"active_storage_id": 3}"#,
        r#"{"active_storage_id": 4294967296}"#,
        r#"{"wrapped_deks_by_id": {"1": ""}, "writer_registry_for_caller": {"1": 65536}}"#,
        r#"{"writer_registry_for_caller": {"1": 1}}"#,
        r#"{"leader_latest_applied_index": -1}"#,
        r#"{"leader_latest_applied_index": 1.5}"#,
        r#"{"activeRaftId": 0, "active_raft_id": 0}"#,
        r#"{"surprise": 1}"#,
        r#"[]"#,
        r#"{"#,
    ];
    for text in refused {
        assert!(
            ResyncSidecarResponse::from_json(text).is_err(),
            "accepted {text}"
        );
    }
    let err = ResyncSidecarResponse::from_json(r#"{"surprise": 1}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ResyncSidecarResponse.surprise: unknown field"
    );
}

fn write_sidecar(dir: &Path, sc: &Sidecar) -> std::path::PathBuf {
    let path = dir.join("keys.json");
    write_durable(&path, sc).unwrap();
    path
}

#[test]
fn a_view_is_read_from_a_fresh_snapshot_after_the_sidecar() {
    let dir = fresh_dir("status-fence");
    let mut applier = Applier::open(&dir).unwrap();
    applier.apply_registration(&reg(10, ME, 1)).unwrap();
    let view = applier.registry().unwrap();
    // Rows committed after the view was pinned are seen; the view stays.
    applier.apply_registration(&reg(11, ME, 2)).unwrap();
    let path = write_sidecar(&dir, &sidecar());
    let s = sidecar_state(&path, RegistrySource::View(&view), ME, None).unwrap();
    assert_eq!(
        s.writer_registry_for_caller,
        BTreeMap::from([(10, 1), (11, 2)])
    );
    assert_eq!(view.get(11, node_id16(ME)).unwrap(), None);
    let r = resync_sidecar(&path, RegistrySource::Dir(&dir), ME, None).unwrap();
    assert_eq!(r.writer_registry_for_caller, s.writer_registry_for_caller);
    assert!(r.extras.unwrap().registry.is_some());
}

#[test]
fn missing_sidecar_zero_caller_and_their_order() {
    let dir = fresh_dir("status-errors");
    let path = dir.join("keys.json");
    let err = sidecar_state(&path, RegistrySource::None, ME, None).unwrap_err();
    assert!(matches!(
        err,
        StatusError::Sidecar(SidecarError {
            problem: SidecarProblem::NotBootstrapped,
            ..
        })
    ));
    // The caller id is checked before the sidecar is read (as Go).
    assert!(matches!(
        resync_sidecar(&path, RegistrySource::None, 0, None),
        Err(StatusError::ZeroCaller)
    ));
    // Caller 0: the registry is not even opened.
    let path = write_sidecar(&dir, &sidecar());
    let missing = dir.join("no-registry");
    let s = sidecar_state(&path, RegistrySource::Dir(&missing), 0, None).unwrap();
    assert!(s.writer_registry_for_caller.is_empty());
    assert_eq!(s.extras.unwrap().registry, None);
    assert!(matches!(
        sidecar_state(&path, RegistrySource::Dir(&missing), ME, None),
        Err(StatusError::Open(_))
    ));
}
