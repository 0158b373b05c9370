"""Envelopes, nonces, decryption and the nonce audit (SPEC §7, parity
study N5). Envelopes are sealed here with pyca/cryptography and AADs built
with struct from the documented layouts, independently of the package."""

import os
import pickle
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import encryption_applier as ea

from helpers import NODE, WrapOracle

MASK64 = (1 << 64) - 1


def nonce(n16: int, epoch: int, count: int) -> bytes:
    return struct.pack(">HHQ", n16, epoch, count)


def storage_aad(key_id: int, user_key: bytes, commit_ts: int, expire_at: int = 0, flag: int = 0) -> bytes:
    return (
        bytes([1, flag])
        + struct.pack(">I", key_id)
        + b"\x02"
        + struct.pack("<Q", expire_at)
        + user_key
        + (struct.pack(">Q", ~commit_ts & MASK64))
    )


def seal(dek: bytes, key_id: int, n: bytes, plaintext: bytes, aad: bytes) -> bytes:
    return bytes([1, 0]) + struct.pack(">I", key_id) + n + AESGCM(dek).encrypt(n, plaintext, aad)


@pytest.fixture
def applier(registry_dir: Path, cluster: WrapOracle) -> ea.Applier:
    applier = ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path))
    applier.apply_bootstrap(cluster.bootstrap(), index=1)
    return applier


def test_decode_encode_and_the_nonce_layout() -> None:
    raw = bytes([1, 1]) + struct.pack(">I", 7) + nonce(0xABCD, 3, 9) + b"\xee" * 20
    env = ea.Envelope.decode(raw)
    assert (env.version, env.flag, env.compressed, env.key_id, env.body) == (1, 1, True, 7, b"\xee" * 20)
    assert env.nonce == nonce(0xABCD, 3, 9) and env.nonce_parts == ea.Nonce(0xABCD, 3, 9)
    assert env.encode() == raw and pickle.loads(pickle.dumps(env)) == env
    assert ea.Nonce(0xABCD, 3, 9).to_bytes() == nonce(0xABCD, 3, 9)
    assert ea.Nonce.from_bytes(nonce(1, 2, 3)) == ea.Nonce(1, 2, 3)
    with pytest.raises(ValueError, match="12 bytes"):
        ea.Nonce.from_bytes(b"\x00" * 11)
    with pytest.raises(ea.EnvelopeShortError) as short:
        ea.Envelope.decode(raw[:33])
    assert short.value.length == 33
    with pytest.raises(ea.EnvelopeVersionError) as version:
        ea.Envelope.decode(b"\x02" + raw[1:])
    assert version.value.version == 2
    assert env.raft_aad() == b"R\x01" + struct.pack(">I", 7)
    assert env.storage_aad(b"user", 5, 6) == storage_aad(7, b"user", 5, 6, flag=1)


def test_decrypt_storage_and_raft(applier: ea.Applier, cluster: WrapOracle) -> None:
    keystore = applier.keystore
    assert keystore is not None
    n = nonce(NODE & 0xFFFF, 0, 1)
    value = seal(cluster.deks[1], 1, n, b"hello", storage_aad(1, b"k1", 1000, 77))
    assert keystore.decrypt_storage(value, b"k1", 1000, 77) == b"hello"
    assert keystore.decrypt_storage(ea.Envelope.decode(value), b"k1", 1000, 77) == b"hello"
    for wrong in ((b"k2", 1000, 77), (b"k1", 1001, 77), (b"k1", 1000, 0)):
        with pytest.raises(ea.IntegrityError) as err:
            keystore.decrypt_storage(value, *wrong)
        assert err.value.key_id == 1
    entry = seal(cluster.deks[2], 2, nonce(NODE & 0xFFFF, 0, 2), b"raft entry", b"R\x01" + struct.pack(">I", 2))
    assert keystore.decrypt_raft(entry) == b"raft entry"
    with pytest.raises(ea.IntegrityError):
        keystore.decrypt_raft(entry[:-1] + bytes([entry[-1] ^ 1]))
    with pytest.raises(KeyError):
        keystore.decrypt_raft(seal(os.urandom(32), 9, n, b"x", b"R\x01" + struct.pack(">I", 9)))


def test_audit_nonces(applier: ea.Applier, cluster: WrapOracle) -> None:
    mine = NODE & 0xFFFF
    sidecar = applier.sidecar
    registry = applier.registry

    def env(key_id: int, n: bytes, body: bytes = b"b" * 17) -> bytes:
        return bytes([1, 0]) + struct.pack(">I", key_id) + n + body

    clean = [env(1, nonce(mine, 0, 1)), env(1, nonce(mine, 0, 2)), env(2, nonce(mine, 0, 1))]
    assert ea.audit_nonces(clean, full_node_id=NODE, sidecar=sidecar, registry=registry) == []
    # the same envelope twice is a resend, not a reuse
    assert ea.audit_nonces(clean + clean[:1], full_node_id=NODE, sidecar=sidecar, registry=registry) == []
    bad = clean + [
        env(1, nonce(mine, 0, 1), b"c" * 17),  # 3: reuses 0's nonce with another body
        env(1, nonce(0x9999, 0, 3)),  # 4: foreign prefix, and no row for it
        env(1, nonce(mine, 1, 4)),  # 5: epoch ahead of the sidecar's 0
        env(1, nonce(mine, 0, 0)),  # 6: zero count
        env(3, nonce(mine, 0, 5)),  # 7: no registry row under key 3
    ]
    found = ea.audit_nonces(bad, full_node_id=NODE, sidecar=sidecar, registry=registry)
    got = [(f.problem, f.positions, f.severity) for f in found]
    assert got == [
        ("reuse", [0, 3], "error"),
        ("foreign_prefix", [4], "error"),
        ("unregistered", [4], "warning"),
        ("epoch_ahead", [5], "error"),
        ("zero_count", [6], "error"),
        ("unregistered", [7], "warning"),
    ]
    assert found[0].nonce == ea.Nonce(mine, 0, 1) and "reuse" in str(found[0])
    # a row of another node at this prefix is flagged too
    other = (0x7777 << 16) | 0x0009
    applier.apply_registration(ea.Registration(1, other, 1))
    (finding,) = ea.audit_nonces(
        [env(1, nonce(0x0009, 0, 1))], full_node_id=(0x1234 << 16) | 0x0009, registry=applier.registry
    )
    assert finding.problem == "unregistered" and f"0x{other:x}" in finding.detail
    with pytest.raises(ea.EnvelopeShortError):
        ea.audit_nonces([b"\x01" * 10], full_node_id=NODE)
