"""The applier over a real LMDB registry: the four cases, halts that write
nothing, durability across reopen, the read-only view, and corruption."""

import subprocess
import sys
from pathlib import Path

import pytest

import encryption_applier as ea
from encryption_applier.testing.model import Halt, RegistryModel

from helpers import dump_raw, interactive, plant_raw, run_python

A = 0xABCD_0001
B = 0x1234_0002
A_TWIN = 0xFFFF_0001  # same node_id16 as A


def rows_as_tuples(registry: ea.Registry) -> list[tuple[int, ...]]:
    return [
        (r.dek_id, r.node_id16, r.full_node_id, r.first_seen_local_epoch, r.last_seen_local_epoch)
        for r in registry.rows()
    ]


def test_four_cases_with_outcomes_rows_and_exception_fields(registry_dir: Path) -> None:
    with ea.Applier(registry_dir) as applier:
        assert applier.apply_registration(ea.Registration(dek_id=1, full_node_id=A, local_epoch=1)) == "inserted"
        assert applier.apply_registration(ea.Registration(1, A, 4)) == "advanced"
        assert applier.apply_registration(ea.Registration(1, A, 4)) == "unchanged"

        with pytest.raises(ea.LocalEpochRollbackError) as rollback:
            applier.apply_registration(ea.Registration(1, A, 3))
        err = rollback.value
        assert (err.dek_id, err.full_node_id, err.last_seen, err.incoming) == (1, A, 4, 3)
        assert "dek_id=1 full_node_id=0xabcd0001 last_seen=4 incoming=3" in str(err)

        with pytest.raises(ea.NodeIDCollisionError) as collision:
            applier.apply_registration(ea.Registration(1, A_TWIN, 9))
        err2 = collision.value
        assert (err2.dek_id, err2.node_id16, err2.existing_full_node_id, err2.incoming_full_node_id) == (
            1,
            0x0001,
            A,
            A_TWIN,
        )
        assert "0xabcd0001" in str(err2) and "0xffff0001" in str(err2)

        # The same node_id16 under another DEK is another row.
        assert applier.apply_registration(ea.Registration(2, A_TWIN, 9)) == "inserted"
        assert applier.registry.rows() == [
            ea.RegistryRow(1, 0x0001, A, 1, 4),
            ea.RegistryRow(2, 0x0001, A_TWIN, 9, 9),
        ]


def test_collision_is_reported_before_rollback(registry_dir: Path) -> None:
    with ea.Applier(registry_dir) as applier:
        applier.apply_registration(ea.Registration(1, A, 9))
        # Another node and a lower epoch: the collision is the fault reported.
        with pytest.raises(ea.NodeIDCollisionError):
            applier.apply_registration(ea.Registration(1, A_TWIN, 1))


def test_exception_hierarchy() -> None:
    halts = [
        ea.KEKNotConfiguredError,
        ea.LocalEpochRollbackError,
        ea.NodeIDCollisionError,
        ea.MalformedPayloadError,
        ea.RegistryCorruptionError,
        ea.StorageError,
    ]
    for cls in halts:
        assert issubclass(cls, ea.EncryptionApplyError)
        assert cls.__module__ == "encryption_applier"
    assert issubclass(ea.EncryptionApplyError, ea.EncryptionError)
    assert issubclass(ea.EncryptionError, Exception)
    assert issubclass(ea.RegistryOpenError, ea.EncryptionError)
    assert not issubclass(ea.RegistryOpenError, ea.EncryptionApplyError)


def test_apply_dispatches_bytes_and_payload_objects(registry_dir: Path) -> None:
    with ea.Applier(registry_dir) as applier:
        assert applier.apply(ea.Registration(5, B, 1).to_entry()) == "inserted"
        assert applier.apply(bytearray(ea.Registration(5, B, 2).to_entry())) == "advanced"
        assert applier.apply(ea.Registration(5, B, 3)) == "advanced"
        assert applier.registry.get(5, 0x0002) == ea.RegistryRow(5, 2, B, 1, 3)
        with pytest.raises(TypeError):
            applier.apply("0301")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            applier.apply(None)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            applier.apply_registration(ea.Registration(5, B, 3).to_entry())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (b"", "empty_entry"),
        (b"\x06" + ea.Registration(1, A, 1).encode(), "reserved_opcode"),
        (b"\x07", "reserved_opcode"),
        (b"\x02" + ea.Registration(1, A, 1).encode(), "not_encryption_opcode"),
        (b"\x03" + ea.Registration(1, A, 1).encode()[:-1], "truncated"),
        (b"\x03" + ea.Registration(1, A, 1).encode() + b"\x00", "trailing_bytes"),
        (b"\x03\x02" + ea.Registration(1, A, 1).encode()[1:], "wrong_version"),
    ],
)
def test_malformed_entries_halt_and_write_nothing(registry_dir: Path, entry: bytes, reason: str) -> None:
    with ea.Applier(registry_dir) as applier:
        applier.apply_registration(ea.Registration(9, B, 1))
        before = applier.registry.rows()
        with pytest.raises(ea.MalformedPayloadError) as info:
            applier.apply(entry)
        assert info.value.reason == reason
        assert applier.registry.rows() == before


