"""Random registration streams applied to the real LMDB registry and to the
plain-Python model in lockstep; outcome, exception type and fields, and
every row must agree after each step."""

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import encryption_applier as ea
from encryption_applier.testing.model import Halt, RegistryModel, expect, registration_payload

from helpers import dump_raw

# Few DEKs, few node_id16 values and many full ids per node_id16, so that
# collisions, replays and rollbacks are common rather than rare.
dek_ids = st.sampled_from([0, 1, 2, 2**32 - 1])
node16s = st.sampled_from([0x0000, 0x0001, 0xFFFF])
highs = st.sampled_from([0, 0xABCD, 0xFFFF_FFFF_FFFF])
full_ids = st.builds(lambda hi, lo: (hi << 16) | lo, highs, node16s)
epochs = st.one_of(st.integers(0, 6), st.sampled_from([2**16 - 2, 2**16 - 1]))
vias = st.sampled_from(["object", "bytes", "apply"])


class RegistryStateMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="ea-sm-")) / "registry"
        self.applier: ea.Applier | None = ea.Applier(self.directory)
        self.model = RegistryModel()

    def live(self) -> ea.Applier:
        assert self.applier is not None
        return self.applier

    def check_against_model(self, result: str | Halt, call) -> None:  # type: ignore[no-untyped-def]
        before = self.live().registry.rows()
        expect(result, call)
        if isinstance(result, Halt):
            assert self.live().registry.rows() == before  # a halt writes nothing

    def apply_and_compare(self, dek_id: int, full_node_id: int, epoch: int, via: str) -> None:
        expected = self.model.apply_registration(dek_id, full_node_id, epoch)
        reg = ea.Registration(dek_id, full_node_id, epoch)
        entry = b"\x03" + registration_payload(dek_id, full_node_id, epoch)
        calls = {
            "object": lambda: self.live().apply_registration(reg),
            "bytes": lambda: self.live().apply(entry),
            "apply": lambda: self.live().apply(reg),
        }
        self.check_against_model(expected, calls[via])

    @rule(dek_id=dek_ids, full_node_id=full_ids, epoch=epochs, via=vias)
    def apply_registration(self, dek_id: int, full_node_id: int, epoch: int, via: str) -> None:
        self.apply_and_compare(dek_id, full_node_id, epoch, via)

    @precondition(lambda self: self.model.rows)
    @rule(pick=st.integers(0, 2**16), delta=st.integers(-3, 3), via=vias)
    def revisit_a_stored_writer(self, pick: int, delta: int, via: str) -> None:
        """The same writer again with an epoch near its last one: a replay
        (delta 0), an advance, or a rollback."""
        (dek_id, _), (full, _, last) = sorted(self.model.rows.items())[pick % len(self.model.rows)]
        self.apply_and_compare(dek_id, full, min(max(last + delta, 0), 2**16 - 1), via)

    @precondition(lambda self: self.model.rows)
    @rule(pick=st.integers(0, 2**16), high=st.integers(0, 2**48 - 1), epoch=epochs, via=vias)
    def another_node_behind_a_stored_node_id16(self, pick: int, high: int, epoch: int, via: str) -> None:
        (dek_id, node16), _ = sorted(self.model.rows.items())[pick % len(self.model.rows)]
        self.apply_and_compare(dek_id, (high << 16) | node16, epoch, via)

    @rule(data=st.binary(max_size=40))
    def apply_garbage(self, data: bytes) -> None:
        before = self.live().registry.rows()
        try:
            self.live().apply(data)
        except ea.EncryptionApplyError:
            assert self.live().registry.rows() == before
        else:
            # It happened to be a valid registration: keep the model in step.
            reg = ea.decode_entry(data)
            assert isinstance(reg, ea.Registration)
            result = self.model.apply_registration(reg.dek_id, reg.full_node_id, reg.local_epoch)
            assert not isinstance(result, Halt)

    @rule(dek_id=dek_ids, full_node_id=full_ids, epoch=epochs)
    def apply_bootstrap_or_rotation_without_kek(self, dek_id: int, full_node_id: int, epoch: int) -> None:
        reg = ea.Registration(dek_id, full_node_id, epoch)
        before = self.live().registry.rows()
        for entry in (
            ea.Bootstrap(dek_id, b"s", dek_id ^ 1, b"r", [reg]).to_entry(),
            ea.Rotation(dek_id, ea.Purpose.RAFT, b"w", reg).to_entry(),
        ):
            try:
                self.live().apply(entry)
            except ea.KEKNotConfiguredError:
                pass
            else:
                raise AssertionError("bootstrap/rotation applied without a KEK")
        assert self.live().registry.rows() == before

    @rule()
    def restart(self) -> None:
        """A replica restart: close the applier, open a new one."""
        self.live().close()
        self.applier = ea.Applier(self.directory)

    @invariant()
    def rows_match_model(self) -> None:
        rows = [
            (r.dek_id, r.node_id16, r.full_node_id, r.first_seen_local_epoch, r.last_seen_local_epoch)
            for r in self.live().registry.rows()
        ]
        assert rows == self.model.sorted_rows()
        assert len(self.live().registry) == len(self.model.rows)

    def teardown(self) -> None:
        if self.applier is not None:
            self.applier.close()
            # Reopening the directory from scratch shows the same rows, and
            # the raw LMDB bytes are exactly the model's (SPEC §3 layout).
            with ea.Registry(self.directory) as registry:
                assert [(r.key, r.value) for r in registry] == self.model.raw_items()
        shutil.rmtree(self.directory.parent, ignore_errors=True)


RegistryStateMachine.TestCase.settings = settings(RegistryStateMachine.TestCase.settings, stateful_step_count=40)
TestRegistryStateMachine = RegistryStateMachine.TestCase


def test_model_and_raw_bytes_agree_on_a_fixed_stream(tmp_path: Path) -> None:
    """One fixed stream checked byte-for-byte with an independent LMDB reader,
    so the state machine's oracle is itself anchored to the stored bytes."""
    model = RegistryModel()
    directory = tmp_path / "registry"
    with ea.Applier(directory) as applier:
        for dek, full, epoch in [(1, 0xABCD0001, 1), (1, 0xABCD0001, 3), (2, 0xFFFF, 0), (1, 0xABCD0001, 3)]:
            assert applier.apply_registration(ea.Registration(dek, full, epoch)) == model.apply_registration(
                dek, full, epoch
            )
    assert dump_raw(directory) == model.raw_items()
