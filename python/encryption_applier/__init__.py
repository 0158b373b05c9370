"""Apply the encryption entries of a Raft-replicated KV store to a durable,
LMDB-backed writer registry, failing closed on anything that cannot be
applied exactly.

The rules live in the Rust core (``encryption_applier._native``); this
package re-exports its public names.
"""

from ._native import (
    MAX_BOOTSTRAP_BATCH,
    OP_BOOTSTRAP,
    OP_REGISTRATION,
    OP_ROTATION,
    REGISTRY_PREFIX,
    ROTATE_DEK,
    WIRE_VERSION,
    Applier,
    Bootstrap,
    EncryptionApplyError,
    EncryptionError,
    KEKNotConfiguredError,
    LocalEpochRollbackError,
    MalformedPayloadError,
    NodeIDCollisionError,
    Purpose,
    Registration,
    Registry,
    RegistryCorruptionError,
    RegistryOpenError,
    RegistryRow,
    Rotation,
    StorageError,
    __version__,
    decode_entry,
    decode_registry_key,
    decode_registry_value,
    encode_registry_value,
    is_encryption_opcode,
    registry_key,
)

__all__ = [
    # applying and reading
    "Applier",
    "Registry",
    "RegistryRow",
    # payloads
    "Registration",
    "Bootstrap",
    "Rotation",
    "Purpose",
    "decode_entry",
    "is_encryption_opcode",
    # constants
    "OP_REGISTRATION",
    "OP_BOOTSTRAP",
    "OP_ROTATION",
    "WIRE_VERSION",
    "ROTATE_DEK",
    "MAX_BOOTSTRAP_BATCH",
    "REGISTRY_PREFIX",
    # registry codec
    "registry_key",
    "decode_registry_key",
    "encode_registry_value",
    "decode_registry_value",
    # exceptions
    "EncryptionError",
    "EncryptionApplyError",
    "KEKNotConfiguredError",
    "LocalEpochRollbackError",
    "NodeIDCollisionError",
    "MalformedPayloadError",
    "RegistryCorruptionError",
    "StorageError",
    "RegistryOpenError",
    "__version__",
]