def test_bootstrap_and_rotation_halt_without_kek(registry_dir: Path) -> None:
    boot = ea.Bootstrap(1, b"w" * 60, 2, b"r" * 60, [ea.Registration(1, A, 1), ea.Registration(2, B, 1)])
    rot = ea.Rotation(3, ea.Purpose.STORAGE, b"n" * 60, ea.Registration(3, A, 2))
    with ea.Applier(registry_dir) as applier:
        for call in (
            lambda: applier.apply_bootstrap(boot),
            lambda: applier.apply(boot.to_entry()),
            lambda: applier.apply(boot),
        ):
            with pytest.raises(ea.KEKNotConfiguredError) as info:
                call()
            assert info.value.opcode == 0x04 and info.value.entry_kind == "bootstrap"
        for call in (lambda: applier.apply_rotation(rot), lambda: applier.apply(rot.to_entry())):
            with pytest.raises(ea.KEKNotConfiguredError) as info:
                call()
            assert info.value.opcode == 0x05 and info.value.entry_kind == "rotation"
        # A rotation that is malformed says so rather than "no KEK".
        with pytest.raises(ea.MalformedPayloadError):
            applier.apply_rotation(ea.Rotation(3, 1, b"", ea.Registration(3, A, 2), sub_tag=0x02))
        over_cap = ea.Bootstrap(1, b"", 2, b"", [ea.Registration(1, A, 1)] * 16385)
        with pytest.raises(ea.MalformedPayloadError) as malformed:
            applier.apply_bootstrap(over_cap)
        assert malformed.value.reason == "batch_too_large"
        assert len(applier.registry) == 0
    assert dump_raw(registry_dir) == []


def test_halted_apply_leaves_lmdb_byte_for_byte_unchanged(registry_dir: Path) -> None:
    model = RegistryModel()
    with ea.Applier(registry_dir) as applier:
        for dek, full, epoch in [(1, A, 3), (1, B, 1), (2, A, 7)]:
            assert applier.apply_registration(ea.Registration(dek, full, epoch)) == model.apply_registration(
                dek, full, epoch
            )
    before = dump_raw(registry_dir)
    assert before == model.raw_items()
    with ea.Applier(registry_dir) as applier:
        for bad in [ea.Registration(1, A, 2), ea.Registration(1, A_TWIN, 9), ea.Registration(2, A, 0)]:
            expected = model.apply_registration(bad.dek_id, bad.full_node_id, bad.local_epoch)
            assert isinstance(expected, Halt)
            with pytest.raises(ea.EncryptionApplyError) as info:
                applier.apply_registration(bad)
            assert type(info.value).__name__ == expected.name
            for name, value in expected.attrs.items():
                assert getattr(info.value, name) == value
    assert dump_raw(registry_dir) == before


def test_committed_rows_survive_reopen(registry_dir: Path) -> None:
    with ea.Applier(registry_dir) as applier:
        for epoch in range(1, 6):
            applier.apply_registration(ea.Registration(1, A, epoch))
        applier.apply_registration(ea.Registration(4, B, 2))
    assert applier.closed
    with ea.Registry(registry_dir) as registry:
        assert registry.rows() == [ea.RegistryRow(1, 1, A, 1, 5), ea.RegistryRow(4, 2, B, 2, 2)]
    with ea.Applier(registry_dir) as applier:
        # The rules carry on from the stored state.
        assert applier.apply_registration(ea.Registration(1, A, 5)) == "unchanged"
        with pytest.raises(ea.LocalEpochRollbackError):
            applier.apply_registration(ea.Registration(1, A, 4))


def test_rows_visible_to_another_process_once_apply_returns(registry_dir: Path) -> None:
    with ea.Applier(registry_dir) as applier:
        applier.apply_registration(ea.Registration(3, A, 2))
        proc = run_python(
            """
            import sys, encryption_applier as ea
            print(ea.Registry(sys.argv[1]).rows())
            """,
            str(registry_dir),
        )
        assert proc.stdout.strip() == repr([ea.RegistryRow(3, 1, A, 2, 2)])


