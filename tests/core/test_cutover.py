"""Envelope cutovers (rotation sub-tags 0x04/0x05) and sidecar version 2,
as elastickv HEAD applies and writes them (SPEC §7, parity study N1)."""

import base64
import json
from pathlib import Path

import pytest

import encryption_applier as ea

from helpers import NODE, OTHER, WrapOracle, crash_applying

# The parity study's pinned example: enable-storage, dek 7, proposer
# 0xABCD0001 at epoch 2, no wrapped key.
PINNED_ENABLE_STORAGE = bytes.fromhex("01 04 00000007 01 00000000 00000007 00000000abcd0001 0002".replace(" ", ""))


def enable(layer: int, dek_id: int, full: int = NODE, epoch: int = 2, purpose: ea.Purpose | None = None) -> ea.Rotation:
    if purpose is None:
        purpose = ea.Purpose.STORAGE if layer == ea.ENABLE_STORAGE_ENVELOPE else ea.Purpose.RAFT
    return ea.Rotation(dek_id, purpose, b"", ea.Registration(dek_id, full, epoch), sub_tag=layer)


@pytest.fixture
def applier(registry_dir: Path, cluster: WrapOracle) -> ea.Applier:
    applier = ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path))
    applier.apply_bootstrap(cluster.bootstrap(), index=1)
    return applier


def sidecar(applier: ea.Applier) -> ea.Sidecar:
    found = applier.sidecar
    assert found is not None
    return found


# ---------------------------------------------------------------- wire


def test_pinned_enable_storage_bytes() -> None:
    rotation = enable(ea.ENABLE_STORAGE_ENVELOPE, 7, 0xABCD0001, 2)
    assert rotation.encode() == PINNED_ENABLE_STORAGE
    assert ea.Rotation.decode(PINNED_ENABLE_STORAGE) == rotation
    assert ea.decode_entry(bytes([ea.OP_ROTATION]) + PINNED_ENABLE_STORAGE) == rotation
    raft = bytearray(PINNED_ENABLE_STORAGE)
    raft[1], raft[6] = 0x05, 0x02
    assert ea.Rotation.decode(bytes(raft)) == enable(ea.ENABLE_RAFT_ENVELOPE, 7, 0xABCD0001, 2)
    assert (ea.ENABLE_STORAGE_ENVELOPE, ea.ENABLE_RAFT_ENVELOPE) == (0x04, 0x05)


# ---------------------------------------------------------------- storage


def test_storage_cutover_fresh_then_replay_then_stale(applier: ea.Applier, cluster: WrapOracle) -> None:
    assert applier.apply_rotation(enable(ea.ENABLE_STORAGE_ENVELOPE, 1, epoch=2), index=5) == "enabled"
    after = sidecar(applier)
    assert after.storage_envelope_active and after.storage_envelope_cutover_index == 5
    assert after.raft_applied_index == 5 and after.raft_envelope_cutover_index == 0
    # the proposer row went through the four cases
    assert applier.registry.get(1, NODE & 0xFFFF) == ea.RegistryRow(1, NODE & 0xFFFF, NODE, 1, 2)
    # already active: only the index moves; the proposer row is not looked at,
    # even one that would collide
    assert (
        applier.apply_rotation(enable(ea.ENABLE_STORAGE_ENVELOPE, 1, full=OTHER | 0x0001), index=6) == "already-active"
    )
    assert sidecar(applier).storage_envelope_cutover_index == 5 and sidecar(applier).raft_applied_index == 6
    # after a storage rotation, a cutover naming the old key is stale
    applier.apply_rotation(cluster.rotation(3, ea.Purpose.STORAGE, epoch=3), index=7)
    rows = applier.registry.rows()
    assert applier.apply_rotation(enable(ea.ENABLE_STORAGE_ENVELOPE, 1, full=OTHER, epoch=9), index=8) == "stale-dek"
    assert applier.registry.rows() == rows and sidecar(applier).raft_applied_index == 8
    assert applier.applied_index == 8


def test_storage_cutover_whose_proposer_halts_writes_nothing(applier: ea.Applier, registry_dir: Path) -> None:
    before = (registry_dir / "keys.json").read_bytes()
    # a proposer whose node_id16 collides with NODE's row under dek 1
    colliding = (0x9999 << 16) | (NODE & 0xFFFF)
    with pytest.raises(ea.NodeIDCollisionError):
        applier.apply_rotation(enable(ea.ENABLE_STORAGE_ENVELOPE, 1, full=colliding), index=5)
    assert (registry_dir / "keys.json").read_bytes() == before
    assert applier.applied_index == 1


# ---------------------------------------------------------------- raft


