"""Apply the encryption entries of a Raft-replicated KV store to a durable,
LMDB-backed writer registry, failing closed on anything that cannot be
applied exactly.

The rules live in the Rust core (``encryption_applier._native``); the
exceptions are declared in `encryption_applier.exceptions`, the KEK
interface in `encryption_applier.kek`, and the Python value types
(`Aftermath`, `StartupDiagnosis`) in `encryption_applier.results`. This
package re-exports the public names of all four.
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
    SIDECAR_PROBLEM_CODES,
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
    RegistrationCheck,
    RegistrationDecision,
    Registry,
    RegistryDiff,
    RegistryRow,
    ResyncSidecarResponse,
    Rotation,
    Sidecar,
    SidecarKey,
    SidecarResync,
    SidecarStateReport,
    SkippedGuard,
    SnapshotHeader,
    StatusExtras,
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
    pinned_epochs,
    prepare_epochs,
    read_sidecar,
    read_snapshot_header,
    registration_decision,
    registry_key,
    resync_sidecar_response,
    sidecar_state,
    verify,
)
from .exceptions import *  # noqa: F403 - the exception tree, exactly its __all__
from .kek import Kek
from .results import Aftermath, StartupDiagnosis

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
    "Kek",
    "FileKek",
    "Keystore",
    "Sidecar",
    "SidecarKey",
    "SidecarResync",
    "read_sidecar",
    # what a storage fault left behind (StorageError.aftermath)
    "Aftermath",
    # elastickv's status views
    "sidecar_state",
    "SidecarStateReport",
    "resync_sidecar_response",
    "ResyncSidecarResponse",
    "StatusExtras",
    # envelopes and nonces
    "Envelope",
    "Nonce",
    "NonceFinding",
    "audit_nonces",
    # start-up
    "diagnose_startup",
    "StartupDiagnosis",
    "check_startup",
    "SkippedGuard",
    "bump_local_epoch",
    "prepare_epochs",
    "pinned_epochs",
    "registration_decision",
    "RegistrationDecision",
    "RegistrationCheck",
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
    "SIDECAR_PROBLEM_CODES",
    # registry codec
    "registry_key",
    "decode_registry_key",
    "encode_registry_value",
    "decode_registry_value",
    "__version__",
]
# Every exception, by the one list that declares them.
__all__ += exceptions.__all__
