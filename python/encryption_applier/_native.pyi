"""Type stubs for the native core ``encryption_applier._native``."""

import array
import enum
import os
import pathlib
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, Final, Literal, Self, final


__version__: Final[str]
__all__ = [
    "AlreadyBootstrappedError",
    "Applier",
    "Bootstrap",
    "EncryptionApplyError",
    "EncryptionError",
    "FileKek",
    "InsecureKEKFileError",
    "KEKFileError",
    "KEKNotConfiguredError",
    "KEKUnwrapError",
    "KeyConflictError",
    "Keystore",
    "LocalEpochRollbackError",
    "MAX_BOOTSTRAP_BATCH",
    "MalformedPayloadError",
    "NodeIDCollisionError",
    "NotBootstrappedError",
    "OP_BOOTSTRAP",
    "OP_REGISTRATION",
    "OP_ROTATION",
    "PayloadRejectedError",
    "Purpose",
    "REGISTRY_PREFIX",
    "ROTATE_DEK",
    "Registration",
    "Registry",
    "RegistryCorruptionError",
    "RegistryDiff",
    "RegistryOpenError",
    "RegistryRow",
    "Rotation",
    "Sidecar",
    "SidecarError",
    "SidecarKey",
    "StorageError",
    "WIRE_VERSION",
    "__version__",
    "decode_entry",
    "decode_registry_key",
    "decode_registry_value",
    "encode_registry_value",
    "is_encryption_opcode",
    "read_sidecar",
    "registry_key",
]

OP_REGISTRATION: Final[int]
OP_BOOTSTRAP: Final[int]
OP_ROTATION: Final[int]
WIRE_VERSION: Final[int]
ROTATE_DEK: Final[int]
MAX_BOOTSTRAP_BATCH: Final[int]
REGISTRY_PREFIX: Final[bytes]

_BytesLike = bytes | bytearray | memoryview

_Outcome = Literal["inserted", "advanced", "unchanged", "bootstrapped", "rotated", "skipped"]
_FaultPoint = Literal["after_unwrap", "after_keystore_install", "after_sidecar_write", "before_registry_commit"]

class Purpose(enum.IntEnum):
    """What a DEK encrypts: storage data or the Raft log."""

    STORAGE = 1
    RAFT = 2

@final
class Registration:
    """A registration entry (opcode 0x03): one writer under one DEK."""

    __match_args__ = ("dek_id", "full_node_id", "local_epoch")
    def __new__(
cls, dek_id: int, full_node_id: int, local_epoch: int) -> Self: ...
    @property
    def dek_id(self) -> int: ...
    @property
    def full_node_id(self) -> int: ...
    @property
    def local_epoch(self) -> int: ...
    @property
    def node_id16(self) -> int: ...
    def encode(self) -> bytes: ...
    def to_entry(self) -> bytes: ...
    @classmethod
    def decode(cls, payload: _BytesLike) -> Registration: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Bootstrap:
    """A bootstrap entry (opcode 0x04): the first storage and raft DEKs and a batch of rows."""

    __match_args__ = (
        "storage_dek_id",
        "wrapped_storage",
        "raft_dek_id",
        "wrapped_raft",
        "batch_registry",
    )
    def __new__(
        cls,
        storage_dek_id: int,
        wrapped_storage: _BytesLike,
        raft_dek_id: int,
        wrapped_raft: _BytesLike,
        batch_registry: Iterable[Registration] | None = None,
    ) -> Self: ...
    @property
    def storage_dek_id(self) -> int: ...
    @property
    def wrapped_storage(self) -> bytes: ...
    @property
    def raft_dek_id(self) -> int: ...
    @property
    def wrapped_raft(self) -> bytes: ...
    @property
    def batch_registry(self) -> tuple[Registration, ...]: ...
    def encode(self) -> bytes: ...
    def to_entry(self) -> bytes: ...
    @classmethod
    def decode(cls, payload: _BytesLike) -> Bootstrap: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Rotation:
    """A rotation entry (opcode 0x05): a new DEK for one purpose and its proposer."""

    __match_args__ = ("dek_id", "purpose", "wrapped", "proposer_registration", "sub_tag")
    def __new__(
        cls,
        dek_id: int,
        purpose: Purpose | int,
        wrapped: _BytesLike,
        proposer_registration: Registration,
        sub_tag: int = ...,
    ) -> Self: ...
    @property
    def dek_id(self) -> int: ...
    @property
    def purpose(self) -> Purpose: ...
    @property
    def wrapped(self) -> bytes: ...
    @property
    def proposer_registration(self) -> Registration: ...
    @property
    def sub_tag(self) -> int: ...
    def encode(self) -> bytes: ...
    def to_entry(self) -> bytes: ...
    @classmethod
    def decode(cls, payload: _BytesLike) -> Rotation: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