def test_raft_cutover_branches_and_the_hook(registry_dir: Path, cluster: WrapOracle) -> None:
    told: list[tuple[int, int]] = []
    applier = ea.Applier(
        registry_dir, kek=ea.FileKek(cluster.kek_path), on_raft_cutover=lambda i, d: told.append((i, d))
    )
    applier.apply_bootstrap(cluster.bootstrap(), index=1)
    # stale before any cutover: the hook is not told
    assert applier.apply_rotation(enable(ea.ENABLE_RAFT_ENVELOPE, 1, purpose=ea.Purpose.RAFT), index=2) == "stale-dek"
    assert told == []
    assert applier.apply_rotation(enable(ea.ENABLE_RAFT_ENVELOPE, 2), index=3) == "enabled"
    assert told == [(3, 2)] and sidecar(applier).raft_envelope_cutover_index == 3
    # Go tests "already active" before "stale" for the Raft layer
    assert (
        applier.apply_rotation(enable(ea.ENABLE_RAFT_ENVELOPE, 9, purpose=ea.Purpose.RAFT), index=4) == "already-active"
    )
    assert told == [(3, 2), (3, 2)]
    # a Raft rotation after the cutover tells the host the new key
    assert applier.apply_rotation(cluster.rotation(4, ea.Purpose.RAFT, epoch=3), index=5) == "rotated"
    assert told[-1] == (3, 4)
    # a storage rotation does not
    applier.apply_rotation(cluster.rotation(5, ea.Purpose.STORAGE, epoch=4), index=6)
    assert len(told) == 3
    applier.close()


def test_a_raising_hook_halts_and_writes_nothing(registry_dir: Path, cluster: WrapOracle) -> None:
    class Refused(Exception):
        pass

    def hook(index: int, dek_id: int) -> None:
        raise Refused(f"cannot install {dek_id} at {index}")

    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path), on_raft_cutover=hook) as applier:
        applier.apply_bootstrap(cluster.bootstrap(), index=1)
        before = (registry_dir / "keys.json").read_bytes()
        rows = applier.registry.rows()
        with pytest.raises(ea.CutoverHookError) as err:
            applier.apply_rotation(enable(ea.ENABLE_RAFT_ENVELOPE, 2, epoch=5), index=3)
        assert (err.value.cutover_index, err.value.dek_id) == (3, 2)
        assert isinstance(err.value.__cause__, Refused) and "cannot install 2 at 3" in str(err.value)
        assert isinstance(err.value, ea.EncryptionApplyError)
        assert (registry_dir / "keys.json").read_bytes() == before
        assert applier.registry.rows() == rows and applier.applied_index == 1
    # a replay with a working hook converges
    told: list[tuple[int, int]] = []
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path), on_raft_cutover=lambda *a: told.append(a)) as again:
        assert again.apply_rotation(enable(ea.ENABLE_RAFT_ENVELOPE, 2, epoch=5), index=3) == "enabled"
    assert told == [(3, 2)]


def test_a_hook_that_uses_its_applier_halts_instead_of_hanging(registry_dir: Path, cluster: WrapOracle) -> None:
    holder: list[ea.Applier] = []

    def hook(index: int, dek_id: int) -> None:
        holder[0].sidecar  # noqa: B018 - the applier is busy with the apply that called the hook

    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path), on_raft_cutover=hook) as applier:
        holder.append(applier)
        applier.apply_bootstrap(cluster.bootstrap(), index=1)
        with pytest.raises(ea.CutoverHookError) as err:
            applier.apply_rotation(enable(ea.ENABLE_RAFT_ENVELOPE, 2), index=2)
        assert isinstance(err.value.__cause__, RuntimeError) and "busy" in str(err.value.__cause__)
        assert not applier.closed and applier.applied_index == 1


def test_keyboard_interrupt_in_the_hook_is_not_wrapped(registry_dir: Path, cluster: WrapOracle) -> None:
    def hook(index: int, dek_id: int) -> None:
        raise KeyboardInterrupt

    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path), on_raft_cutover=hook) as applier:
        applier.apply_bootstrap(cluster.bootstrap(), index=1)
        with pytest.raises(KeyboardInterrupt):
            applier.apply_rotation(enable(ea.ENABLE_RAFT_ENVELOPE, 2), index=2)
        assert applier.applied_index == 1


