"""The KEK interface: what `Applier`, `diagnose_startup` and
`check_startup` accept as ``kek=``, besides a `FileKek`.

A KEK is any object with these three members; it need not inherit from
anything. `Kek` is a `typing.Protocol`, so a type checker can check one,
and ``isinstance(obj, Kek)`` checks that the members are there (a
`FileKek` is one). The rules of what a KEK must answer are checked in the
Rust core, not here.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Kek"]


@runtime_checkable
class Kek(Protocol):
    """A key-encryption key: wraps and unwraps 32-byte DEKs under a key held
    elsewhere (a KMS, an HSM, a vault, a file).

    - ``wrap(dek)`` gets 32 bytes and returns the wrapped bytes, in any
      layout the same KEK's ``unwrap`` reads back.
    - ``unwrap(wrapped)`` returns the 32-byte DEK. Raising any `Exception`
      means "cannot unwrap": an apply halts with `KEKUnwrapError` (the
      exception is its ``__cause__``) and writes nothing, a start-up check
      reports `KEKMismatchError`. A `KeyboardInterrupt` or `SystemExit` is
      raised as it is. An answer that is not 32 bytes is a `KEKUnwrapError`
      (``reason="dek_length"``) naming the key id.
    - ``identity`` is a short, non-secret name for messages (elastickv's
      ``Name()``: ``"file:<path>"`` for a `FileKek`, a KMS key's URI for a
      KMS). It is read once, when the KEK is given to the applier.

    Unwrapping must depend on the wrapped bytes alone: an `Applier` asks
    once per distinct wrapped key and keeps the DEK for its lifetime. The
    calls come from the thread that applies, with the GIL taken for the
    call; a KEK must not use the applier that is calling it (that raises
    `RuntimeError`, which halts the entry) nor wait for another thread
    that does.

    A KEK of your own (here a toy one that XORs; a real one calls a KMS):

    ```pycon
    >>> import os, tempfile
    >>> class XorKek:
    ...     identity = "xor:example"
    ...     def wrap(self, dek: bytes) -> bytes:
    ...         return bytes(b ^ 0x5A for b in dek)
    ...     def unwrap(self, wrapped: bytes) -> bytes:
    ...         return bytes(b ^ 0x5A for b in wrapped)
    >>> kek = XorKek()
    >>> isinstance(kek, ea.Kek)
    True
    >>> with tempfile.TemporaryDirectory() as d, ea.Applier(d, kek=kek) as a:
    ...     a.apply(ea.Bootstrap(1, kek.wrap(os.urandom(32)), 2, kek.wrap(os.urandom(32))))
    ...     a.keystore.ids()
    'bootstrapped'
    [1, 2]

    ```
    """

    @property
    def identity(self) -> str:
        """A short name of this KEK for messages and reprs (not secret)."""
        ...

    def wrap(self, dek: bytes, /) -> bytes:
        """The 32-byte ``dek``, wrapped."""
        ...

    def unwrap(self, wrapped: bytes, /) -> bytes:
        """The 32-byte DEK inside ``wrapped``; raises if it cannot be opened."""
        ...