def test_registry_view_api(registry_dir: Path) -> None:
    with ea.Applier(registry_dir) as applier:
        for dek, full in [(2, A), (1, B), (1, A), (7, B)]:
            applier.apply_registration(ea.Registration(dek, full, 1))
    registry = ea.Registry(str(registry_dir))
    assert registry.path == registry_dir.resolve()
    assert len(registry) == 4
    assert [(r.dek_id, r.node_id16) for r in registry] == [(1, 1), (1, 2), (2, 1), (7, 2)]
    assert list(registry) == registry.rows()
    assert registry.rows(dek_id=1) == [ea.RegistryRow(1, 1, A, 1, 1), ea.RegistryRow(1, 2, B, 1, 1)]
    assert registry.rows(dek_id=3) == []
    assert registry.dek_ids() == [1, 2, 7]
    assert registry.get(7, 2) == ea.RegistryRow(7, 2, B, 1, 1)
    assert registry.get(7, 1) is None
    assert (1, 2) in registry and (1, 3) not in registry
    with pytest.raises(OverflowError):
        registry.get(2**32, 0)
    with pytest.raises(OverflowError):
        registry.get(1, -1)
    assert "Registry" in repr(registry)
    registry.close()
    assert registry.closed
    with pytest.raises(ValueError, match="closed"):
        registry.rows()


def test_registry_open_errors(tmp_path: Path) -> None:
    with pytest.raises(ea.RegistryOpenError, match="no such directory") as info:
        ea.Registry(tmp_path / "missing")
    assert info.value.path == str(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ea.RegistryOpenError, match="no data.mdb"):
        ea.Registry(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ea.RegistryOpenError, match="not a directory"):
        ea.Applier(tmp_path / "file")
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "data.mdb").write_bytes(b"\x5a" * 16384)
    with pytest.raises(ea.RegistryOpenError, match="LMDB"):
        ea.Registry(garbage)


def test_one_writer_per_registry(registry_dir: Path) -> None:
    first = ea.Applier(registry_dir)
    with pytest.raises(ea.RegistryOpenError, match="another Applier"):
        ea.Applier(registry_dir)
    # ...in another process too.
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, encryption_applier as ea; ea.Applier(sys.argv[1])", str(registry_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "RegistryOpenError" in proc.stderr
    first.close()
    with ea.Applier(registry_dir) as second:
        assert not second.closed


def test_closed_applier_refuses_work(registry_dir: Path) -> None:
    applier = ea.Applier(registry_dir)
    applier.close()
    applier.close()  # idempotent
    assert "closed" in repr(applier)
    with pytest.raises(ValueError, match="closed Applier"):
        applier.apply_registration(ea.Registration(1, A, 1))
    with pytest.raises(ValueError, match="closed Applier"):
        applier.registry  # noqa: B018


def test_view_outlives_its_applier(registry_dir: Path) -> None:
    with ea.Applier(registry_dir) as applier:
        applier.apply_registration(ea.Registration(1, A, 1))
        view = applier.registry
    assert view.rows() == [ea.RegistryRow(1, 1, A, 1, 1)]