def test_hook_needs_a_kek_and_a_callable(registry_dir: Path, kek_path: Path) -> None:
    with pytest.raises(ValueError, match="needs kek"):
        ea.Applier(registry_dir, on_raft_cutover=print)
    with pytest.raises(TypeError, match="callable"):
        ea.Applier(registry_dir, kek=ea.FileKek(kek_path), on_raft_cutover=3)  # type: ignore[arg-type]


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("rotation", "index", "reason"),
    [
        (enable(ea.ENABLE_RAFT_ENVELOPE, 2), None, "cutover_without_index"),
        (enable(ea.ENABLE_STORAGE_ENVELOPE, 1, purpose=ea.Purpose.RAFT), 5, "cutover_purpose"),
        (enable(ea.ENABLE_RAFT_ENVELOPE, 2, purpose=ea.Purpose.STORAGE), 5, "cutover_purpose"),
        (
            ea.Rotation(
                1, ea.Purpose.STORAGE, b"x" * 60, ea.Registration(1, NODE, 2), sub_tag=ea.ENABLE_STORAGE_ENVELOPE
            ),
            5,
            "cutover_wrapped",
        ),
        (
            ea.Rotation(1, ea.Purpose.STORAGE, b"", ea.Registration(3, NODE, 2), sub_tag=ea.ENABLE_STORAGE_ENVELOPE),
            5,
            "proposer_dek_mismatch",
        ),
    ],
)
def test_cutover_payload_refusals_write_nothing(
    applier: ea.Applier, registry_dir: Path, rotation: ea.Rotation, index: int | None, reason: str
) -> None:
    before = (registry_dir / "keys.json").read_bytes()
    with pytest.raises(ea.PayloadRejectedError) as err:
        applier.apply_rotation(rotation, index=index)
    assert err.value.reason == reason and err.value.dek_id == rotation.dek_id
    assert (registry_dir / "keys.json").read_bytes() == before and applier.applied_index == 1


def test_raft_cutover_at_index_0_is_refused(registry_dir: Path, cluster: WrapOracle) -> None:
    # (With an applied index, index 0 would be skipped as applied before.)
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as applier:
        applier.apply_bootstrap(cluster.bootstrap())
        with pytest.raises(ea.PayloadRejectedError, match="needs its Raft index") as err:
            applier.apply_rotation(enable(ea.ENABLE_RAFT_ENVELOPE, 2), index=0)
        assert err.value.reason == "cutover_without_index"


def test_cutover_without_kek_or_bootstrap(registry_dir: Path, cluster: WrapOracle) -> None:
    with ea.Applier(registry_dir) as plain, pytest.raises(ea.KEKNotConfiguredError):
        plain.apply_rotation(enable(ea.ENABLE_STORAGE_ENVELOPE, 1), index=2)
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as keyed, pytest.raises(ea.NotBootstrappedError):
        keyed.apply_rotation(enable(ea.ENABLE_STORAGE_ENVELOPE, 1), index=2)


# ---------------------------------------------------------------- sidecar v2


def go_sidecar(doc: dict[str, object]) -> bytes:
    """What Go's json.MarshalIndent(sc, "", "  ") writes: struct field
    order, map keys sorted as strings, no trailing newline."""
    return json.dumps(doc, indent=2).encode()


def test_sidecar_is_written_as_go_writes_it(applier: ea.Applier, registry_dir: Path, cluster: WrapOracle) -> None:
    for dek_id in (3, 4, 5, 6, 7):  # ids "10" < "2" as strings: make several
        applier.apply_rotation(cluster.rotation(dek_id, ea.Purpose.STORAGE, epoch=dek_id), index=dek_id)
    applier.apply_rotation(enable(ea.ENABLE_STORAGE_ENVELOPE, 7, epoch=8), index=9)
    written = (registry_dir / "keys.json").read_bytes()
    doc = json.loads(written)
    keys = {
        str(i): {
            "purpose": "raft" if i == 2 else "storage",
            "wrapped": base64.b64encode(cluster.wrapped_bytes(registry_dir, i)).decode(),
            "created": doc["keys"][str(i)]["created"],
            "local_epoch": 0,
        }
        for i in sorted(range(1, 8), key=str)
    }
    expected = {
        "version": 2,
        "raft_applied_index": 9,
        "storage_envelope_active": True,
        "storage_envelope_cutover_index": 9,
        "raft_envelope_cutover_index": 0,
        "active": {"storage": 7, "raft": 2},
        "keys": keys,
    }
    assert written == go_sidecar(expected)


def test_a_version_1_sidecar_is_read_continued_and_written_as_2(
    registry_dir: Path, cluster: WrapOracle, applier: ea.Applier
) -> None:
    applier.close()
    path = registry_dir / "keys.json"
    doc = json.loads(path.read_bytes())
    v1 = {k: v for k, v in doc.items() if k != "storage_envelope_cutover_index"} | {"version": 1}
    path.write_bytes(go_sidecar(v1))
    assert ea.read_sidecar(path).version == 1  # type: ignore[union-attr]
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as again:
        assert again.apply_rotation(enable(ea.ENABLE_STORAGE_ENVELOPE, 1), index=2) == "enabled"
    after = json.loads(path.read_bytes())
    assert after["version"] == 2 and after["storage_envelope_cutover_index"] == 2


