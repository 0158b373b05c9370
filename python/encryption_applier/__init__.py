"""Apply the encryption entries of a Raft-replicated KV store to a durable,
LMDB-backed writer registry, failing closed on anything that cannot be
applied exactly.

The rules live in the Rust core (``encryption_applier._native``); the
exceptions are declared in `encryption_applier.exceptions`. This
package re-exports the public names of both.
"""

from . import exceptions
from ._native import (
    ENABLE_RAFT_ENVELOPE,
    ENABLE_STORAGE_ENVELOPE,
    MAX_BOOTSTRAP_BATCH,
    MAX_SIDECAR_BYTES,
    OP_BOOTSTRAP,
    OP_REGISTRATION,
    OP_ROTATION,
    REGISTRY_PREFIX,
    ROTATE_DEK,
    WIRE_VERSION,
    Applier,
    Bootstrap,
    Envelope,
    FileKek,
    Keystore,
    Nonce,
    NonceFinding,
    PageDamage,
    Purpose,
    Registration,
    Registry,
    RegistryDiff,
    RegistryRow,
    Rotation,
    Sidecar,
    SidecarKey,
    SnapshotHeader,
    VerifyReport,
    __version__,
    audit_nonces,
    bump_local_epoch,
    check_startup,
    decode_entry,
    decode_registry_key,
    decode_registry_value,
    derive_node_id,
    diagnose_startup,
    encode_registry_value,
    find_node_id_collisions,
    is_encryption_opcode,
    newest_snapshot,
    node_id16,
    prepare_epochs,
    read_sidecar,
    read_snapshot_header,
    registry_key,
    verify,
)
from .exceptions import *  # noqa: F403 - the exception tree, exactly its __all__

__all__ = [
    # applying and reading
    "Applier",
    "Registry",
    "RegistryRow",
    "RegistryDiff",
    # checking data.mdb
    "verify",
    "VerifyReport",
    "PageDamage",
    # keys
    "FileKek",
    "Keystore",
    "Sidecar",
    "SidecarKey",
    "read_sidecar",
    # envelopes and nonces
    "Envelope",
    "Nonce",
    "NonceFinding",
    "audit_nonces",
    # start-up
    "diagnose_startup",
    "check_startup",
    "bump_local_epoch",
    "prepare_epochs",
    "read_snapshot_header",
    "newest_snapshot",
    "SnapshotHeader",
    # payloads
    "Registration",
    "Bootstrap",
    "Rotation",
    "Purpose",
    "decode_entry",
    # node ids
    "derive_node_id",
    "node_id16",
    "find_node_id_collisions",
    "is_encryption_opcode",
    # constants
    "OP_REGISTRATION",
    "OP_BOOTSTRAP",
    "OP_ROTATION",
    "WIRE_VERSION",
    "ROTATE_DEK",
    "ENABLE_STORAGE_ENVELOPE",
    "ENABLE_RAFT_ENVELOPE",
    "MAX_BOOTSTRAP_BATCH",
    "MAX_SIDECAR_BYTES",
    "REGISTRY_PREFIX",
    # registry codec
    "registry_key",
    "decode_registry_key",
    "encode_registry_value",
    "decode_registry_value",
    "__version__",
]
# Every exception, by the one list that declares them.
__all__ += exceptions.__all__
