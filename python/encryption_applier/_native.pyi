"""Type stubs for the native core ``encryption_applier._native``."""

import array
import enum
import os
import pathlib
import types
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Final, Literal, Self, final

__version__: Final[str]
__all__ = [
    "Applier",
    "Bootstrap",
    "FileKek",
    "Keystore",
    "MAX_BOOTSTRAP_BATCH",
    "MAX_SIDECAR_BYTES",
    "OP_BOOTSTRAP",
    "OP_REGISTRATION",
    "OP_ROTATION",
    "PageDamage",
    "Purpose",
    "REGISTRY_PREFIX",
    "ROTATE_DEK",
    "ENABLE_STORAGE_ENVELOPE",
    "ENABLE_RAFT_ENVELOPE",
    "Registration",
    "Registry",
    "RegistryDiff",
    "RegistryRow",
    "Rotation",
    "Sidecar",
    "SidecarKey",
    "VerifyReport",
    "WIRE_VERSION",
    "__version__",
    "decode_entry",
    "decode_registry_key",
    "decode_registry_value",
    "derive_node_id",
    "node_id16",
    "find_node_id_collisions",
    "encode_registry_value",
    "is_encryption_opcode",
    "read_sidecar",
    "diagnose_startup",
    "check_startup",
    "bump_local_epoch",
    "prepare_epochs",
    "verify",
    "registry_key",
    "test_support",
]

OP_REGISTRATION: Final[int]
OP_BOOTSTRAP: Final[int]
OP_ROTATION: Final[int]
WIRE_VERSION: Final[int]
ROTATE_DEK: Final[int]
ENABLE_STORAGE_ENVELOPE: Final[int]
ENABLE_RAFT_ENVELOPE: Final[int]
MAX_BOOTSTRAP_BATCH: Final[int]
MAX_SIDECAR_BYTES: Final[int]
REGISTRY_PREFIX: Final[bytes]

_BytesLike = bytes | bytearray | memoryview

_Outcome = Literal[
    "inserted",
    "advanced",
    "unchanged",
    "bootstrapped",
    "rotated",
    "skipped",
    "enabled",
    "already-active",
    "stale-dek",
]

class Purpose(enum.IntEnum):
    """What a DEK encrypts: storage data or the Raft log."""

    STORAGE = 1
    RAFT = 2

@final
class Registration:
    """A registration entry (opcode 0x03): one writer under one DEK."""

    __match_args__ = ("dek_id", "full_node_id", "local_epoch")
    def __new__(cls, dek_id: int, full_node_id: int, local_epoch: int) -> Self: ...
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
    @classmethod
    def for_cluster(
        cls,
        storage_dek_id: int,
        wrapped_storage: _BytesLike,
        raft_dek_id: int,
        wrapped_raft: _BytesLike,
        writers: Iterable[tuple[int, int]],
    ) -> Bootstrap: ...
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

    def __new__(cls, path: str | os.PathLike[str]) -> Self: ...
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
    def verify(self, *, rows: bool = True, max_problems: int = 100) -> VerifyReport: ...
    def check_join(self, full_node_id: int, storage_dek_id: int, raft_dek_id: int = ...) -> list[Registration]: ...
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

_DamageProblem = Literal[
    "truncated",
    "meta",
    "db_flags",
    "page_number",
    "page_header",
    "node_bounds",
    "key_order",
    "tree_shape",
    "counts",
    "free_list",
    "row",
    "io",
]

@final
class PageDamage:
    """One problem found in ``data.mdb``."""

    @property
    def page(self) -> int | None: ...
    @property
    def problem(self) -> _DamageProblem: ...
    @property
    def detail(self) -> str: ...
    def __eq__(self, other: object, /) -> bool: ...

@final
class VerifyReport:
    """What ``verify()`` found: the snapshot walked, the main database's
    shape, and every problem (empty when the registry is sound)."""

    @property
    def path(self) -> pathlib.Path: ...
    @property
    def ok(self) -> bool: ...
    @property
    def txnid(self) -> int: ...
    @property
    def page_size(self) -> int: ...
    @property
    def file_pages(self) -> int: ...
    @property
    def last_page(self) -> int: ...
    @property
    def depth(self) -> int: ...
    @property
    def entries(self) -> int: ...
    @property
    def branch_pages(self) -> int: ...
    @property
    def leaf_pages(self) -> int: ...
    @property
    def overflow_pages(self) -> int: ...
    @property
    def free_pages(self) -> int: ...
    @property
    def problems(self) -> list[PageDamage]: ...
    def __bool__(self) -> bool: ...

def verify(path: str | os.PathLike[str], *, rows: bool = True, max_problems: int = 100) -> VerifyReport:
    """Checks the registry at ``path`` page by page without opening it for
    use (so it works on one too damaged to open); damage is in the report."""

@final
class FileKek:
    """A 32-byte AES-256 key-encryption key read from an owner-only regular file."""

    def __new__(cls, path: str | os.PathLike[str]) -> Self: ...
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
    def storage_envelope_cutover_index(self) -> int: ...
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
def diagnose_startup(
    *,
    encryption_enabled: bool,
    kek: FileKek | None = None,
    sidecar_path: str | os.PathLike[str] | None = None,
    registry: Registry | None = None,
    full_node_id: int | None = None,
    members: Iterable[int] = ...,
    log: Iterable[tuple[int, bytes]] = ...,
    engine_applied_index: int | None = None,
    snapshot_cutover_index: int | None = None,
    phase: Literal["pre-bump", "post-replay"] = "pre-bump",
) -> list[Any]:  # list[StartupRefusedError]
    """Every refusal of elastickv's startup guards, in Go's order."""

def check_startup(
    *,
    encryption_enabled: bool,
    kek: FileKek | None = None,
    sidecar_path: str | os.PathLike[str] | None = None,
    registry: Registry | None = None,
    full_node_id: int | None = None,
    members: Iterable[int] = ...,
    log: Iterable[tuple[int, bytes]] = ...,
    engine_applied_index: int | None = None,
    snapshot_cutover_index: int | None = None,
    phase: Literal["pre-bump", "post-replay"] = "pre-bump",
) -> None:
    """diagnose_startup, raising the first refusal."""

def derive_node_id(raft_id: str) -> int: ...
def node_id16(full_node_id: int) -> int: ...
def find_node_id_collisions(ids: Iterable[int]) -> list[tuple[int, int]]: ...
def bump_local_epoch(path: str | os.PathLike[str], dek_id: int) -> int: ...
def prepare_epochs(path: str | os.PathLike[str]) -> tuple[int, int]: ...

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
        on_raft_cutover: Callable[[int, int], object] | None = None,
        local_epoch: int = ...,
        raft_local_epoch: int = ...,
    ) -> Self: ...
    @property
    def kek(self) -> FileKek | None: ...
    @property
    def keystore(self) -> Keystore | None: ...
    @property
    def sidecar(self) -> Sidecar | None: ...
    @property
    def sidecar_path(self) -> pathlib.Path | None: ...
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

class _TestSupport(types.ModuleType):
    """Hooks for the package's own tests; not part of the public API."""

    def set_fault(
        self,
        applier: Applier,
        point: Literal["after_unwrap", "after_keystore_install", "after_sidecar_write", "before_registry_commit"]
        | None,
        action: Literal["raise", "abort"] = "raise",
    ) -> None: ...
    def hold_lock(self, applier: Applier, seconds: float) -> None: ...

test_support: _TestSupport