_Payload = Registration | Bootstrap | Rotation

@final
class RegistryRow:
    """One writer-registry row; ordered like the registry keys."""

    __match_args__ = (
        "dek_id",
        "node_id16",
        "full_node_id",
        "first_seen_local_epoch",
        "last_seen_local_epoch",
    )
    def __new__(
        cls,
        dek_id: int,
        node_id16: int,
        full_node_id: int,
        first_seen_local_epoch: int,
        last_seen_local_epoch: int,
    ) -> Self: ...
    @property
    def dek_id(self) -> int: ...
    @property
    def node_id16(self) -> int: ...
    @property
    def full_node_id(self) -> int: ...
    @property
    def first_seen_local_epoch(self) -> int: ...
    @property
    def last_seen_local_epoch(self) -> int: ...
    @property
    def key(self) -> bytes: ...
    @property
    def value(self) -> bytes: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __lt__(self, other: RegistryRow, /) -> bool: ...
    def __le__(self, other: RegistryRow, /) -> bool: ...
    def __gt__(self, other: RegistryRow, /) -> bool: ...
    def __ge__(self, other: RegistryRow, /) -> bool: ...

@final
class Registry:
    """A read-only view of a registry directory, pinned to one snapshot until `refresh()`."""

    def __new__(
cls, path: str | os.PathLike[str]) -> Self: ...
    @property
    def path(self) -> pathlib.Path: ...
    @property
    def closed(self) -> bool: ...
    def get(self, dek_id: int, node_id16: int) -> RegistryRow | None: ...
    def rows(self, dek_id: int | None = None) -> list[RegistryRow]: ...
    def dek_ids(self) -> list[int]: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[RegistryRow]: ...
    def __contains__(self, key: tuple[int, int], /) -> bool: ...
    @property
    def applied_index(self) -> int | None: ...
    def refresh(self) -> None: ...
    def stats(self) -> dict[int, dict[str, int]]: ...
    def digest(self) -> str: ...
    def diff(self, other: Registry) -> RegistryDiff: ...
    def columns(self, dek_id: int | None = None) -> dict[str, array.array[int]]: ...
    def to_pandas(self, dek_id: int | None = None) -> Any:  # a pandas.DataFrame
        ...
    def _repr_html_(self) -> str: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...

@final
class RegistryDiff:
    """Where two registries disagree (`Registry.diff`)."""

    @property
    def only_in_self(self) -> list[RegistryRow]: ...
    @property
    def only_in_other(self) -> list[RegistryRow]: ...
    @property
    def changed(self) -> list[tuple[RegistryRow, RegistryRow]]: ...
    def __bool__(self) -> bool: ...
    def __len__(self) -> int: ...

@final
class FileKek:
    """A 32-byte AES-256 key-encryption key read from an owner-only regular file."""

    def __new__(
cls, path: str | os.PathLike[str]) -> Self: ...
    @classmethod
    def generate(cls, path: str | os.PathLike[str]) -> FileKek: ...
    @property
    def path(self) -> pathlib.Path: ...
    def wrap(self, dek: _BytesLike) -> bytes: ...
    def unwrap(self, wrapped: _BytesLike) -> bytes: ...

@final
class Keystore:
    """A live, read-only view of an applier's keys: ids and fingerprints, never key bytes."""

    def ids(self) -> list[int]: ...
    def fingerprint(self, dek_id: int) -> str: ...
    def __len__(self) -> int: ...
    def __contains__(self, dek_id: object, /) -> bool: ...
    def __iter__(self) -> Iterator[int]: ...

@final
class SidecarKey:
    """One key of a sidecar: its purpose, wrapped bytes, creation time and local epoch."""

    @property
    def purpose(self) -> Purpose: ...
    @property
    def wrapped(self) -> bytes: ...
    @property
    def created(self) -> str: ...
    @property
    def local_epoch(self) -> int: ...
    def __eq__(self, other: object, /) -> bool: ...

@final
class Sidecar:
    """A parsed and validated keys.json sidecar."""

    @property
    def version(self) -> int: ...
    @property
    def raft_applied_index(self) -> int: ...
    @property
    def storage_envelope_active(self) -> bool: ...
    @property
    def raft_envelope_cutover_index(self) -> int: ...
    @property
    def active(self) -> dict[str, int]: ...
    @property
    def active_storage(self) -> int: ...
    @property
    def active_raft(self) -> int: ...
    @property
    def keys(self) -> dict[int, SidecarKey]: ...
    def to_json(self) -> str: ...
    def __eq__(self, other: object, /) -> bool: ...

