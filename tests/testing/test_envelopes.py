"""Envelopes in the harness: EnvelopeWriter's nonces (elastickv's nonce
factory layout, checked with struct), real AES-GCM envelopes (opened with
pyca/cryptography, an independent AES-GCM, under AADs built here from the
SPEC), and the cluster's nonce audit, which must find a planted reuse and
pass a clean run that wrote envelopes."""

import struct
from pathlib import Path

import pytest

import encryption_applier as ea
from encryption_applier._native import test_support
from encryption_applier.testing import Cluster, EnvelopeWriter


def test_nonces_are_node_epoch_counter_from_one() -> None:
    writer = EnvelopeWriter(0x1122_3344_5566_ABCD, storage_epoch=3, raft_epoch=7)
    first, second = writer.next_nonce("storage"), writer.next_nonce("storage")
    raft = writer.next_nonce("raft")
    assert first.to_bytes() == struct.pack(">HHQ", 0xABCD, 3, 1)
    assert second.to_bytes() == struct.pack(">HHQ", 0xABCD, 3, 2)
    assert raft.to_bytes() == struct.pack(">HHQ", 0xABCD, 7, 1)  # each purpose its own factory
    with pytest.raises(ValueError, match="'storage' or 'raft'"):
        writer.next_nonce("other")
    writer._counts["raft"] = 0xFFFF_FFFF_FFFF_FFFF
    with pytest.raises(OverflowError, match="exhausted"):
        writer.next_nonce("raft")


def storage_aad(key_id: int, user_key: bytes, commit_ts: int, expire_at: int) -> bytes:
    # version ‖ flag ‖ key_id ‖ 0x02 ‖ LE64 expire_at ‖ user_key ‖ BE64(^commit_ts)
    return (
        bytes([1, 0])
        + struct.pack(">I", key_id)
        + b"\x02"
        + struct.pack("<Q", expire_at)
        + user_key
        + (struct.pack(">Q", ~commit_ts & 0xFFFF_FFFF_FFFF_FFFF))
    )


def test_sealed_envelopes_open_with_an_independent_aes_gcm(tmp_path: Path, kek_path: Path) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    kek = ea.FileKek(kek_path)
    deks = {1: b"S" * 32, 2: b"R" * 32}
    boot = ea.Bootstrap(1, kek.wrap(deks[1]), 2, kek.wrap(deks[2]), [ea.Registration(1, 0xABCD, 0)])
    with ea.Applier(tmp_path / "r", kek=kek) as applier:
        applier.apply(boot.to_entry(), index=1)
        keystore = applier.keystore
        assert keystore is not None
        writer = EnvelopeWriter(0xABCD)
        env = writer.seal_storage(keystore, 1, b"value", user_key=b"k1", commit_ts=42, expire_at=9)
        raft = writer.seal_raft(keystore, 2, b"entry")
        nonce = struct.pack(">HHQ", 0xABCD, 0, 1)
        assert env.encode()[:18] == bytes([1, 0, 0, 0, 0, 1]) + nonce
        assert AESGCM(deks[1]).decrypt(nonce, env.body, storage_aad(1, b"k1", 42, 9)) == b"value"
        assert AESGCM(deks[2]).decrypt(nonce, raft.body, b"R\x01" + struct.pack(">I", 2)) == b"entry"
        # And the package's own decryption agrees.
        assert keystore.decrypt_storage(env, b"k1", 42, 9) == b"value"
        with pytest.raises(KeyError):
            test_support.seal_raft(keystore, 9, writer.next_nonce("raft"), b"x")


def test_a_reproducible_wrap_under_a_chosen_nonce(kek_path: Path) -> None:
    from helpers import aesgcm_wrap

    kek = ea.FileKek(kek_path)
    nonce = bytes(range(12))
    wrapped = test_support.wrap_with_nonce(kek, b"d" * 32, nonce)
    assert (
        wrapped
        == aesgcm_wrap(kek_path.read_bytes(), b"d" * 32, nonce)
        == test_support.wrap_with_nonce(kek, b"d" * 32, nonce)
    )
    assert kek.unwrap(wrapped) == b"d" * 32
    with pytest.raises(ValueError, match="a nonce is 12 bytes, got 11"):
        test_support.wrap_with_nonce(kek, b"d" * 32, nonce[:11])


