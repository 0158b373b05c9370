"""Every exception `encryption_applier` raises on purpose.

They are declared here, in Python, and raised from the Rust core with
their fields set, so a host can build them too (to test its own error
handling), and they pickle with their fields (to cross a process pool).

::

    EncryptionError                     every error this package raises on purpose
    ├── EncryptionApplyError            halt: the entry was not applied, nothing was written
    │   ├── KEKNotConfiguredError       bootstrap/rotation with no KEK wired
    │   ├── LocalEpochRollbackError     case 3
    │   ├── NodeIDCollisionError        case 4
    │   ├── MalformedPayloadError       bad bytes
    │   ├── RegistryCorruptionError     a stored row that does not decode
    │   ├── StorageError                LMDB / file-system fault
    │   ├── KEKUnwrapError              a wrapped DEK that does not open
    │   ├── KeyConflictError            a DEK id already loaded with other bytes
    │   ├── AlreadyBootstrappedError    a second, different bootstrap
    │   ├── NotBootstrappedError        a rotation before any bootstrap
    │   ├── PayloadRejectedError        a well-formed payload refused on its meaning
    │   ├── CutoverHookError            the on_raft_cutover hook raised
    │   └── SidecarError                keys.json unreadable, invalid or not written
    ├── StartupRefusedError             a node must not start (elastickv's startup guards)
    │   ├── SidecarPresentWithoutFlagError   a sidecar on disk while encryption is off
    │   ├── KEKRequiredWithFlagError         encryption on without a KEK
    │   ├── KEKMismatchError                 the KEK does not unwrap a sidecar key
    │   ├── LocalEpochExhaustedError         a key's local epoch is at 0xFFFF: rotate first
    │   ├── UnsupportedFilesystemError       fsync does not work where the sidecar lives
    │   ├── StartupNodeIDCollisionError      two members share a 16-bit node id
    │   ├── StartupLocalEpochRollbackError   the sidecar's epoch is not ahead of the registry
    │   ├── EnvelopeCutoverDivergenceError   snapshot and sidecar disagree on the Raft cutover
    │   ├── SidecarBehindRaftLogError        the sidecar missed an encryption entry (or no log to tell)
    │   ├── RaftLogGapUncoveredError         the log given does not reach over the sidecar's gap
    │   └── WriterUint16CollisionError       a joining node's 16-bit prefix is another node's
    ├── ForeignRegistryRowError         a status view met another node's row at the caller's prefix
    ├── EnvelopeError                   an elastickv envelope that cannot be read or opened
    │   ├── EnvelopeShortError          fewer than 34 bytes
    │   ├── EnvelopeVersionError        a version other than 0x01
    │   └── IntegrityError              does not verify under its key and AAD
    ├── RegistryOpenError               a registry directory that cannot be opened
    │   ├── DamagedRegistryError        data.mdb fails the page check at open
    │   └── UncommittedRegistryError    a creation no commit ever completed
    ├── KEKFileError                    a KEK file that cannot be used
    │   └── InsecureKEKFileError        a KEK file readable or writable by others
    └── SnapshotError                   an elastickv snapshot that cannot be read, or that Go refuses

Each field is a keyword argument of the constructor and an attribute of
the instance; the message is the one positional argument.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Literal

from .results import Aftermath

__all__ = [
    "EncryptionError",
    "EncryptionApplyError",
    "KEKNotConfiguredError",
    "LocalEpochRollbackError",
    "NodeIDCollisionError",
    "MalformedPayloadError",
    "RegistryCorruptionError",
    "StorageError",
    "KEKUnwrapError",
    "KeyConflictError",
    "AlreadyBootstrappedError",
    "NotBootstrappedError",
    "PayloadRejectedError",
    "CutoverHookError",
    "SidecarError",
    "StartupRefusedError",
    "SidecarPresentWithoutFlagError",
    "KEKRequiredWithFlagError",
    "KEKMismatchError",
    "LocalEpochExhaustedError",
    "UnsupportedFilesystemError",
    "StartupNodeIDCollisionError",
    "StartupLocalEpochRollbackError",
    "EnvelopeCutoverDivergenceError",
    "SidecarBehindRaftLogError",
    "RaftLogGapUncoveredError",
    "WriterUint16CollisionError",
    "ForeignRegistryRowError",
    "EnvelopeError",
    "EnvelopeShortError",
    "EnvelopeVersionError",
    "IntegrityError",
    "RegistryOpenError",
    "DamagedRegistryError",
    "UncommittedRegistryError",
    "KEKFileError",
    "InsecureKEKFileError",
    "SnapshotError",
]

Outcome = Literal[
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
"""What an `apply*` returns for an entry it applied (or skipped as already applied)."""

PayloadKind = Literal["entry", "registration", "bootstrap", "rotation"]
"""What was being decoded or applied: an entry's bytes, or one payload kind."""

