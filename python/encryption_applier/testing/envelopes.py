"""Envelopes for tests: nonces formed as elastickv's nonce factory forms
them, and real AES-256-GCM envelopes sealed with a replica's keystore.

elastickv's ``DeterministicNonceFactory`` (internal/encryption/
nonce_factory.go:10-19 for the layout, :56-58 for the pinning, :78-92 for
``Next``, at d9a031d0) issues ``node_id16 ‖ local_epoch ‖ write_count``,
big-endian, 2 + 2 + 8 bytes: the node's 16-bit id, the local epoch pinned
for this process load (bumped and fsynced at start), and a counter that
starts at 0 each load and is incremented before use, so the first nonce
of a load carries ``write_count=1``. `EnvelopeWriter` does the same, one
factory per purpose (the storage key's pinned epoch, the Raft key's); the
bytes come from `encryption_applier.Nonce`, and the sealing from
`Keystore.seal_storage`/`seal_raft` (Rust): nothing of AES-GCM is in
Python."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import _native

__all__ = ["EnvelopeWriter"]

_STORAGE, _RAFT = "storage", "raft"


@dataclass
class EnvelopeWriter:
    """The nonce factories of one node for one process load.

    ``storage_epoch`` and ``raft_epoch`` are the epochs the node pinned at
    start (``prepare_epochs``); each purpose has its own counter, from 1.
    A new load (a restart) needs a new writer with the newly bumped
    epochs: a writer kept across a restart without a bump is exactly the
    bug the nonce audit must catch.

    ```python
    storage_epoch, raft_epoch = ea.prepare_epochs(path / "keys.json")
    writer = EnvelopeWriter(node, storage_epoch=storage_epoch, raft_epoch=raft_epoch)
    env = writer.seal_storage(applier.keystore, key_id, b"value", user_key=b"k", commit_ts=7)
    ```
    """

    full_node_id: int
    storage_epoch: int = 0
    raft_epoch: int = 0
    _counts: dict[str, int] = field(default_factory=lambda: {_STORAGE: 0, _RAFT: 0}, repr=False)

    @property
    def node_id16(self) -> int:
        """The nonce prefix: ``full_node_id & 0xFFFF``."""
        return _native.node_id16(self.full_node_id)

    def next_nonce(self, purpose: str) -> _native.Nonce:
        """The next nonce of the ``purpose`` ("storage" or "raft") factory:
        ``(node_id16, pinned epoch, count + 1)``. ``OverflowError`` when
        the counter would pass 2**64 - 1 (Go's factory latches exhausted
        there, nonce_factory.go:79-86)."""
        if purpose not in self._counts:
            raise ValueError(f"purpose must be 'storage' or 'raft', not {purpose!r}")
        count = self._counts[purpose] + 1
        if count > 0xFFFF_FFFF_FFFF_FFFF:
            raise OverflowError(f"the {purpose} nonce counter of node 0x{self.full_node_id:x} is exhausted")
        self._counts[purpose] = count
        epoch = self.storage_epoch if purpose == _STORAGE else self.raft_epoch
        return _native.Nonce(self.node_id16, epoch, count)

    def seal_storage(
        self,
        keystore: _native.Keystore,
        key_id: int,
        value: bytes,
        *,
        user_key: bytes,
        commit_ts: int,
        expire_at: int = 0,
    ) -> _native.Envelope:
        """A storage value sealed with key ``key_id`` of ``keystore`` under
        the next storage nonce."""
        nonce = self.next_nonce(_STORAGE)
        return _native.test_support.seal_storage(keystore, key_id, nonce, value, user_key, commit_ts, expire_at)

    def seal_raft(self, keystore: _native.Keystore, key_id: int, entry: bytes) -> _native.Envelope:
        """A Raft entry sealed with key ``key_id`` of ``keystore`` under the
        next Raft nonce."""
        return _native.test_support.seal_raft(keystore, key_id, self.next_nonce(_RAFT), entry)