@pytest.mark.parametrize("mode", ["inprocess", pytest.param("process", marks=pytest.mark.slow)])
def test_a_clean_run_with_envelopes_passes_the_audit(tmp_path: Path, mode: str) -> None:
    with Cluster(3, mode=mode, root=tmp_path) as c:
        c.bootstrap()
        c.cutover("storage")
        c.cutover("raft")
        for i in range(3):
            c.write_storage(i, b"k", b"v%d" % i, commit_ts=1)
        c.bump_epoch(0)  # a new load: a new epoch, the counter from 1 again
        c.rotate("storage")
        c.crash(1)
        c.restart(1)
        for i in range(3):
            c.write_storage(i, b"k", b"w%d" % i, commit_ts=2)
            c.write_raft(i, b"entry")
        audit = c.assert_nonces_unique()
        assert audit.envelopes == 9 and audit.ok and audit.errors == []
        assert sum(len(r.envelopes) for r in c) == 9
        c.assert_agree()


def test_a_restart_without_an_epoch_bump_is_a_reuse_the_audit_finds(tmp_path: Path) -> None:
    with Cluster(3, root=tmp_path) as c:
        c.bootstrap()
        c.cutover("storage")
        c.bump_epoch(2)
        c.write_storage(2, b"k", b"before", commit_ts=1)
        c.crash(2)
        c.restart(2, bump_epochs=False)  # the bug: the counter restarts under the same epoch
        c.write_storage(2, b"k", b"after", commit_ts=2)
        c.write_storage(0, b"k", b"fine", commit_ts=3)
        audit = c.audit_nonces()
        assert not audit.ok
        assert [(r, f.problem, f.positions) for r, f in audit.errors] == [(2, "reuse", [0, 1])]
        with pytest.raises(AssertionError, match=r"replica 2 \(n3\): reuse at envelopes \[0, 1\]"):
            c.assert_nonces_unique()


def test_a_reuse_across_replicas_is_found(tmp_path: Path) -> None:
    with Cluster(2, root=tmp_path) as c:
        c.bootstrap()
        c.cutover("storage")
        # Replica 1 writes with replica 0's prefix (as a node_id16 collision would).
        writer = c[1].writer
        assert writer is not None
        c[1].writer = EnvelopeWriter(c[0].full_node_id, storage_epoch=writer.storage_epoch)
        c.write_storage(0, b"k", b"mine", commit_ts=1)
        c.write_storage(1, b"k", b"theirs", commit_ts=1)
        audit = c.audit_nonces()
        assert [(r, f.problem) for r, f in audit.findings if f.severity == "error"] == [(1, "foreign_prefix")]
        assert [(where, f.problem) for where, f in audit.across] == [([(0, 0), (1, 0)], "reuse")]
        assert sorted((r, f.problem) for r, f in audit.errors) == [(0, "reuse"), (1, "foreign_prefix")]
        with pytest.raises(AssertionError, match=r"reuse across replicas, replica 0 \(n1\) envelope 0, replica 1"):
            c.assert_nonces_unique()


def test_an_audit_of_nothing_is_not_a_pass(tmp_path: Path) -> None:
    with Cluster(2, root=tmp_path) as c:
        c.bootstrap()
        assert c.audit_nonces().envelopes == 0 and not c.audit_nonces().ok
        with pytest.raises(AssertionError, match="no envelope was written"):
            c.assert_nonces_unique()


def test_no_method_of_a_public_class_takes_a_nonce() -> None:
    """A caller-chosen nonce is how AES-GCM nonces get reused: the calls that
    take one are test hooks, not methods of FileKek or Keystore."""
    for cls in (ea.FileKek, ea.Keystore, ea.Applier):  # (Envelope.nonce reads an envelope's)
        takes_nonce = [n for n in dir(cls) if "nonce" in n or "seal" in n]
        assert takes_nonce == [], (cls.__name__, takes_nonce)
    assert callable(test_support.wrap_with_nonce) and callable(test_support.seal_storage)