PurposeName = Literal["storage", "raft"]
"""A DEK's purpose by name (`Purpose.STORAGE`, `Purpose.RAFT`)."""

CorruptionProblem = Literal[
    "key_length", "key_layout", "value_length", "node_id_mismatch", "epoch_order", "applied_index_length"
]
"""What is wrong with a stored registry row (`RegistryCorruptionError.problem`)."""

RejectReason = Literal[
    "same_ids",
    "reserved_key_id",
    "foreign_batch_row",
    "proposer_dek_mismatch",
    "purpose_mismatch",
    "cutover_without_index",
    "cutover_purpose",
    "cutover_wrapped",
]
"""Why a well-formed bootstrap or rotation is refused (`PayloadRejectedError.reason`)."""

DamageProblem = Literal[
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
"""What is wrong with a page of `data.mdb` (`PageDamage.problem`, `DamagedRegistryError.problem`)."""

UnwrapReason = Literal["length", "tag", "dek_length", "kek_failed"]
"""Why a wrapped DEK did not open (`KEKUnwrapError.reason`)."""

SnapshotProblem = Literal[
    "cannot_open",
    "not_regular_file",
    "cannot_read",
    "is_directory",
    "cannot_list",
    "fsm_not_found",
    "fsm_too_small",
    "fsm_crc_mismatch",
    "fsm_token_crc_mismatch",
    "unknown_magic",
    "invalid_length",
    "truncated_header",
    "snap_empty",
    "snap_undecodable",
    "snap_crc_mismatch",
    "token_invalid",
    "wal_no_files",
    "wal_undecodable",
    "wal_crc_mismatch",
]
"""What is wrong with an elastickv snapshot or WAL file (`SnapshotError.code`)."""

SidecarProblem = Literal[
    "cannot_open",
    "not_regular_file",
    "too_large",
    "cannot_read",
    "not_json",
    "not_an_object",
    "missing_field",
    "unsupported_version",
    "bad_value",
    "bad_key_id",
    "reserved_key_id",
    "active_not_a_key",
    "active_wrong_purpose",
    "cannot_serialise",
    "not_written",
    "not_durable",
    "cannot_resolve_path",
    "not_bootstrapped",
    "no_such_key",
    "raft_cut_over_without_raft_key",
]
"""What is wrong with a keys.json sidecar (`SidecarError.code`): the codes of `SIDECAR_PROBLEM_CODES`, in order."""
KEKFileReason = Literal["io", "not_regular", "wrong_size", "insecure_mode", "foreign_owner", "exists", "random"]
"""What is wrong with a KEK file (`KEKFileError.reason`)."""


def _field_names(cls: type[EncryptionError]) -> tuple[str, ...]:
    """The keyword-only parameters of ``cls.__init__``: its fields."""
    params = inspect.signature(cls.__init__).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _rebuild(cls: type[EncryptionError], args: tuple[Any, ...], fields: dict[str, Any]) -> EncryptionError:
    return cls(*args, **fields)


class EncryptionError(Exception):
    """Every error this package raises on purpose."""

    def __init__(self, message: str = "", /) -> None:
        super().__init__(message)

    @property
    def fields(self) -> dict[str, Any]:
        """The structured fields of this error, by name."""
        return {name: getattr(self, name) for name in _field_names(type(self))}

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt through the constructor with its fields; the instance
        # dict (position, outcomes, notes) is restored on top.
        return (_rebuild, (type(self), self.args, self.fields), self.__dict__)

    def _repr_html_(self) -> str:
        """The notebook view of the error (displayed, not raised): its
        class, message and fields in a table."""
        from ._frames import error_html

        return error_html(self)


class EncryptionApplyError(EncryptionError):
    """Halt: the entry was not applied and nothing of it was written. The
    host must stop applying.

    ``position`` and ``outcomes`` are set when ``Applier.apply_many``
    raised it: the position of the entry that halted, and the outcomes of
    the (committed) entries before it. Otherwise both are None.

    ```pycon
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d, ea.Applier(d) as a:
    ...     try:
    ...         a.apply_many([ea.Registration(1, 0xABCD0001, 2), ea.Registration(1, 0xABCD0001, 1)])
    ...     except ea.EncryptionApplyError as halt:   # a LocalEpochRollbackError
    ...         type(halt).__name__, halt.position, halt.outcomes, halt.fields["last_seen"]
    ('LocalEpochRollbackError', 1, ['inserted'], 2)

    ```
    """

    position: int | None
    """The position in `apply_many`'s entries of the entry that halted; None when not raised by `apply_many`."""
    outcomes: list[Outcome] | None
    """The outcomes of the entries before `position`, which were committed; None when not raised by `apply_many`."""

    def __init__(self, message: str = "", /) -> None:
        super().__init__(message)
        self.position = None
        self.outcomes = None


class KEKNotConfiguredError(EncryptionApplyError):
    """A bootstrap or rotation reached an applier that has no KEK."""

    opcode: int
    """The opcode of the entry (0x04 bootstrap, 0x05 rotation)."""

    entry_kind: PayloadKind
    """What was applied: `"entry"` (bytes) or the payload kind."""

    def __init__(self, message: str, /, *, opcode: int, entry_kind: PayloadKind) -> None:
        super().__init__(message)
        self.opcode = opcode
        self.entry_kind = entry_kind


class LocalEpochRollbackError(EncryptionApplyError):
    """Case 3: a registration's local epoch is below the row's last-seen epoch."""

    dek_id: int
    """The DEK the registration is under."""

    full_node_id: int
    """The node that registered."""

    last_seen: int
    """The row's last-seen local epoch."""

    incoming: int
    """The registration's local epoch, below `last_seen`."""

    def __init__(self, message: str, /, *, dek_id: int, full_node_id: int, last_seen: int, incoming: int) -> None:
        super().__init__(message)
        self.dek_id = dek_id
        self.full_node_id = full_node_id
        self.last_seen = last_seen
        self.incoming = incoming


class NodeIDCollisionError(EncryptionApplyError):
    """Case 4: another full node id already writes under this DEK with the same node_id16."""

    dek_id: int
    """The DEK the registration is under."""

    node_id16: int
    """The 16-bit prefix both nodes share (`full_node_id & 0xFFFF`)."""

    existing_full_node_id: int
    """The node the registry row belongs to."""

    incoming_full_node_id: int
    """The node whose registration was refused."""

    def __init__(
        self,
        message: str,
        /,
        *,
        dek_id: int,
        node_id16: int,
        existing_full_node_id: int,
        incoming_full_node_id: int,
    ) -> None:
        super().__init__(message)
        self.dek_id = dek_id
        self.node_id16 = node_id16
        self.existing_full_node_id = existing_full_node_id
        self.incoming_full_node_id = incoming_full_node_id


class MalformedPayloadError(EncryptionApplyError):
    """Bytes or a payload object that are not a valid encryption payload.

    ``reason`` is a stable code (``"truncated"``, ``"wrong_version"``, ...);
    ``offset`` is where in the payload decoding stopped, when known.
    """

    payload_kind: PayloadKind
    """What was being decoded: `"entry"`, `"registration"`, `"bootstrap"` or `"rotation"`."""

    reason: str
    """A stable code of the problem (`"truncated"`, `"wrong_version"`, ...)."""

    offset: int | None
    """Where in the payload decoding stopped; None when not known."""

    def __init__(self, message: str, /, *, payload_kind: PayloadKind, reason: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.payload_kind = payload_kind
        self.reason = reason
        self.offset = offset


class RegistryCorruptionError(EncryptionApplyError):
    """A stored registry row that does not decode (never read as "no row").
    ``value`` is the stored value when it is the problem, at most its first
    64 bytes."""

    key: bytes
    """The stored key of the row that does not decode."""

    problem: CorruptionProblem
    """A stable code of what is wrong."""

    value: bytes | None
    """The stored value when it is the problem, at most its first 64 bytes; else None."""

    dek_id: int | None
    """The row's DEK id, when the key decodes; else None."""

    node_id16: int | None
    """The row's 16-bit node id, when the key decodes; else None."""

    def __init__(
        self,
        message: str,
        /,
        *,
        key: bytes,
        problem: CorruptionProblem,
        value: bytes | None = None,
        dek_id: int | None = None,
        node_id16: int | None = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.problem = problem
        self.value = value
        self.dek_id = dek_id
        self.node_id16 = node_id16


class StorageError(EncryptionApplyError):
    """An LMDB or file-system fault while applying or reading.

    Raised by an ``Applier``, ``replay_from`` is where the host replays its
    log from: ``durable_index + 1``, or None when no index was ever made
    durable (replay from the log's first entry). It is the one replay rule
    for every mode (see the durability guide). ``applied`` is True when the
    entry's change already took effect past its point of no return (a
    ``keys.json`` renamed into place whose directory could not be fsynced):
    it is not recorded as applied, and the replay completes it.
    ``aftermath`` is what else the fault left behind, learnt after it (a
    tuple of `Aftermath`, empty when nothing: the group commit's lost
    entries, rows an entry could not take back, ...), each also a clause of
    the message.
    """

    operation: str
    """What was being done (an LMDB call or a file-system step)."""

    path: str
    """The file or directory involved."""

    code: int | None
    """The OS or LMDB error code, when there is one; else None."""

    replay_from: int | None
    """The Raft index to replay the log from (`durable_index + 1`); None when no index was ever made durable."""

    applied: bool
    """True when the entry's change took effect past its point of no return (the replay completes it)."""

    aftermath: tuple[Aftermath, ...]
    """What else the fault left behind, learnt after it (empty when nothing); each also a clause of the message."""

    def __init__(
        self,
        message: str,
        /,
        *,
        operation: str,
        path: str,
        code: int | None = None,
        replay_from: int | None = None,
        applied: bool = False,
        aftermath: Sequence[Aftermath] = (),
    ) -> None:
        super().__init__(message)
        self.operation = operation
        self.path = path
        self.code = code
        self.replay_from = replay_from
        self.applied = applied
        self.aftermath = tuple(aftermath)


class KEKUnwrapError(EncryptionApplyError):
    """A wrapped DEK that does not open: wrong length, wrong KEK or tampered
    bytes (``reason`` ``"length"``, ``"tag"``, from a `FileKek`); or a KEK of
    your own (`Kek`) that raised (``"kek_failed"``, its exception is the
    ``__cause__``) or answered with a key that is not 32 bytes
    (``"dek_length"``)."""

    reason: UnwrapReason
    """Why the unwrap failed: `"length"`, `"tag"`, `"dek_length"` or `"kek_failed"`."""

    dek_id: int | None
    """The DEK whose wrapped bytes did not open, when known; else None."""

    purpose: PurposeName | None
    """That DEK's purpose, `"storage"` or `"raft"`, when known; else None."""

    def __init__(
        self,
        message: str,
        /,
        *,
        reason: UnwrapReason,
        dek_id: int | None = None,
        purpose: PurposeName | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.dek_id = dek_id
        self.purpose = purpose


class KeyConflictError(EncryptionApplyError):
    """A DEK id already loaded with different key bytes."""

    dek_id: int
    """The DEK id already loaded with other key bytes."""

    def __init__(self, message: str, /, *, dek_id: int) -> None:
        super().__init__(message)
        self.dek_id = dek_id


class AlreadyBootstrappedError(EncryptionApplyError):
    """A bootstrap that is not an exact replay of the one applied (use rotation)."""

    active_storage: int
    """The active storage DEK of the bootstrap that was applied."""

    active_raft: int
    """The active Raft DEK of the bootstrap that was applied."""

    storage_dek_id: int
    """The storage DEK of the refused bootstrap."""

    raft_dek_id: int
    """The Raft DEK of the refused bootstrap."""

    def __init__(
        self, message: str, /, *, active_storage: int, active_raft: int, storage_dek_id: int, raft_dek_id: int
    ) -> None:
        super().__init__(message)
        self.active_storage = active_storage
        self.active_raft = active_raft
        self.storage_dek_id = storage_dek_id
        self.raft_dek_id = raft_dek_id


class NotBootstrappedError(EncryptionApplyError):
    """A rotation before any bootstrap."""

    dek_id: int
    """The DEK of the rotation that came before any bootstrap."""

    def __init__(self, message: str, /, *, dek_id: int) -> None:
        super().__init__(message)
        self.dek_id = dek_id


class PayloadRejectedError(EncryptionApplyError):
    """A well-formed bootstrap or rotation refused on its meaning (ids, batch rows, proposer, purpose)."""

    reason: RejectReason
    """A stable code of why the payload was refused."""

    dek_id: int | None
    """The DEK involved, when there is one; else None."""

    def __init__(self, message: str, /, *, reason: RejectReason, dek_id: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.dek_id = dek_id


class CutoverHookError(EncryptionApplyError):
    """The ``on_raft_cutover`` hook raised (its exception is the
    ``__cause__``) when told of the Raft envelope cutover at
    ``cutover_index`` with active Raft key ``dek_id``. Nothing of the entry
    was written; a replay tells the hook again."""

    cutover_index: int
    """The Raft index of the cutover the hook was told of."""

    dek_id: int
    """The active Raft DEK at the cutover."""

    def __init__(self, message: str, /, *, cutover_index: int, dek_id: int) -> None:
        super().__init__(message)
        self.cutover_index = cutover_index
        self.dek_id = dek_id


class SidecarError(EncryptionApplyError):
    """A keys.json sidecar that is unreadable or invalid, or a durable write that failed.

    ``code`` names the problem, stably: the file (``cannot_open``,
    ``not_regular_file``, ``too_large``, ``cannot_read``), the document
    (``not_json``, ``not_an_object``, ``missing_field``,
    ``unsupported_version``, ``bad_value``, ``bad_key_id``,
    ``reserved_key_id``, ``active_not_a_key``, ``active_wrong_purpose``,
    ``cannot_serialise``), a write (``not_written``, ``not_durable``,
    ``cannot_resolve_path``) or a start-up use (``not_bootstrapped``,
    ``no_such_key``, ``raft_cut_over_without_raft_key``); the constant
    `SIDECAR_PROBLEM_CODES` lists them all. ``reason`` is the human text of
    the message without the path."""

    path: str
    """The keys.json involved."""

    code: SidecarProblem
    """A stable code of the problem (see above)."""

    reason: str
    """The message's human text, without the path."""

    def __init__(self, message: str, /, *, path: str, code: SidecarProblem, reason: str) -> None:
        super().__init__(message)
        self.path = path
        self.code = code
        self.reason = reason


class StartupRefusedError(EncryptionError):
    """A node must not start as configured: one of elastickv's startup
    guards refused (not a halt: no entry was involved). ``sentinel`` is the
    name of the Go error it stands for, or None for the package's own
    refusal that Go has no sentinel for (`RaftLogGapUncoveredError`)."""

    sentinel: str | None
    """The name of the Go error this refusal stands for (`"ErrKEKMismatch"`, ...); None for the package's
    own refusal."""

    meaning: str | None
    """What the refusal means and what to do, in a sentence (set by the start-up guards)."""

    def __init__(self, message: str, /, *, sentinel: str | None, meaning: str | None = None) -> None:
        super().__init__(message)
        self.sentinel = sentinel
        self.meaning = meaning


class SidecarPresentWithoutFlagError(StartupRefusedError):
    """A sidecar is at ``path`` but encryption is off: starting would
    silently downgrade to cleartext."""

    path: str
    """The sidecar found on disk."""

    def __init__(
        self, message: str, /, *, path: str, sentinel: str = "ErrSidecarPresentWithoutFlag", meaning: str | None = None
    ) -> None:
        super().__init__(message, sentinel=sentinel, meaning=meaning)
        self.path = path


class KEKRequiredWithFlagError(StartupRefusedError):
    """Encryption is on but no KEK is configured."""

    def __init__(
        self, message: str, /, *, sentinel: str = "ErrKEKRequiredWithFlag", meaning: str | None = None
    ) -> None:
        super().__init__(message, sentinel=sentinel, meaning=meaning)


class KEKMismatchError(StartupRefusedError):
    """The configured KEK cannot unwrap key ``dek_id`` (``purpose``) of the
    sidecar; ``problem`` says how the unwrap failed."""

    dek_id: int
    """The sidecar key the KEK does not unwrap."""

    purpose: PurposeName
    """That key's purpose, `"storage"` or `"raft"`."""

    problem: str
    """How the unwrap failed."""

    def __init__(
        self,
        message: str,
        /,
        *,
        dek_id: int,
        purpose: PurposeName,
        problem: str,
        sentinel: str = "ErrKEKMismatch",
        meaning: str | None = None,
    ) -> None:
        super().__init__(message, sentinel=sentinel, meaning=meaning)
        self.dek_id = dek_id
        self.purpose = purpose
        self.problem = problem


class LocalEpochExhaustedError(StartupRefusedError):
    """Key ``dek_id`` is at local epoch 0xFFFF in the sidecar at ``path``:
    another start could repeat a nonce, so a rotation to a new key must come
    first. ``purpose`` is set when the startup guard found it (the active
    key of that purpose)."""

    dek_id: int
    """The key at local epoch 0xFFFF."""

    path: str
    """The sidecar that records it."""

    purpose: PurposeName | None
    """The purpose whose active key it is, when the start-up guard found it; else None."""

    def __init__(
        self,
        message: str,
        /,
        *,
        dek_id: int,
        path: str,
        purpose: PurposeName | None = None,
        sentinel: str = "ErrLocalEpochExhausted",
        meaning: str | None = None,
    ) -> None:
        super().__init__(message, sentinel=sentinel, meaning=meaning)
        self.dek_id = dek_id
        self.path = path
        self.purpose = purpose


class UnsupportedFilesystemError(StartupRefusedError):
    """An fsync failed when probing the sidecar's directory ``path``."""

    path: str
    """The directory whose fsync failed."""

    detail: str
    """The OS error of the failed fsync."""

    def __init__(
        self,
        message: str,
        /,
        *,
        path: str,
        detail: str,
        sentinel: str = "ErrUnsupportedFilesystem",
        meaning: str | None = None,
    ) -> None:
        super().__init__(message, sentinel=sentinel, meaning=meaning)
        self.path = path
        self.detail = detail


class StartupNodeIDCollisionError(StartupRefusedError):
    """Two members' full ids share their low 16 bits (a start-up refusal;
    the halt of the same name without ``Startup`` is case 4 of an apply)."""

    first_full_node_id: int
    """One of the two members."""

    second_full_node_id: int
    """The other member, with the same low 16 bits."""

    def __init__(
        self,
        message: str,
        /,
        *,
        first_full_node_id: int,
        second_full_node_id: int,
        sentinel: str = "ErrNodeIDCollision",
        meaning: str | None = None,
    ) -> None:
        super().__init__(message, sentinel=sentinel, meaning=meaning)
        self.first_full_node_id = first_full_node_id
        self.second_full_node_id = second_full_node_id


class StartupLocalEpochRollbackError(StartupRefusedError):
    """This node's registry row under the active storage key forbids a
    start: ``problem`` is ``"no_row"`` (the storage layer is cut over but
    there is no row), ``"foreign_row"`` (``owner_full_node_id`` holds the
    prefix) or ``"behind"`` (``sidecar_epoch`` below ``last_seen`` before
    the bump, or not above it after replay; ``phase`` says which)."""

    dek_id: int
    """The active storage key."""

    full_node_id: int
    """This node."""

    phase: str
    """Which check refused: `"pre-bump"` or `"post-replay"`."""

    problem: str
    """`"no_row"`, `"foreign_row"` or `"behind"` (see above)."""

    sidecar_epoch: int | None
    """The sidecar's local epoch of the key, for `"behind"`; else None."""

    last_seen: int | None
    """The registry row's last-seen local epoch, when there is a row; else None."""

    owner_full_node_id: int | None
    """The node that holds the prefix, for `"foreign_row"`; else None."""

    def __init__(
        self,
        message: str,
        /,
        *,
        dek_id: int,
        full_node_id: int,
        phase: str,
        problem: str,
        sidecar_epoch: int | None = None,
        last_seen: int | None = None,
        owner_full_node_id: int | None = None,
        sentinel: str = "ErrLocalEpochRollback",
        meaning: str | None = None,
    ) -> None:
        super().__init__(message, sentinel=sentinel, meaning=meaning)
        self.dek_id = dek_id
        self.full_node_id = full_node_id
        self.phase = phase
        self.problem = problem
        self.sidecar_epoch = sidecar_epoch
        self.last_seen = last_seen
        self.owner_full_node_id = owner_full_node_id


class EnvelopeCutoverDivergenceError(StartupRefusedError):
    """The restored snapshot's Raft cutover index differs from the sidecar's.
    ``snapshot_path`` and ``snapshot_index`` name the snapshot file read and
    its Raft index when the guard read it (``snapshot_path=``), else None."""

    snapshot_cutover_index: int
    """The Raft cutover index the snapshot records."""

    sidecar_cutover_index: int
    """The Raft cutover index keys.json records."""

    snapshot_path: str | None
    """The snapshot file read, when the guard read one; else None."""

    snapshot_index: int | None
    """That snapshot's Raft index, when the guard read one; else None."""

    def __init__(
        self,
        message: str,
        /,
        *,
        snapshot_cutover_index: int,
        sidecar_cutover_index: int,
        snapshot_path: str | None = None,
        snapshot_index: int | None = None,
        sentinel: str = "ErrEnvelopeCutoverDivergence",
        meaning: str | None = None,
    ) -> None:
        super().__init__(message, sentinel=sentinel, meaning=meaning)
        self.snapshot_cutover_index = snapshot_cutover_index
        self.sidecar_cutover_index = sidecar_cutover_index
        self.snapshot_path = snapshot_path
        self.snapshot_index = snapshot_index


class SidecarBehindRaftLogError(StartupRefusedError):
    """The sidecar's ``sidecar_applied_index`` is behind the engine's
    ``engine_applied_index`` and entry ``entry_index`` (an encryption entry,
    ``opcode``) lies in between; or no log was given to look at the entries
    in between (``entry_index`` and ``opcode`` None), which Go refuses too
    (a guard without a scanner fails closed)."""

    sidecar_applied_index: int
    """The sidecar's `raft_applied_index`."""

    engine_applied_index: int
    """The engine's applied index, ahead of it."""

    entry_index: int | None
    """The Raft index of the encryption entry in between; None when no log was given."""

    opcode: int | None
    """That entry's opcode; None when no log was given."""

    def __init__(
        self,
        message: str,
        /,
        *,
        sidecar_applied_index: int,
        engine_applied_index: int,
        entry_index: int | None,
        opcode: int | None,
        sentinel: str = "ErrSidecarBehindRaftLog",
        meaning: str | None = None,
    ) -> None:
        super().__init__(message, sentinel=sentinel, meaning=meaning)
        self.sidecar_applied_index = sidecar_applied_index
        self.engine_applied_index = engine_applied_index
        self.entry_index = entry_index
        self.opcode = opcode


class RaftLogGapUncoveredError(StartupRefusedError):
    """The sidecar's ``sidecar_applied_index`` is behind the engine's
    ``engine_applied_index``, and the log given (entries ``log_first_index``
    to ``log_last_index``, both None for an empty log) does not hold every
    entry in between, so a missed encryption entry cannot be ruled out.

    Package-only: Go has no sentinel for it (``sentinel`` is None). Its
    guard fails there with the Raft storage's own error for a compacted or
    unavailable range, a refusal distinct from ErrSidecarBehindRaftLog."""

    sidecar_applied_index: int
    """The sidecar's `raft_applied_index`."""

    engine_applied_index: int
    """The engine's applied index, ahead of it."""

    log_first_index: int | None
    """The Raft index of the first entry given; None for an empty log."""

    log_last_index: int | None
    """The Raft index of the last entry given; None for an empty log."""

    def __init__(
        self,
        message: str,
        /,
        *,
        sidecar_applied_index: int,
        engine_applied_index: int,
        log_first_index: int | None,
        log_last_index: int | None,
        sentinel: str | None = None,
        meaning: str | None = None,
    ) -> None:
        super().__init__(message, sentinel=sentinel, meaning=meaning)
        self.sidecar_applied_index = sidecar_applied_index
        self.engine_applied_index = engine_applied_index
        self.log_first_index = log_first_index
        self.log_last_index = log_last_index


class WriterUint16CollisionError(StartupRefusedError):
    """A node with ``incoming_full_node_id`` must not join: under DEK
    ``dek_id`` its 16-bit prefix ``node_id16`` is registered to
    ``existing_full_node_id`` (their nonces would share a prefix)."""

    dek_id: int
    """The DEK under which the prefix is taken."""

    node_id16: int
    """The 16-bit prefix both nodes share."""

    existing_full_node_id: int
    """The node the prefix is registered to."""

    incoming_full_node_id: int
    """The node that must not join."""

    def __init__(
        self,
        message: str,
        /,
        *,
        dek_id: int,
        node_id16: int,
        existing_full_node_id: int,
        incoming_full_node_id: int,
        sentinel: str = "ErrWriterUint16Collision",
        meaning: str | None = None,
    ) -> None:
        super().__init__(message, sentinel=sentinel, meaning=meaning)
        self.dek_id = dek_id
        self.node_id16 = node_id16
        self.existing_full_node_id = existing_full_node_id
        self.incoming_full_node_id = incoming_full_node_id


class ForeignRegistryRowError(EncryptionError):
    """A status view (``sidecar_state``, ``resync_sidecar_response``) found
    that the registry row at ``(dek_id, node_id16)``, the caller's 16-bit
    prefix under a key of the sidecar, belongs to ``row_full_node_id``, not
    to ``caller_full_node_id``: their nonces would share a prefix. elastickv
    answers the same with an Internal error ("writer registry node-id
    collision", adapter/encryption_admin.go:541-545)."""

    dek_id: int
    """The key of the sidecar the row is under."""

    node_id16: int
    """The caller's 16-bit prefix."""

    row_full_node_id: int
    """The node the row belongs to."""

    caller_full_node_id: int
    """The node the view was asked for."""

    def __init__(
        self, message: str, /, *, dek_id: int, node_id16: int, row_full_node_id: int, caller_full_node_id: int
    ) -> None:
        super().__init__(message)
        self.dek_id = dek_id
        self.node_id16 = node_id16
        self.row_full_node_id = row_full_node_id
        self.caller_full_node_id = caller_full_node_id


class EnvelopeError(EncryptionError):
    """An elastickv envelope that cannot be decoded or opened."""


class EnvelopeShortError(EnvelopeError):
    """Bytes too short (``length``) to be an envelope: 18 header bytes and
    a 16-byte tag at least."""

    length: int
    """How many bytes were given."""

    def __init__(self, message: str, /, *, length: int) -> None:
        super().__init__(message)
        self.length = length


class EnvelopeVersionError(EnvelopeError):
    """An envelope ``version`` other than 0x01."""

    version: int
    """The envelope's version byte."""

    def __init__(self, message: str, /, *, version: int) -> None:
        super().__init__(message)
        self.version = version


class IntegrityError(EnvelopeError):
    """An envelope under ``key_id`` whose tag does not verify: the wrong
    key, the wrong AAD (user key, timestamp, expiry) or tampered bytes."""

    key_id: int
    """The DEK id the envelope names."""

    def __init__(self, message: str, /, *, key_id: int) -> None:
        super().__init__(message)
        self.key_id = key_id


class RegistryOpenError(EncryptionError):
    """A registry directory that cannot be opened (not a halt: no entry was involved)."""

    path: str
    """The registry directory."""

    reason: str
    """Why it cannot be opened."""

    def __init__(self, message: str, /, *, path: str, reason: str) -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason


class DamagedRegistryError(RegistryOpenError):
    """``data.mdb`` failed the structural check every open makes before LMDB
    reads it (a truncated file, a damaged page, database flags another
    program set). Nothing was read from it; ``encryption_applier.verify``
    lists every problem. ``page`` is where the first was found (None when
    it is not one page's) and ``problem`` its stable code."""

    page: int | None
    """The page where the first problem was found; None when it is not one page's."""

    problem: DamageProblem
    """A stable code of the first problem."""

    def __init__(
        self, message: str, /, *, path: str, reason: str, page: int | None = None, problem: DamageProblem
    ) -> None:
        super().__init__(message, path=path, reason=reason)
        self.page = page
        self.problem = problem


class UncommittedRegistryError(RegistryOpenError):
    """A ``data.mdb`` whose creation no commit ever completed (a power loss
    before the first commit finished): no entry was ever acknowledged from
    it, so nothing is lost by creating it afresh, which
    ``Applier(path, recreate_uncommitted=True)`` does. Never raised for a
    registry that ever committed, however damaged."""


class KEKFileError(EncryptionError):
    """A KEK file that cannot be used (missing, not a regular file, wrong size, exists)."""

    path: str
    """The KEK file."""

    reason: KEKFileReason
    """A stable code of the problem."""

    mode: int | None
    """The file's permission bits, for `"insecure_mode"`; else None."""

    def __init__(self, message: str, /, *, path: str, reason: KEKFileReason, mode: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason
        self.mode = mode


class InsecureKEKFileError(KEKFileError):
    """A KEK file others could read or change: group/other permission bits
    (``reason="insecure_mode"``, ``mode`` says which) or owned by another user
    than the effective one (``reason="foreign_owner"``)."""


class SnapshotError(EncryptionError):
    """An elastickv snapshot file (``.snap``, ``.fsm``) or WAL that cannot
    be read, or whose bytes Go refuses (not a halt: no entry was involved).

    ``path`` is the file the problem is in, ``code`` names the problem
    stably, ``reason`` is the message without the path. ``refused`` is True
    when Go refuses the bytes, so that a node would not start on them (a
    CRC mismatch, an unknown header magic, a truncated header, a corrupt
    WAL, ...), and False when the file could not be looked at at all
    (``cannot_open``, ``not_regular_file``, ``cannot_read``,
    ``is_directory``, ``cannot_list``). ``index`` is the Raft index of the
    snapshot involved, when known; ``details`` the problem's numbers by
    name (``footer``/``computed``, ``length``, ``needed``/``available``,
    ``offset``, ...)."""

    path: str
    """The file the problem is in."""

    code: SnapshotProblem
    """A stable code of the problem."""

    reason: str
    """The message without the path."""

    refused: bool
    """True when Go refuses the bytes; False when the file could not be looked at."""

    index: int | None
    """The Raft index of the snapshot involved, when known; else None."""

    details: dict[str, int | str] | None
    """The problem's numbers by name, when there are any; else None."""

    def __init__(
        self,
        message: str,
        /,
        *,
        path: str,
        code: SnapshotProblem,
        reason: str,
        refused: bool,
        index: int | None = None,
        details: dict[str, int | str] | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.code = code
        self.reason = reason
        self.refused = refused
        self.index = index
        self.details = details if details is not None else {}


# Shown, and pickled by reference, under the package name users import
# them from (`encryption_applier.StorageError`), as before they moved here.
for _name in __all__:
    globals()[_name].__module__ = "encryption_applier"
del _name
