"""The exceptions are plain Python classes (encryption_applier.exceptions)
with keyword fields: constructible by users, raised by the core with every
field set, and picklable with their fields."""

import inspect
import pickle
from pathlib import Path
from typing import Any

import pytest

import encryption_applier as ea
from encryption_applier import exceptions

# One valid set of fields per class (the core's own values in spirit).
SAMPLE_FIELDS: dict[type[ea.EncryptionError], dict[str, Any]] = {
    ea.EncryptionError: {},
    ea.EncryptionApplyError: {},
    ea.KEKNotConfiguredError: {"opcode": 4, "entry_kind": "bootstrap"},
    ea.LocalEpochRollbackError: {"dek_id": 1, "full_node_id": 2, "last_seen": 3, "incoming": 2},
    ea.NodeIDCollisionError: {
        "dek_id": 7,
        "node_id16": 1,
        "existing_full_node_id": 0xAAAA0001,
        "incoming_full_node_id": 0xBBBB0001,
    },
    ea.MalformedPayloadError: {"payload_kind": "registration", "reason": "truncated", "offset": 5},
    ea.RegistryCorruptionError: {
        "key": b"k",
        "problem": "value_length",
        "value": b"\x00" * 11,
        "dek_id": 4,
        "node_id16": 1,
    },
    ea.StorageError: {
        "operation": "committing",
        "path": "/x",
        "code": -30792,
        "replay_from": 11,
        "applied": True,
        "aftermath": (ea.Aftermath("staged_not_committed", entries=3, through_index=14),),
    },
    ea.KEKUnwrapError: {"reason": "tag", "dek_id": 3, "purpose": "raft"},
    ea.KeyConflictError: {"dek_id": 3},
    ea.AlreadyBootstrappedError: {"active_storage": 1, "active_raft": 2, "storage_dek_id": 3, "raft_dek_id": 4},
    ea.NotBootstrappedError: {"dek_id": 3},
    ea.PayloadRejectedError: {"reason": "same_ids", "dek_id": 5},
    ea.CutoverHookError: {"cutover_index": 40, "dek_id": 2},
    ea.SidecarError: {"path": "/x/keys.json", "code": "not_json", "reason": "not valid JSON"},
    ea.StartupRefusedError: {"sentinel": "ErrKEKMismatch", "meaning": None},
    ea.LocalEpochExhaustedError: {
        "dek_id": 3,
        "path": "/x/keys.json",
        "purpose": "storage",
        "sentinel": "ErrLocalEpochExhausted",
        "meaning": "m",
    },
    ea.SidecarPresentWithoutFlagError: {
        "path": "/x/keys.json",
        "sentinel": "ErrSidecarPresentWithoutFlag",
        "meaning": "m",
    },
    ea.KEKRequiredWithFlagError: {"sentinel": "ErrKEKRequiredWithFlag", "meaning": "no KEK"},
    ea.KEKMismatchError: {
        "dek_id": 2,
        "purpose": "raft",
        "problem": "tag",
        "sentinel": "ErrKEKMismatch",
        "meaning": None,
    },
    ea.UnsupportedFilesystemError: {
        "path": "/x",
        "detail": "fsync: EIO",
        "sentinel": "ErrUnsupportedFilesystem",
        "meaning": None,
    },
    ea.StartupNodeIDCollisionError: {
        "first_full_node_id": 0x10007,
        "second_full_node_id": 0x20007,
        "sentinel": "ErrNodeIDCollision",
        "meaning": None,
    },
    ea.StartupLocalEpochRollbackError: {
        "dek_id": 1,
        "full_node_id": 5,
        "phase": "pre-bump",
        "problem": "behind",
        "sidecar_epoch": 2,
        "last_seen": 3,
        "owner_full_node_id": None,
        "sentinel": "ErrLocalEpochRollback",
        "meaning": None,
    },
    ea.EnvelopeCutoverDivergenceError: {
        "snapshot_cutover_index": 9,
        "sidecar_cutover_index": 0,
        "snapshot_path": "/g/snap/0000000000000002-0000000000000064.snap",
        "snapshot_index": 100,
        "sentinel": "ErrEnvelopeCutoverDivergence",
        "meaning": None,
    },
    ea.SidecarBehindRaftLogError: {
        "sidecar_applied_index": 3,
        "engine_applied_index": 9,
        "entry_index": 5,
        "opcode": 5,
        "sentinel": "ErrSidecarBehindRaftLog",
        "meaning": None,
    },
    ea.RaftLogGapUncoveredError: {
        "sidecar_applied_index": 3,
        "engine_applied_index": 9,
        "log_first_index": 6,
        "log_last_index": 12,
        "sentinel": None,
        "meaning": None,
    },
    ea.WriterUint16CollisionError: {
        "dek_id": 1,
        "node_id16": 7,
        "existing_full_node_id": 0x10007,
        "incoming_full_node_id": 0x20007,
        "sentinel": "ErrWriterUint16Collision",
        "meaning": None,
    },
    ea.ForeignRegistryRowError: {
        "dek_id": 11,
        "node_id16": 0x1234,
        "row_full_node_id": 0x0BAD_0000_0000_1234,
        "caller_full_node_id": 0xCAFE_BABE_0000_1234,
    },
    ea.EnvelopeError: {},
    ea.EnvelopeShortError: {"length": 3},
    ea.EnvelopeVersionError: {"version": 2},
    ea.IntegrityError: {"key_id": 4},
    ea.RegistryOpenError: {"path": "/x", "reason": "no such directory"},
    ea.DamagedRegistryError: {"path": "/x", "reason": "data.mdb is damaged", "page": 7, "problem": "truncated"},
    ea.UncommittedRegistryError: {"path": "/x", "reason": "data.mdb holds no committed transaction"},
    ea.KEKFileError: {"path": "/k", "reason": "wrong_size", "mode": None},
    ea.InsecureKEKFileError: {"path": "/k", "reason": "insecure_mode", "mode": 0o644},
    ea.SnapshotError: {
        "path": "/g/fsm-snap/0000000000000064.fsm",
        "code": "fsm_crc_mismatch",
        "reason": "CRC32C mismatch",
        "refused": True,
        "index": 100,
        "details": {"footer": 1, "computed": 2},
    },
}


