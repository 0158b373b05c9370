"""Random streams of registrations, bootstraps and rotations (valid and
invalid) applied with a KEK to the real applier and to the plain-Python
model of SPEC §4-§5 in lockstep, with restarts."""

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import encryption_applier as ea
from encryption_applier.testing.model import KeyedModel, expect

from helpers import aesgcm_wrap, fingerprint

ids = st.sampled_from([0, 1, 2, 3, 4])
fulls = st.sampled_from([0x1_0001, 0x2_0001, 0x1_0002])
epochs = st.integers(0, 4)
rows = st.tuples(ids, fulls, epochs)
purposes = st.sampled_from(["storage", "raft"])
PURPOSE = {"storage": ea.Purpose.STORAGE, "raft": ea.Purpose.RAFT}


class KeyedStateMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="ea-kek-sm-"))
        self.kek_path = self.root / "kek"
        self.kek = ea.FileKek.generate(self.kek_path)
        self.kek_bytes = self.kek_path.read_bytes()
        self.directory = self.root / "registry"
        # Two DEKs per id: the second makes key conflicts possible.
        self.dek_bytes = {(i, v): os.urandom(32) for i in range(5) for v in range(2)}
        self.wrapped_cache: dict[tuple[int, int, int], bytes] = {}
        self.model = KeyedModel(deks={})
        self.applier = ea.Applier(self.directory, kek=self.kek)
        self.next_index = 0

    def wrapped(self, dek_id: int, variant: int, nonce_seed: int, kind: str) -> bytes:
        """A wrapped DEK made with pyca/cryptography, or a blob that must not
        unwrap; the model learns which DEK each good blob holds."""
        if kind == "short":
            return b"\x00" * 59
        if kind == "garbage":
            return bytes([nonce_seed]) * 60
        key = (dek_id, variant, nonce_seed)
        if key not in self.wrapped_cache:
            blob = aesgcm_wrap(
                self.kek_bytes,
                self.dek_bytes[(dek_id, variant)],
                nonce=bytes([nonce_seed, dek_id, variant]) + b"\x00" * 9,
            )
            self.wrapped_cache[key] = blob
            self.model.deks[blob] = self.dek_bytes[(dek_id, variant)]
        return self.wrapped_cache[key]

    blob = st.tuples(st.integers(0, 1), st.integers(0, 2), st.sampled_from(["good"] * 6 + ["garbage", "short"]))

    @initialize(booted=st.booleans())
    def maybe_bootstrapped(self, booted: bool) -> None:
        """Half the runs start from a valid bootstrap, so rotations and
        cutovers of active keys are reached often, not only by luck."""
        if booted:
            self.bootstrap(1, 2, (0, 0, "good"), (0, 0, "good"), [], False)

    @rule(storage=ids, raft=ids, ws=blob, wr=blob, batch=st.lists(rows, max_size=4), via=st.booleans())
    def bootstrap(self, storage, raft, ws, wr, batch, via) -> None:  # type: ignore[no-untyped-def]
        wrapped_s = self.wrapped(storage, *ws)
        wrapped_r = self.wrapped(raft, *wr)
        expected = self.model.bootstrap(storage, wrapped_s, raft, wrapped_r, batch)
        entry = ea.Bootstrap(storage, wrapped_s, raft, wrapped_r, [ea.Registration(*r) for r in batch])
        expect(
            expected,
            (lambda: self.applier.apply(entry.to_entry())) if via else (lambda: self.applier.apply_bootstrap(entry)),
        )

    @rule(dek_id=ids, purpose=purposes, w=blob, proposer=rows, same_dek=st.booleans())
    def rotation(self, dek_id, purpose, w, proposer, same_dek) -> None:  # type: ignore[no-untyped-def]
        if same_dek:
            proposer = (dek_id, *proposer[1:])
        wrapped = self.wrapped(dek_id, *w)
        expected = self.model.rotation(dek_id, purpose, wrapped, proposer)
        entry = ea.Rotation(dek_id, PURPOSE[purpose], wrapped, ea.Registration(*proposer))
        expect(expected, lambda: self.applier.apply(entry.to_entry()))

    @rule(
        layer=purposes,
        dek=st.sampled_from(["active"] * 4 + [0, 1, 2, 3, 4]),
        other_purpose=st.integers(0, 7),
        wrapped=st.sampled_from([b""] * 7 + [b"x" * 60]),
        proposer=rows,
        same_dek=st.integers(0, 5),
        with_index=st.integers(0, 6),
    )
    def cutover(self, layer, dek, other_purpose, wrapped, proposer, same_dek, with_index) -> None:  # type: ignore[no-untyped-def]
        # Mostly well-formed cutovers of the active key, so every branch
        # (enabled, already-active, stale-dek) is reached; sometimes not.
        dek_id = self.model.active[layer] if dek == "active" else dek
        purpose = layer if other_purpose else ("storage" if layer == "raft" else "raft")
        if same_dek:
            proposer = (dek_id, *proposer[1:])
        index = None
        if with_index:  # mostly with a fresh Raft index, as a host applies them
            self.next_index += 1
            index = self.next_index
        expected = self.model.cutover(layer, dek_id, purpose, wrapped, proposer, index)
        sub_tag = ea.ENABLE_RAFT_ENVELOPE if layer == "raft" else ea.ENABLE_STORAGE_ENVELOPE
        entry = ea.Rotation(dek_id, PURPOSE[purpose], wrapped, ea.Registration(*proposer), sub_tag=sub_tag)
        expect(expected, lambda: self.applier.apply(entry.to_entry(), index=index))

    @rule(row=rows)
    def registration(self, row) -> None:  # type: ignore[no-untyped-def]
        expected = self.model.registry.apply_registration(*row)
        expect(expected, lambda: self.applier.apply_registration(ea.Registration(*row)))

    @rule()
    def restart(self) -> None:
        self.applier.close()
        self.applier = ea.Applier(self.directory, kek=ea.FileKek(self.kek_path))

    @invariant()
    def agrees_with_model(self) -> None:
        rows = [
            (r.dek_id, r.node_id16, r.full_node_id, r.first_seen_local_epoch, r.last_seen_local_epoch)
            for r in self.applier.registry.rows()
        ]
        assert rows == self.model.registry.sorted_rows()
        keystore = self.applier.keystore
        assert keystore is not None
        assert {i: keystore.fingerprint(i) for i in keystore.ids()} == {
            i: fingerprint(d) for i, d in self.model.keystore.items()
        }
        sidecar = self.applier.sidecar
        if not self.model.keys and not self.model.bootstrapped():
            assert sidecar is None
        else:
            assert sidecar is not None
            assert sidecar.active == self.model.active
            assert {i: (k.purpose.name.lower(), k.wrapped) for i, k in sidecar.keys.items()} == self.model.keys
            assert (
                sidecar.storage_envelope_active,
                sidecar.storage_envelope_cutover_index,
                sidecar.raft_envelope_cutover_index,
            ) == (self.model.storage_envelope_active, self.model.storage_cutover_index, self.model.raft_cutover_index)

    def teardown(self) -> None:
        self.applier.close()
        shutil.rmtree(self.root, ignore_errors=True)


KeyedStateMachine.TestCase.settings = settings(KeyedStateMachine.TestCase.settings, stateful_step_count=30)
TestKeyedStateMachine = KeyedStateMachine.TestCase