def test_raft_applied_index_only_moves_up_and_ignores_no_index(
    applier: ea.Applier, registry_dir: Path, cluster: WrapOracle
) -> None:
    applier.apply_rotation(enable(ea.ENABLE_STORAGE_ENVELOPE, 1), index=10)
    assert sidecar(applier).raft_applied_index == 10
    applier.apply_rotation(cluster.rotation(3, ea.Purpose.STORAGE, epoch=3))  # no index
    assert sidecar(applier).raft_applied_index == 10
    applier.close()
    # A sidecar ahead of the registry (Go wrote it at 50): an entry at 20
    # applies, and the sidecar keeps 50.
    path = registry_dir / "keys.json"
    doc = json.loads(path.read_bytes()) | {"raft_applied_index": 50}
    path.write_bytes(go_sidecar(doc))
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as again:
        again.apply_rotation(cluster.rotation(4, ea.Purpose.STORAGE, epoch=4), index=20)
        assert sidecar(again).raft_applied_index == 50 and again.applied_index == 20


# ---------------------------------------------------------------- crashes


@pytest.mark.parametrize("point", ["before_registry_commit", "after_registry_rows", "after_sidecar_write"])
@pytest.mark.parametrize("layer", [ea.ENABLE_STORAGE_ENVELOPE, ea.ENABLE_RAFT_ENVELOPE])
def test_a_crash_at_each_step_of_a_cutover_then_replay_converges(
    tmp_path: Path, cluster: WrapOracle, point: str, layer: int
) -> None:
    """The proposer is new to the registry (an empty-batch bootstrap), so a
    crash that left the layer flipped without its row would make the
    start-up guard refuse this node for good."""
    boot = cluster.bootstrap(rows=[])
    dek_id = 1 if layer == ea.ENABLE_STORAGE_ENVELOPE else 2
    cut = enable(layer, dek_id, full=NODE, epoch=0)
    reference = tmp_path / "reference"
    with ea.Applier(reference, kek=ea.FileKek(cluster.kek_path)) as applier:
        applier.apply_bootstrap(boot, index=1)
        assert applier.apply_rotation(cut, index=2) == "enabled"
        expected = (applier.registry.rows(), applier.applied_index, applier.sidecar)
    crashed = tmp_path / "crashed"
    with ea.Applier(crashed, kek=ea.FileKek(cluster.kek_path)) as applier:
        applier.apply_bootstrap(boot, index=1)
    crash_applying(crashed, cluster.kek_path, point, cut.to_entry(), index=2)
    # The node restarts: the start-up guards let it (its row is there if
    # the layer is flipped), and it replays from applied_index + 1.
    with ea.Registry(crashed) as view:
        ea.check_startup(
            encryption_enabled=True,
            kek=ea.FileKek(cluster.kek_path),
            sidecar_path=crashed / "keys.json",
            registry=view,
            full_node_id=NODE,
        )
    with ea.Applier(crashed, kek=ea.FileKek(cluster.kek_path)) as applier:
        assert applier.applied_index == 1
        expected_outcome = "already-active" if point == "after_sidecar_write" else "enabled"
        assert applier.apply_rotation(cut, index=2) == expected_outcome
        assert applier.apply_rotation(cut, index=2) == "skipped"
        got = (applier.registry.rows(), applier.applied_index, applier.sidecar)
    assert got[0] == expected[0] and got[1] == expected[1]
    assert got[2] is not None and expected[2] is not None
    for name in ("active", "storage_envelope_active", "storage_envelope_cutover_index", "raft_envelope_cutover_index"):
        assert getattr(got[2], name) == getattr(expected[2], name), name


def test_a_failed_sidecar_write_takes_the_cutover_row_back(registry_dir: Path, cluster: WrapOracle) -> None:
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as applier:
        applier.apply_bootstrap(cluster.bootstrap(rows=[]), index=1)
        (registry_dir / "keys.json.tmp").mkdir()  # the durable write cannot create its temporary file
        # A file-system fault before the rename: a storage fault that
        # changed nothing, replayed from the entry itself.
        with pytest.raises(ea.StorageError) as fault:
            applier.apply_rotation(enable(ea.ENABLE_STORAGE_ENVELOPE, 1, full=NODE, epoch=0), index=2)
        assert not fault.value.applied and fault.value.replay_from == 2
        assert fault.value.operation == "writing keys.json"
        assert applier.registry.rows() == [] and applier.applied_index == 1
        assert not applier.sidecar.storage_envelope_active  # type: ignore[union-attr]