def test_every_exception_has_a_sample() -> None:
    assert {cls.__name__ for cls in SAMPLE_FIELDS} == set(exceptions.__all__)


def test_the_issue_example() -> None:
    err = ea.LocalEpochRollbackError("m", dek_id=1, full_node_id=2, last_seen=3, incoming=2)
    assert err.dek_id == 1 and err.full_node_id == 2 and err.last_seen == 3 and err.incoming == 2
    assert str(err) == "m"


@pytest.mark.parametrize("cls", list(SAMPLE_FIELDS), ids=lambda c: c.__name__)
def test_fields_are_keywords_attributes_and_survive_pickle(cls: type[ea.EncryptionError]) -> None:
    fields = SAMPLE_FIELDS[cls]
    err = cls("boom", **fields)
    for name, value in fields.items():
        assert getattr(err, name) == value
    assert err.fields == fields
    err.add_note("a note")
    if isinstance(err, ea.EncryptionApplyError):
        assert err.position is None and err.outcomes is None
        err.position, err.outcomes = 3, ["inserted"]
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert back.args == ("boom",)
    assert back.fields == fields
    assert back.__notes__ == ["a note"]
    if isinstance(back, ea.EncryptionApplyError):
        assert (back.position, back.outcomes) == (3, ["inserted"])


def has_required_fields(cls: type) -> bool:
    params = inspect.signature(cls.__init__).parameters.values()
    return any(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in params)


@pytest.mark.parametrize("cls", [c for c in SAMPLE_FIELDS if has_required_fields(c)], ids=lambda c: c.__name__)
def test_required_fields_are_required(cls: type[ea.EncryptionError]) -> None:
    with pytest.raises(TypeError):
        cls("no fields")


def test_hierarchy_is_the_spec_tree() -> None:
    halts = {name for name in exceptions.__all__ if issubclass(getattr(ea, name), ea.EncryptionApplyError)}
    assert halts == {
        "EncryptionApplyError",
        "KEKNotConfiguredError",
        "LocalEpochRollbackError",
        "NodeIDCollisionError",
        "MalformedPayloadError",
        "RegistryCorruptionError",
        "StorageError",
        "KEKUnwrapError",
        "KeyConflictError",
        "AlreadyBootstrappedError",
        "NotBootstrappedError",
        "PayloadRejectedError",
        "CutoverHookError",
        "SidecarError",
    }
    assert issubclass(ea.InsecureKEKFileError, ea.KEKFileError)
    assert issubclass(ea.UncommittedRegistryError, ea.RegistryOpenError)
    assert issubclass(ea.DamagedRegistryError, ea.RegistryOpenError)
    for name in exceptions.__all__:
        assert issubclass(getattr(ea, name), ea.EncryptionError)


def test_a_halt_raised_by_apply_many_pickles_with_every_field(tmp_path: Path) -> None:
    with ea.Applier(tmp_path / "reg") as applier:
        batch = [ea.Registration(1, 0xABCD0001, 5), ea.Registration(1, 0xABCD0001, 4)]
        with pytest.raises(ea.LocalEpochRollbackError) as caught:
            applier.apply_many(batch)
    err = caught.value
    assert err.fields == {"dek_id": 1, "full_node_id": 0xABCD0001, "last_seen": 5, "incoming": 4}
    assert (err.position, err.outcomes) == (1, ["inserted"])
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ea.LocalEpochRollbackError
    assert back.fields == err.fields and str(back) == str(err)
    assert (back.position, back.outcomes) == (1, ["inserted"])


def test_a_halt_outside_a_batch_has_no_position(tmp_path: Path) -> None:
    with ea.Applier(tmp_path / "reg") as applier:
        applier.apply(ea.Registration(1, 0xAAAA0001, 1))
        with pytest.raises(ea.NodeIDCollisionError) as caught:
            applier.apply(ea.Registration(1, 0xBBBB0001, 1))
    assert caught.value.position is None and caught.value.outcomes is None
    assert caught.value.existing_full_node_id == 0xAAAA0001
