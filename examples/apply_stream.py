"""Apply a short stream of encryption entries to a fresh registry.

The stream is what a three-node cluster's Raft log could carry: each node
registers as a writer under DEK 1, restarts advance their local epochs, a
Raft replay repeats an entry, and then two entries that must halt the
replica arrive: a local-epoch rollback and a node-id collision. A bootstrap
follows, which halts because this applier has no KEK.

Then the same cluster with a KEK: a bootstrap installs the first storage
and raft DEKs (wrapped under a freshly generated KEK), a rotation replaces
the storage DEK, and the sidecar and keystore are shown.

Run it with `bash scripts/demo.sh` (or `python examples/apply_stream.py`
once the package is installed). The registries are made in temporary
directories and removed when it ends; `python examples/apply_stream.py DIR`
makes them in DIR (which must not exist) and keeps them, to look at with
the command line afterwards (`encryption-applier inspect DIR/registry`).
"""

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import encryption_applier as ea

NODE_A = 0x0000_00A1_0000_0001
NODE_B = 0x0000_00B2_0000_0002
NODE_C = 0x0000_00C3_0000_0003
INTRUDER = 0x0000_0FFF_0000_0002  # same low 16 bits as NODE_B


def stream() -> list[bytes]:
    """The entries as their wire bytes: opcode ‖ payload."""
    reg = ea.Registration
    return [
        reg(dek_id=1, full_node_id=NODE_A, local_epoch=1).to_entry(),
        reg(dek_id=1, full_node_id=NODE_B, local_epoch=1).to_entry(),
        reg(dek_id=1, full_node_id=NODE_C, local_epoch=1).to_entry(),
        reg(dek_id=1, full_node_id=NODE_A, local_epoch=2).to_entry(),  # A restarted
        reg(dek_id=1, full_node_id=NODE_A, local_epoch=2).to_entry(),  # Raft replay
        reg(dek_id=1, full_node_id=NODE_B, local_epoch=5).to_entry(),  # B restarted thrice
        reg(dek_id=1, full_node_id=NODE_B, local_epoch=4).to_entry(),  # rollback: halts
        reg(dek_id=1, full_node_id=INTRUDER, local_epoch=1).to_entry(),  # collision: halts
        ea.Bootstrap(2, b"", 3, b"", [reg(2, NODE_A, 1)]).to_entry(),  # no KEK: halts
    ]


@contextlib.contextmanager
def place(keep: Path | None, name: str) -> Iterator[Path]:
    """A directory for one part of the demo: ``keep / name``, kept, or a
    temporary one, removed when the part ends."""
    if keep is not None:
        (keep / name).mkdir(parents=True)
        yield keep / name
        return
    with tempfile.TemporaryDirectory(prefix=f"{name}-") as directory:
        yield Path(directory)


def main(keep: Path | None = None) -> None:
    if keep is not None and keep.exists():
        raise SystemExit(f"{keep}: already exists; give a new directory to keep the registries in")
    where = f"in {keep} (kept)" if keep is not None else "in temporary directories, removed when the demo ends"
    print(f"registries: {where}\n")
    with place(keep, "registry") as directory:
        with ea.Applier(directory) as applier:
            for index, entry in enumerate(stream(), start=1):
                decoded = ea.decode_entry(entry)
                try:
                    outcome = applier.apply(entry)
                except ea.EncryptionApplyError as halt:
                    # A real replica stops applying here; the demo carries on
                    # to show each kind of halt.
                    print(f"{index:>2}  {entry.hex()}\n    {decoded!r}\n    HALT {type(halt).__name__}: {halt}")
                else:
                    print(f"{index:>2}  {entry.hex()}\n    {decoded!r}\n    -> {outcome}")

        # Reopen read-only: what was committed is on disk.
        with ea.Registry(directory) as registry:
            print(f"\n{len(registry)} rows, DEKs {registry.dek_ids()}:")
            for row in registry:
                print(f"  {row!r}")

    with place(keep, "keyed") as root:
        print("\nwith a KEK:")
        kek = ea.FileKek.generate(Path(root) / "kek")
        keyed_directory = Path(root) / "registry"
        with ea.Applier(keyed_directory, kek=kek) as applier:
            bootstrap = ea.Bootstrap(
                storage_dek_id=1,
                wrapped_storage=kek.wrap(os.urandom(32)),
                raft_dek_id=2,
                wrapped_raft=kek.wrap(os.urandom(32)),
                batch_registry=[ea.Registration(1, NODE_A, 1), ea.Registration(2, NODE_A, 1)],
            )
            rotation = ea.Rotation(3, ea.Purpose.STORAGE, kek.wrap(os.urandom(32)), ea.Registration(3, NODE_A, 2))
            print(f"  bootstrap -> {applier.apply(bootstrap.to_entry())}")
            print(f"  replay    -> {applier.apply(bootstrap.to_entry())}")
            print(f"  rotation  -> {applier.apply(rotation.to_entry())}")
            print(f"  {applier.sidecar!r}")
            keystore = applier.keystore
            assert keystore is not None
            for dek_id in keystore:
                print(f"  key {dek_id}: fingerprint {keystore.fingerprint(dek_id)}")
            for row in applier.registry:
                print(f"  {row!r}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