# 10 000 bytes: an LMDB overflow value; the error keeps its first 64.
@pytest.mark.parametrize("length", [11, 13, 10_000])
def test_corrupt_value_raises_corruption_not_no_row(registry_dir: Path, length: int) -> None:
    with ea.Applier(registry_dir) as applier:
        applier.apply_registration(ea.Registration(1, B, 1))
    plant_raw(registry_dir, ea.registry_key(4, 0x0001), b"\x00" * length)
    before = dump_raw(registry_dir)
    with ea.Registry(registry_dir) as registry:
        with pytest.raises(ea.RegistryCorruptionError) as info:
            registry.get(4, 0x0001)
        err = info.value
        assert (err.dek_id, err.node_id16, err.problem) == (4, 1, "value_length")
        assert err.key == ea.registry_key(4, 1) and err.value == b"\x00" * min(length, 64)
        assert f"value is {length} bytes, expected 12" in str(err)
        assert "dek_id=4 node_id16=0x0001" in str(err)
        with pytest.raises(ea.RegistryCorruptionError):
            registry.rows()
        with pytest.raises(ea.RegistryCorruptionError):
            list(registry)
        # len() counts stored rows from LMDB's entry count, without reading
        # them: the corrupt row counts (reading it is what raises).
        assert len(registry) == 2
        # A read of an unaffected DEK still works.
        assert registry.rows(dek_id=1) == [ea.RegistryRow(1, 2, B, 1, 1)]
    with ea.Applier(registry_dir) as applier, pytest.raises(ea.RegistryCorruptionError):
        applier.apply_registration(ea.Registration(4, 0x0001, 1))
    assert dump_raw(registry_dir) == before
    report = ea.verify(registry_dir)
    assert [d.problem for d in report.problems] == ["row"]
    assert report.overflow_pages == (0 if length < 64 else -(-(length + 16) // report.page_size))


def test_len_counts_exactly_the_keys_under_the_registry_prefix(registry_dir: Path) -> None:
    with ea.Applier(registry_dir) as applier:
        applier.apply_many([ea.Registration(1 + i % 3, 0x1_0000 + i, 1) for i in range(500)], first_index=1)
    # keys outside the prefix, before and after it (py-lmdb writes them)
    plant_raw(registry_dir, b"!aaa", b"x")
    plant_raw(registry_dir, b"~zzz", b"y")
    prefixed = [k for k, _ in dump_raw(registry_dir) if k.startswith(ea.REGISTRY_PREFIX)]
    with ea.Registry(registry_dir) as registry:
        assert len(registry) == len(prefixed) == 500 == len(registry.rows())
        assert len(registry.rows(dek_id=1)) == 167


def test_row_disagreeing_with_its_key_is_corruption(registry_dir: Path) -> None:
    ea.Applier(registry_dir).close()
    # A full_node_id whose low 16 bits are not the key's node_id16.
    plant_raw(registry_dir, ea.registry_key(4, 0x0001), ea.encode_registry_value(0xABCD0002, 1, 1))
    with ea.Registry(registry_dir) as registry, pytest.raises(ea.RegistryCorruptionError) as info:
        registry.get(4, 1)
    assert info.value.problem == "node_id_mismatch"


def test_malformed_key_under_the_prefix_is_corruption(registry_dir: Path) -> None:
    ea.Applier(registry_dir).close()
    plant_raw(registry_dir, ea.REGISTRY_PREFIX + b"\x00\x00\x00\x01|", ea.encode_registry_value(1, 1, 1))
    with ea.Registry(registry_dir) as registry, pytest.raises(ea.RegistryCorruptionError) as info:
        registry.rows()
    assert info.value.problem == "key_length"


def test_reader_process_sees_only_committed_states(registry_dir: Path) -> None:
    """A second process reads snapshots while this one applies: each
    snapshot is the state after some prefix of the stream."""
    stream = [(1, 0x10000 | n, e) for e in (1, 2, 3) for n in range(1, 21)]
    model = RegistryModel()
    states = [[]]
    for dek, full, epoch in stream:
        model.apply_registration(dek, full, epoch)
        states.append(model.sorted_rows())
    with ea.Applier(registry_dir) as applier:
        reader = interactive(
            """
            import sys, encryption_applier as ea
            reg = ea.Registry(sys.argv[1])
            print('ready', flush=True)
            for line in sys.stdin:
                reg.refresh()
                print([(r.dek_id, r.node_id16, r.full_node_id, r.first_seen_local_epoch,
                        r.last_seen_local_epoch) for r in reg], flush=True)
            """,
            str(registry_dir),
        )
        assert reader.stdin is not None and reader.stdout is not None
        assert reader.stdout.readline().strip() == "ready"
        seen = []
        for i, (dek, full, epoch) in enumerate(stream):
            applier.apply_registration(ea.Registration(dek, full, epoch))
            if i % 7 == 0:
                reader.stdin.write("read\n")
                reader.stdin.flush()
                snapshot = eval(reader.stdout.readline())  # a list of int tuples
                assert snapshot == states[i + 1]  # everything acknowledged, nothing more
                seen.append(snapshot)
        reader.stdin.close()
        assert reader.wait(timeout=60) == 0
    assert len(seen) == len(range(0, len(stream), 7))


def test_threads_applying_at_once_each_apply_exactly_once(registry_dir: Path) -> None:
    import threading

    with ea.Applier(registry_dir) as applier:
        errors: list[BaseException] = []

        def worker(dek_id: int) -> None:
            try:
                for epoch in range(1, 11):
                    for node in range(1, 6):
                        expected = "inserted" if epoch == 1 else "advanced"
                        assert applier.apply_registration(ea.Registration(dek_id, node, epoch)) == expected
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)

        threads = [threading.Thread(target=worker, args=(dek,)) for dek in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors
        assert applier.registry.rows() == [
            ea.RegistryRow(dek, node, node, 1, 10) for dek in range(8) for node in range(1, 6)
        ]