def read_sidecar(path: str | os.PathLike[str]) -> Sidecar | None: ...

@final
class Applier:
    """The one writer of a registry directory; every apply is one durable transaction."""

    def __new__(
        cls,
        path: str | os.PathLike[str],
        *,
        kek: FileKek | None = None,
        sidecar: str | os.PathLike[str] | None = None,
        sync: bool = True,
        map_size: int | None = None,
    ) -> Self: ...
    @property
    def kek(self) -> FileKek | None: ...
    @property
    def keystore(self) -> Keystore | None: ...
    @property
    def sidecar(self) -> Sidecar | None: ...
    @property
    def sidecar_path(self) -> pathlib.Path | None: ...
    def _set_fault(self, point: _FaultPoint | None, action: Literal["raise", "abort"] = "raise") -> None: ...
    @property
    def path(self) -> pathlib.Path: ...
    @property
    def closed(self) -> bool: ...
    @property
    def registry(self) -> Registry: ...
    @property
    def applied_index(self) -> int | None: ...
    def apply_registration(self, registration: Registration, *, index: int | None = None) -> _Outcome: ...
    def apply_bootstrap(self, bootstrap: Bootstrap, *, index: int | None = None) -> _Outcome: ...
    def apply_rotation(self, rotation: Rotation, *, index: int | None = None) -> _Outcome: ...
    def apply(self, entry: _BytesLike | _Payload, *, index: int | None = None) -> _Outcome: ...
    def apply_many(
        self, entries: Iterable[_BytesLike | _Payload], first_index: int | None = None
    ) -> list[_Outcome]: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...

def registry_key(dek_id: int, node_id16: int) -> bytes: ...
def decode_registry_key(key: _BytesLike) -> tuple[int, int]: ...
def encode_registry_value(full_node_id: int, first: int, last: int) -> bytes: ...
def decode_registry_value(value: _BytesLike) -> tuple[int, int, int]: ...
def decode_entry(entry: _BytesLike) -> _Payload: ...
def is_encryption_opcode(opcode: int) -> bool: ...

class EncryptionError(Exception):
    """Every error this package raises on purpose."""

class EncryptionApplyError(EncryptionError):
    """Halt: the entry was not applied and nothing was written."""

    # Set when raised by Applier.apply_many: the halted entry's position
    # and the outcomes of the (committed) entries before it.
    position: int
    outcomes: list[_Outcome]

class KEKNotConfiguredError(EncryptionApplyError):
    opcode: int
    entry_kind: Literal["bootstrap", "rotation"]

class LocalEpochRollbackError(EncryptionApplyError):
    dek_id: int
    full_node_id: int
    last_seen: int
    incoming: int

class NodeIDCollisionError(EncryptionApplyError):
    dek_id: int
    node_id16: int
    existing_full_node_id: int
    incoming_full_node_id: int

class MalformedPayloadError(EncryptionApplyError):
    payload_kind: Literal["entry", "registration", "bootstrap", "rotation"]
    reason: str
    offset: int | None

class RegistryCorruptionError(EncryptionApplyError):
    key: bytes
    value: bytes | None
    dek_id: int | None
    node_id16: int | None
    problem: Literal[
        "key_length", "key_layout", "value_length", "node_id_mismatch", "epoch_order", "applied_index_length"
    ]

class StorageError(EncryptionApplyError):
    operation: str
    path: str
    code: int | None

class KEKUnwrapError(EncryptionApplyError):
    dek_id: int | None
    purpose: Literal["storage", "raft"] | None
    reason: Literal["length", "tag"]

class KeyConflictError(EncryptionApplyError):
    dek_id: int

class AlreadyBootstrappedError(EncryptionApplyError):
    active_storage: int
    active_raft: int
    storage_dek_id: int
    raft_dek_id: int

class NotBootstrappedError(EncryptionApplyError):
    dek_id: int

class PayloadRejectedError(EncryptionApplyError):
    reason: Literal["same_ids", "reserved_key_id", "foreign_batch_row", "proposer_dek_mismatch", "purpose_mismatch"]
    dek_id: int | None

class SidecarError(EncryptionApplyError):
    path: str
    reason: str

class RegistryOpenError(EncryptionError):
    path: str
    reason: str

class KEKFileError(EncryptionError):
    path: str
    reason: Literal["io", "not_regular", "wrong_size", "insecure_mode", "exists", "random"]
    mode: int | None

class InsecureKEKFileError(KEKFileError): ...
