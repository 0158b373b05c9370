"""The command line, run as a user would: the console script and
`python -m encryption_applier`, in child processes."""

import csv
import hashlib
import io
import json
import os
import pty
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import encryption_applier as ea

A, B = 0xABCD_0001, 0x1234_0002
SCRIPT = shutil.which("encryption-applier", path=str(Path(sys.executable).parent))


def cli(*args: str, module: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "encryption_applier"] if module or SCRIPT is None else [SCRIPT]
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, timeout=120)


def write_entries(path: Path, entries: list[bytes], comments: bool = False) -> Path:
    lines = [e.hex() for e in entries]
    if comments:
        lines = ["# a log of entries", "", *(f"{line}  # entry {i}" for i, line in enumerate(lines))]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_console_script_is_installed() -> None:
    assert SCRIPT is not None


def commands() -> list[str]:
    """Every subcommand the parser defines, so a new one is never missed."""
    import argparse

    from encryption_applier.cli import build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(sub.choices)


@pytest.mark.parametrize("command", [[], *([c] for c in commands())])
def test_help_for_every_command(command: list[str]) -> None:
    proc = cli(*command, "--help")
    assert proc.returncode == 0
    assert "usage: encryption-applier" in proc.stdout
    if command:
        assert command[0] in proc.stdout


def test_apply_then_inspect_digest_export(tmp_path: Path) -> None:
    directory = tmp_path / "reg"
    entries = [
        ea.Registration(1, A, 1).to_entry(),
        ea.Registration(1, A, 2).to_entry(),
        ea.Registration(2, B, 1).to_entry(),
    ]
    proc = cli("apply", directory, write_entries(tmp_path / "log.hex", entries, comments=True))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"applied 3 entries to {directory}: advanced 1, inserted 2"

    proc = cli("inspect", directory, module=True)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    # SPEC §5's column names, as export and diff use them.
    assert lines[0].split() == [
        "dek_id",
        "node_id16",
        "full_node_id",
        "first_seen_local_epoch",
        "last_seen_local_epoch",
    ]
    assert lines[1].split() == ["1", "0x0001", "0x00000000abcd0001", "1", "2"]
    assert lines[-1] == "2 rows; 2 DEKs: 1, 2"
    assert (
        cli("inspect", directory, "--dek-id", "2").stdout.splitlines()[-1]
        == "1 row under dek_id 2; the registry has 2 DEKs: 1, 2"
    )

    # Pinned: what the three entries must leave, in key order.
    rows = [
        {"dek_id": 1, "node_id16": 1, "full_node_id": A, "first_seen_local_epoch": 1, "last_seen_local_epoch": 2},
        {"dek_id": 2, "node_id16": 2, "full_node_id": B, "first_seen_local_epoch": 1, "last_seen_local_epoch": 1},
    ]
    raw = b"".join(
        ea.registry_key(r["dek_id"], r["node_id16"])
        + ea.encode_registry_value(r["full_node_id"], r["first_seen_local_epoch"], r["last_seen_local_epoch"])
        for r in rows
    )
    assert cli("digest", directory).stdout.strip() == hashlib.sha256(raw).hexdigest()

    # Node ids as inspect shows them (fixed-width hex), in CSV and JSON alike.
    shown = [r | {"node_id16": f"0x{r['node_id16']:04x}", "full_node_id": f"0x{r['full_node_id']:016x}"} for r in rows]
    exported = cli("export", directory, "--format", "csv").stdout
    assert list(csv.DictReader(io.StringIO(exported))) == [{k: str(v) for k, v in r.items()} for r in shown]
    out = tmp_path / "rows.json"
    assert cli("export", directory, "--format", "json", "-o", out).returncode == 0
    assert json.loads(out.read_text()) == shown
    table = cli("inspect", directory).stdout
    assert all(r["full_node_id"] in table and r["node_id16"] in table for r in shown)


def test_json_export_keeps_64_bit_ids_exact(tmp_path: Path) -> None:
    directory = tmp_path / "reg"
    big = 0xFFFF_FFFF_FFFF_0001
    with ea.Applier(directory) as applier:
        applier.apply(ea.Registration(1, big, 1))
    doc = json.loads(cli("export", directory, "--format", "json").stdout)
    # parsed as a double (as jq or JavaScript would), a number would change
    assert float(big) != big
    assert int(doc[0]["full_node_id"], 16) == big and isinstance(doc[0]["full_node_id"], str)


def test_apply_halt_reports_line_and_keeps_earlier_lines(tmp_path: Path) -> None:
    directory = tmp_path / "reg"
    entries = [
        ea.Registration(1, A, 5).to_entry(),
        ea.Registration(1, B, 1).to_entry(),
        ea.Registration(1, A, 4).to_entry(),  # rollback: line 3
        ea.Registration(1, B, 2).to_entry(),  # never applied
    ]
    proc = cli("apply", directory, write_entries(tmp_path / "log.hex", entries))
    assert proc.returncode == 1
    # A halt goes to stderr, and only there.
    assert proc.stdout == ""
    assert "log.hex:3: HALT LocalEpochRollbackError:" in proc.stderr
    assert "dek_id=1 full_node_id=0xabcd0001 last_seen=5 incoming=4" in proc.stderr
    assert "2 entries before line 3 were applied" in proc.stderr
    with ea.Registry(directory) as registry:
        assert registry.rows() == [ea.RegistryRow(1, 1, A, 5, 5), ea.RegistryRow(1, 2, B, 1, 1)]


def test_apply_refuses_a_file_with_bad_hex_before_applying_anything(tmp_path: Path) -> None:
    log = tmp_path / "log.hex"
    log.write_text(ea.Registration(1, A, 1).to_entry().hex() + "\nnot-hex\n")
    proc = cli("apply", tmp_path / "reg", log)
    assert proc.returncode == 2
    assert "log.hex:2" in proc.stderr and "nothing was applied" in proc.stderr
    assert not (tmp_path / "reg").exists() or len(ea.Registry(tmp_path / "reg")) == 0


def test_apply_bootstrap_with_a_kek(tmp_path: Path) -> None:
    kek_path = tmp_path / "kek"
    kek = ea.FileKek.generate(kek_path)
    boot = ea.Bootstrap(1, kek.wrap(b"\x01" * 32), 2, kek.wrap(b"\x02" * 32), [ea.Registration(1, A, 1)])
    log = write_entries(tmp_path / "log.hex", [boot.to_entry()])
    proc = cli("apply", tmp_path / "reg", log)
    assert proc.returncode == 1 and "KEKNotConfiguredError" in proc.stderr
    proc = cli("apply", tmp_path / "reg", log, "--kek", kek_path)
    assert proc.returncode == 0 and "bootstrapped 1" in proc.stdout
    assert ea.read_sidecar(tmp_path / "reg" / "keys.json").active == {"storage": 1, "raft": 2}  # type: ignore[union-attr]


# Halts, hints and outcomes: the exact line the output must hold.
NO_INDEX_HINT = (
    "hint: this registry has no applied index (it was built without --first-index), so an entry it already holds "
    "is applied again when a log is replayed, and this one halts; if the file replays applied entries, apply only "
    "the ones after them, or build the registry with --first-index N (the Raft index of the first entry) so that "
    "a replay skips what is applied"
)
INDEX_HINT = (
    "hint: this registry's applied index is 2, but the file was applied without --first-index, so entries it "
    "already holds were applied again; if the file replays them, run the same command with --first-index N (the "
    "Raft index of the file's first entry): applied entries are then skipped"
)
SKIPPED_7 = (
    "skipped guard 7 ErrLocalEpochRollback: this node's full id was not given (give --full-node-id or --raft-id)"
)
OUTCOMES = [
    # (arguments, exit status, a whole line of stdout or stderr)
    # A replayed log on a registry without an applied index: the halt, then the hint.
    (
        ["apply", "{replayed}", "{replay}"],
        1,
        "{replay}:1: HALT LocalEpochRollbackError: local epoch rollback: dek_id=1 full_node_id=0xabcd0001 "
        "last_seen=2 incoming=1",
    ),
    (["apply", "{replayed}", "{replay}"], 1, NO_INDEX_HINT),
    (["apply", "{keyed}", "{keylog}", "--kek", "{kek}"], 1, NO_INDEX_HINT),
    (
        ["apply", "{keyed}", "{keylog}", "--kek", "{kek}"],
        1,
        "{keylog}:1: HALT AlreadyBootstrappedError: already "
        "bootstrapped — use rotation: active storage_dek_id=3 raft_dek_id=2, incoming storage_dek_id=1 raft_dek_id=2 "
        "(only an exact replay is accepted)",
    ),
    # ... on one with an applied index, applied without --first-index.
    (["apply", "{indexed}", "{replay}"], 1, INDEX_HINT),
    # With --first-index the replay is skipped.
    (["apply", "{indexed}", "{replay}", "--first-index", "1"], 0, "applied 2 entries to {indexed}: skipped 2"),
    # A halt in a new registry is the file's own: no hint.
    (["apply", "{fresh}", "{reversed}"], 1, "1 entry before line 2 was applied; nothing of line 2 was written."),
    (["apply", "{reg}", "{good}"], 0, "applied 1 entry to {reg}: inserted 1"),
    # A registry whose creation a power loss cut short: recreated only on request.
    (["apply", "{uncommitted}", "{good}", "--recreate-uncommitted"], 0, "applied 1 entry to {uncommitted}: inserted 1"),
    # Applying as a node records its epochs in keys.json; doctor then lets it start.
    (
        ["apply", "{keyed}", "{empty}", "--kek", "{kek}", "--full-node-id", "0xabcd0001"],
        0,
        "keys.json: local_epoch of key 3 0 -> 2 (node 0x00000000abcd0001's own row)",
    ),
    (["doctor", "{keyed}", "--kek", "{kek}"], 0, SKIPPED_7),
    (
        ["doctor", "{keyed}", "--kek", "{kek}", "--full-node-id", "0xabcd0001"],
        1,
        "REFUSED ErrLocalEpochRollback: sidecar local_epoch=0 < registry last_seen_local_epoch=2 "
        "(full_node_id=0xabcd0001 dek_id=3, before the start-up bump)",
    ),
    # inspect's footer: counts, and the DEK ids.
    (["inspect", "{reg}"], 0, "1 row; 1 DEK: 1"),
    (["inspect", "{keyed}"], 0, "2 rows; 2 DEKs: 1, 3"),
    (["inspect", "{many}"], 0, "1,000 rows; 1,000 DEKs: 1, 2, 3, … 1000"),
    (["inspect", "{many}", "--dek-id", "7"], 0, "1 row under dek_id 7; the registry has 1,000 DEKs: 1, 2, 3, … 1000"),
    # encode, decode.
    (
        ["encode", "registration", "--dek-id", "1", "--full-node-id", "0xabcd0001", "--local-epoch", "1"],
        0,
        "03010000000100000000abcd00010001  # registration dek_id=1 full_node_id=0x00000000abcd0001 local_epoch=1",
    ),
    (["decode", "{good}"], 0, "{good}:1: registration dek_id=1 full_node_id=0x0000000012340002 local_epoch=1"),
    (["decode", "--hex", "00"], 0, "--hex:1: not an encryption entry (opcode 0x00, 1 byte)"),
    (
        ["decode", "--hex", "0301"],
        1,
        "--hex:1: MALFORMED malformed registration payload: truncated at offset 1: dek_id needs 4 bytes, 0 left",
    ),
    (["kek", "generate", "{missing}"], 0, "wrote a new KEK to {missing} (mode 0600)"),
]
USAGE_ERRORS = [
    # (arguments, text the one line must contain; a line starting "error: " must be the whole line)
    (["inspect", "{missing}"], "RegistryOpenError"),
    (["inspect", "{reg}", "--dek-id", "-1"], "out of range for a DEK id"),
    (["inspect", "{reg}", "--dek-id", "4294967296"], "out of range for a DEK id"),
    (["inspect", "{reg}", "--dek-id", "x1"], "not a decimal or 0x-hex integer"),
    (["digest", "{missing}"], "RegistryOpenError"),
    (["diff", "{reg}", "{missing}"], "RegistryOpenError"),
    (["export", "{missing}", "--format", "csv"], "RegistryOpenError"),
    (["export", "{reg}", "--format", "xml"], "invalid choice"),
    (["verify", "{missing}"], "RegistryOpenError"),
    (["verify", "{reg}", "--max-problems", "0"], "out of range for a positive count"),
    (["doctor", "{missing}"], "no such directory"),
    (["doctor", "{reg}", "--engine-applied-index", "-5"], "out of range for a Raft index"),
    (["probe-node-id", "--full-node-id", "0x1" + "0" * 16], "out of range for a 64-bit"),
    (["probe-node-id", "--full-node-id", "-1"], "out of range for a 64-bit"),
    (["apply", "{reg}", "{missing}"], "cannot read"),
    (["apply", "{reg}", "{badhex}"], "not a hex-encoded entry"),
    (["apply", "{reg}", "{binary}"], "not a text file"),
    (["apply", "{reg}", "{badhex}", "--first-index", "-1"], "out of range for a Raft index"),
    (
        ["apply", "{reg}", "{good}", "--sidecar", "{reg}/keys.json"],
        "error: --sidecar needs --kek or --kek-factory: without a KEK the applier keeps no keys",
    ),
    (["apply", "{reg}", "{good}", "--kek", "{missing}"], "KEK"),
    (["apply", "{reg}", "{two}", "--first-index", str(2**64 - 1)], "past the largest Raft index"),
    (["probe-node-id", "--raft-id", "n1", "--storage-dek-id", "1"], "need(s) --registry"),
    (["probe-node-id", "--raft-id", "n1", "--registry", "{reg}", "--raft-dek-id", "2"], "--raft-dek-id needs"),
    (
        ["probe-node-id", "--raft-id", "n1", "--registry", "{reg}", "--sidecar", "{missing}", "--storage-dek-id", "1"],
        "either --sidecar or",
    ),
    (["probe-node-id", "--raft-id", ""], "--raft-id is empty"),
    (["probe-node-id", "--full-node-id", "1", "--registry", "{missing}", "--storage-dek-id", "1"], "RegistryOpenError"),
    (["probe-node-id", "--full-node-id", "1", "--registry", "{reg}", "--sidecar", "{binary}"], "SidecarError"),
    (["probe-node-id", "--full-node-id", "1", "--registry", "{reg}", "--sidecar", "{missing}"], "no such file"),
    (["doctor", "{binary}"], "not a directory"),
    (["apply", "{notreg}", "{good}"], "not a registry (no data.mdb) and not empty (readme.txt)"),
    (["apply", "{missing}/sub/reg", "{good}"], "does not exist (apply creates the last part only)"),
    (["apply", "{binary}", "{good}"], "not a directory"),
    (
        ["apply", "{reg}", "{good}", "--kek", "{kek}", "--sidecar", "{missing}/keys.json"],
        "its directory does not exist",
    ),
    (["apply", "{reg}", "{oddhex}"], "an odd number of hex digits (3)"),
    (["apply", "{reg}", "{prefixed}"], "a '0x' prefix at column 1"),
    (["export", "{reg}", "--format", "csv", "-o", "{reg}"], "Is a directory"),
    (["no-such-command"], "invalid choice"),
    ([], "required"),
    (
        ["apply", "{reg}", "{good}", "--full-node-id", "0xabcd0001"],
        "error: --full-node-id needs --kek or --kek-factory: the node's epochs are recorded in keys.json",
    ),
    (
        ["apply", "{reg}", "{good}", "--raft-id", "n1"],
        "error: --raft-id needs --kek or --kek-factory: the node's epochs are recorded in keys.json",
    ),
    (["apply", "{reg}", "{good}", "--raft-id", ""], "error: --raft-id is empty"),
    (["apply", "{uncommitted}", "{good}"], "UncommittedRegistryError"),
    (["apply", "{reg}", "{good}", "--kek", "{kek}", "--full-node-id", "0"], "error: --full-node-id 0 is no node's id"),
    (
        ["apply", "{reg}", "{good}", "--full-node-id", "1", "--raft-id", "n1"],
        "argument --raft-id: not allowed with argument --full-node-id",
    ),
    (["kek", "generate", "{kek}"], "error: KEKFileError: KEK file {kek}: already exists; refusing to overwrite a KEK"),
    (["kek", "generate", "{reg}"], "error: KEKFileError: KEK file {reg}: already exists; refusing to overwrite a KEK"),
    (["kek"], "the following arguments are required: ACTION"),
    (["encode", "registration", "--dek-id", "1", "--full-node-id", "1", "--local-epoch", "65536"], "out of range"),
    (["encode", "registration", "--dek-id", "1", "--full-node-id", "1"], "required: --local-epoch"),
    (
        ["encode", "bootstrap", "--storage-dek-id", "1", "--raft-dek-id", "2", "--writer", "1"],
        "error: a bootstrap needs --kek or --kek-factory: its new DEK is wrapped by the KEK",
    ),
    (
        ["encode", "bootstrap", "--kek", "{kek}", "--storage-dek-id", "1", "--raft-dek-id", "1", "--writer", "1"],
        "error: storage_dek_id and raft_dek_id are both 1; they must differ",
    ),
    (["encode", "bootstrap", "--kek", "{kek}", "--storage-dek-id", "1", "--raft-dek-id", "2"], "required: --writer"),
    (
        ["encode", "rotation", "--kek", "{kek}", "--dek-id", "3", "--purpose", "storage", "--proposer", "x"],
        "argument --proposer: 'x' is not a decimal or 0x-hex integer",
    ),
    (["encode", "json", "{binary}"], "not JSON"),
    (["encode", "json", "{missing}"], "cannot read"),
    (
        ["encode", "json", "{nope}"],
        'error: {nope}: entry 0: \'type\' must be "registration", "bootstrap", "rotation" or "other", not \'nope\'',
    ),
    (["decode"], "one of the arguments file --hex is required"),
    (["decode", "--hex", "zz"], "error: --hex: not a hex-encoded entry ('z' at column 1 is not a hex digit)"),
    (["decode", "{badhex}"], "nothing was decoded"),
]


def cli_places(tmp_path: Path) -> dict[str, Path]:
    """The registries and files the table's {placeholders} name."""
    with ea.Applier(tmp_path / "reg") as applier:
        applier.apply(ea.Registration(1, A, 1).to_entry())
    (tmp_path / "bad.hex").write_text(ea.Registration(1, B, 1).to_entry().hex() + "\nzz\n")
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "notreg").mkdir()
    (tmp_path / "notreg" / "readme.txt").write_text("not a registry")
    (tmp_path / "odd.hex").write_text("abc\n")
    (tmp_path / "prefixed.hex").write_text("0x" + ea.Registration(1, B, 1).to_entry().hex() + "\n")
    (tmp_path / "nope.json").write_text('{"type": "nope"}')
    (tmp_path / "empty.hex").write_text("# nothing\n")
    kek = ea.FileKek.generate(tmp_path / "kek")
    replay = write_entries(tmp_path / "replay.hex", [ea.Registration(1, A, n).to_entry() for n in (1, 2)])
    with ea.Applier(tmp_path / "replayed") as applier:  # no indexes
        applier.apply_many(ea.Registration(1, A, n) for n in (1, 2))
    with ea.Applier(tmp_path / "indexed") as applier:
        applier.apply_many([ea.Registration(1, A, n) for n in (1, 2)], first_index=1)
    # A keyed registry built without indexes: a bootstrap, then a rotation proposed by A at epoch 2.
    boot = ea.Bootstrap(1, kek.wrap(b"\x01" * 32), 2, kek.wrap(b"\x02" * 32), [ea.Registration(1, A, 1)])
    rotation = ea.Rotation(3, ea.Purpose.STORAGE, kek.wrap(b"\x03" * 32), ea.Registration(3, A, 2))
    keylog = write_entries(tmp_path / "keylog.hex", [boot.to_entry(), rotation.to_entry()])
    with ea.Applier(tmp_path / "keyed", kek=kek) as applier:
        applier.apply_many([boot, rotation])
    with ea.Applier(tmp_path / "many") as applier:
        applier.apply_many(ea.Registration(d, A, 1) for d in range(1, 1001))
    (tmp_path / "uncommitted").mkdir(mode=0o700)
    (tmp_path / "uncommitted" / "data.mdb").write_bytes(bytes(8192))  # no meta page ever committed
    return {
        "uncommitted": tmp_path / "uncommitted",
        "many": tmp_path / "many",
        "reg": tmp_path / "reg",
        "missing": tmp_path / "missing",
        "badhex": tmp_path / "bad.hex",
        "binary": tmp_path / "binary",
        "good": write_entries(tmp_path / "good.hex", [ea.Registration(1, B, 1).to_entry()]),
        "notreg": tmp_path / "notreg",
        "kek": tmp_path / "kek",
        "oddhex": tmp_path / "odd.hex",
        "prefixed": tmp_path / "prefixed.hex",
        "two": write_entries(tmp_path / "two.hex", [ea.Registration(1, B, n).to_entry() for n in (1, 2)]),
        "nope": tmp_path / "nope.json",
        "empty": tmp_path / "empty.hex",
        "replay": replay,
        "replayed": tmp_path / "replayed",
        "indexed": tmp_path / "indexed",
        "keyed": tmp_path / "keyed",
        "keylog": keylog,
        "fresh": tmp_path / "fresh",
        "reversed": write_entries(tmp_path / "reversed.hex", [ea.Registration(1, A, n).to_entry() for n in (2, 1)]),
    }


def case_id(value: object) -> str:
    return " ".join(value) if isinstance(value, list) else ""


@pytest.mark.parametrize(("args", "code", "expected"), OUTCOMES, ids=case_id)
def test_outcomes_exit_status_and_exact_line(tmp_path: Path, args: list[str], code: int, expected: str) -> None:
    places = cli_places(tmp_path)
    proc = cli(*(a.format(**places) for a in args))
    assert proc.returncode == code, proc
    lines = proc.stdout.splitlines() + proc.stderr.splitlines()
    assert expected.format(**places) in lines, lines
    assert "Traceback" not in proc.stderr
    # A hint is given only where the table expects one.
    hints = [line for line in lines if line.startswith("hint:")]
    assert hints == [e for a, _, e in OUTCOMES if a == args and e.startswith("hint:")], hints


@pytest.mark.parametrize(("args", "expected"), USAGE_ERRORS, ids=case_id)
def test_usage_errors_exit_2_with_one_line_and_no_traceback(tmp_path: Path, args: list[str], expected: str) -> None:
    places = cli_places(tmp_path)
    before = ea.Registry(tmp_path / "reg").digest()
    proc = cli(*(a.format(**places) for a in args))
    assert proc.returncode == 2, proc
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    expected = expected.format(**places)
    assert (lines[0] == expected) if expected.startswith("error: ") else (expected in lines[0]), lines[0]
    # A usage error applies nothing and creates nothing.
    assert ea.Registry(tmp_path / "reg").digest() == before
    assert not (tmp_path / "missing").exists()
    assert sorted(p.name for p in (tmp_path / "notreg").iterdir()) == ["readme.txt"]


def test_a_corrupt_row_is_an_error_exit_2_not_a_halt_or_a_difference(tmp_path: Path) -> None:
    from helpers import plant_raw

    with ea.Applier(tmp_path / "reg") as applier:
        applier.apply(ea.Registration(1, A, 1).to_entry())
    plant_raw(tmp_path / "reg", ea.registry_key(2, 1), b"\x00" * 11)  # a value one byte short
    for args in (
        ["inspect", tmp_path / "reg"],
        ["digest", tmp_path / "reg"],
        ["diff", tmp_path / "reg", tmp_path / "reg"],
    ):
        proc = cli(*args)
        assert proc.returncode == 2, (args, proc)
        assert proc.stderr.startswith("error: RegistryCorruptionError:") and len(proc.stderr.splitlines()) == 1


def test_apply_with_standard_input_closed_is_a_usage_error(tmp_path: Path) -> None:
    command = [SCRIPT] if SCRIPT else [sys.executable, "-m", "encryption_applier"]
    # `apply DIR - <&-`: no standard input at all (sys.stdin is None).
    proc = subprocess.run(
        ["sh", "-c", '"$@" <&-', "sh", *command, "apply", str(tmp_path / "reg"), "-"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and proc.stderr == "error: standard input is closed; nothing was applied\n"


def test_main_reports_to_its_own_streams(tmp_path: Path) -> None:
    from encryption_applier import cli as cli_module

    out, err = io.StringIO(), io.StringIO()
    assert cli_module.main(["inspect"], out=out, err=err) == 2
    assert out.getvalue() == "" and err.getvalue().startswith("encryption-applier inspect: error: the following")
    assert cli_module.main(["--version"], out=io.StringIO(), err=io.StringIO()) == 0


def test_apply_reads_standard_input_for_dash(tmp_path: Path) -> None:
    entries = [ea.Registration(1, A, 1).to_entry(), ea.Registration(1, A, 3).to_entry()]
    command = [SCRIPT] if SCRIPT else [sys.executable, "-m", "encryption_applier"]
    text = "".join(e.hex() + "\n" for e in entries)
    proc = subprocess.run([*command, "apply", str(tmp_path / "reg"), "-"], input=text, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "applied 2 entries" in proc.stdout
    with ea.Registry(tmp_path / "reg") as registry:
        assert registry.rows() == [ea.RegistryRow(1, 1, A, 1, 3)]
    # A halt in standard input names it as <stdin>.
    bad = ea.Registration(1, A, 2).to_entry().hex() + "\n"
    proc = subprocess.run([*command, "apply", str(tmp_path / "reg"), "-"], input=bad, capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.startswith("<stdin>:1: HALT LocalEpochRollbackError"), proc.stderr


def test_inspect_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    with ea.Applier(tmp_path / "reg", sync=False) as applier:
        applier.apply_many([ea.Registration(1, 0x10000 + n, 1).to_entry() for n in range(1, 20_001)])
    command = [SCRIPT] if SCRIPT else [sys.executable, "-m", "encryption_applier"]
    # `encryption-applier inspect DIR | head -1`: the reader leaves after one line.
    child = subprocess.Popen(
        [*command, "inspect", str(tmp_path / "reg")], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert child.stdout is not None and child.stderr is not None
    assert child.stdout.readline().split()[0] == b"dek_id"
    child.stdout.close()
    stderr = child.stderr.read()
    # The reader has what it wanted: a quiet end, exit 0.
    assert child.wait(timeout=60) == 0
    assert stderr == b""


def test_a_closed_pipe_never_turns_a_verdict_into_success(tmp_path: Path) -> None:
    """`doctor | true` or `apply ... 2>&1 | true`: the status is the
    command's answer, so a reader that left does not make it 0."""
    command = [SCRIPT] if SCRIPT else [sys.executable, "-m", "encryption_applier"]
    entries = tmp_path / "halt.txt"
    entries.write_text("ff00\n")  # an unknown encryption opcode: a halt at line 1
    for args, stream in (
        (["doctor", str(tmp_path)], "stdout"),  # encryption on, no KEK: refused
        (["apply", str(tmp_path / "reg"), str(entries)], "stderr"),
        (["decode", "--hex", "0300"], "stdout"),
    ):
        read, write = os.pipe()
        os.close(read)  # the reader is gone before the command writes
        pipes = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, stream: write}
        done = subprocess.run([*command, *args], timeout=60, **pipes)  # type: ignore[call-overload]
        os.close(write)
        assert done.returncode == 141, (args, done.returncode)


def test_the_files_encode_and_export_write_are_owner_only(tmp_path: Path) -> None:
    with ea.Applier(tmp_path / "reg") as applier:
        applier.apply(ea.Registration(1, A, 1), index=1)
    old = os.umask(0)
    try:
        entries, rows = tmp_path / "entries.txt", tmp_path / "rows.csv"
        encoded = cli(
            "encode",
            "registration",
            "--dek-id",
            "1",
            "--full-node-id",
            hex(A),
            "--local-epoch",
            "1",
            "-o",
            str(entries),
        )
        assert encoded.returncode == 0, encoded.stderr
        assert cli("export", str(tmp_path / "reg"), "--format", "csv", "-o", str(rows)).returncode == 0
    finally:
        os.umask(old)
    assert {oct(p.stat().st_mode & 0o777) for p in (entries, rows)} == {"0o600"}


@pytest.mark.parametrize("command", ["doctor", "apply"])
@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [("--raft-id", "", "--raft-id is empty"), ("--full-node-id", "0", "--full-node-id 0 is no node's id")],
)
def test_an_empty_node_is_refused_not_read_as_not_given(
    tmp_path: Path, command: str, flag: str, value: str, message: str
) -> None:
    # `--raft-id "$RAFT_ID"` with the variable unset must not skip guard 7.
    (tmp_path / "entries.txt").write_text("")
    registry = tmp_path / "registry"
    args = [command, str(registry)] + ([str(tmp_path / "entries.txt")] if command == "apply" else [])
    if command == "doctor":
        registry.mkdir()
    done = cli(*args, flag, value)
    assert (done.returncode, done.stderr) == (2, f"error: {message}\n"), done


def test_diff_shows_rows_like_diff_and_exits_1_when_different(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    with ea.Applier(a) as x, ea.Applier(b) as y:
        for applier in (x, y):
            applier.apply(ea.Registration(1, A, 1).to_entry())
        assert cli("diff", a, b).returncode == 0
        x.apply(ea.Registration(2, A, 1).to_entry())  # only in A
        y.apply(ea.Registration(3, B, 4).to_entry())  # only in B
        y.apply(ea.Registration(1, A, 2).to_entry())  # changed
    proc = cli("diff", a, b)
    assert proc.returncode == 1 and proc.stderr == ""
    row_a = "dek_id=1 node_id16=0x0001 full_node_id=0x00000000abcd0001 first_seen_local_epoch=1 last_seen_local_epoch=1"
    assert proc.stdout.splitlines() == [
        "< " + row_a,
        "> " + row_a.replace("last_seen_local_epoch=1", "last_seen_local_epoch=2"),
        "< dek_id=2 node_id16=0x0001 full_node_id=0x00000000abcd0001 first_seen_local_epoch=1 last_seen_local_epoch=1",
        "> dek_id=3 node_id16=0x0002 full_node_id=0x0000000012340002 first_seen_local_epoch=4 last_seen_local_epoch=4",
        "differ: 1 row(s) only in A, 1 only in B, 1 changed",
    ]
    doc = json.loads(cli("diff", a, b, "--json").stdout)
    assert doc["identical"] is False
    assert [r["dek_id"] for r in doc["only_in_a"]] == [2] and [r["dek_id"] for r in doc["only_in_b"]] == [3]
    assert doc["changed"][0]["a"]["last_seen_local_epoch"] == 1 and doc["changed"][0]["b"]["last_seen_local_epoch"] == 2
    same = cli("diff", a, a)
    assert same.returncode == 0 and same.stdout.startswith("identical: digest ")
    assert same.stdout.split()[-1] == ea.Registry(a).digest()


def test_export_to_dash_writes_standard_output(tmp_path: Path) -> None:
    with ea.Applier(tmp_path / "reg") as applier:
        applier.apply(ea.Registration(1, A, 1).to_entry())
    proc = cli("export", tmp_path / "reg", "--format", "csv", "-o", "-")
    assert proc.returncode == 0 and proc.stdout.splitlines()[1].startswith("1,0x0001,0x00000000abcd0001")
    assert not (Path.cwd() / "-").exists()


def test_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    entries = [ea.Registration(1, 0x10000 + n, 1).to_entry() for n in range(1, 301)]
    log = write_entries(tmp_path / "log.hex", entries)
    piped = cli("apply", tmp_path / "piped", log, "--progress-threshold", "100")
    assert piped.returncode == 0 and "entries" not in piped.stderr and "[" not in piped.stderr

    # Under a pseudo-terminal the bar is drawn on stderr (same terminal).
    command = [SCRIPT or sys.executable, "apply", str(tmp_path / "tty"), str(log), "--progress-threshold", "100"]
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execv(command[0], command)
    output = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    text = output.decode()
    assert os.WEXITSTATUS(status) == 0, text
    assert "300/300 entries" in text and "[" + "#" * 30 + "]" in text
    assert "applied 300 entries" in text


def test_apply_in_chunks_reports_the_right_line_and_replays_with_indexes(tmp_path: Path) -> None:
    regs = [ea.Registration(1, 0x10000 + n, 1) for n in range(2500)]
    regs.append(ea.Registration(1, 0xFFFF_0000 + 7, 1))  # collides with node 7: entry 2500
    log = write_entries(tmp_path / "log.hex", [r.to_entry() for r in regs], comments=True)
    directory = tmp_path / "reg"
    proc = cli("apply", directory, log, "--first-index", "100")
    assert proc.returncode == 1
    # Comment lines: 2 header lines, so entry i is on line i + 3.
    assert f"log.hex:{2500 + 3}: HALT NodeIDCollisionError" in proc.stderr
    assert "2500 entries before line 2503 were applied" in proc.stderr
    with ea.Registry(directory) as registry:
        assert len(registry) == 2500 and registry.applied_index == 100 + 2499
    # Replaying the whole file skips what was applied and halts at the same entry.
    proc = cli("apply", directory, log, "--first-index", "100")
    assert proc.returncode == 1 and "log.hex:2503: HALT NodeIDCollisionError" in proc.stderr
    ok = write_entries(tmp_path / "ok.hex", [r.to_entry() for r in regs[:2500]])
    proc = cli("apply", directory, ok, "--first-index", "100")
    assert proc.returncode == 0 and "skipped 2500" in proc.stdout


def test_apply_halt_without_a_position_names_the_lines_not_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An internal error (a caught panic) is a halt with no position: the CLI
    # must not pretend to know which line it was, or how many were applied.
    from encryption_applier import _native
    from encryption_applier import cli as cli_module

    class PanickingApplier:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def __enter__(self) -> "PanickingApplier":
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def apply_many(self, entries: object, first_index: object = None) -> list[str]:
            raise ea.EncryptionApplyError("internal error in encryption-applier (a bug; nothing was committed): x")

    monkeypatch.setattr(_native, "Applier", PanickingApplier)
    entries = [ea.Registration(1, A, 1).to_entry(), ea.Registration(1, A, 2).to_entry()]
    log = write_entries(tmp_path / "log.hex", entries)
    out, err = io.StringIO(), io.StringIO()
    assert cli_module.main(["apply", str(tmp_path / "reg"), str(log)], out=out, err=err) == 1
    text = err.getvalue()
    assert out.getvalue() == ""
    assert "log.hex:1-2: HALT EncryptionApplyError: internal error" in text, text
    assert "0 entries before line 1 were applied; lines 1-2 may be partly applied" in text, text


def test_verify_reports_sound_and_damaged_registries(tmp_path: Path) -> None:
    registry = tmp_path / "reg"
    with ea.Applier(registry) as applier:
        applier.apply_many([ea.Registration(1, i, 1) for i in range(1, 3000)])
    done = cli("verify", registry)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "ok", done
    assert "2999 entries" in done.stdout
    size = (registry / "data.mdb").stat().st_size
    os.truncate(registry / "data.mdb", size // 2)
    done = cli("verify", "--json", "--max-problems", "2", registry)
    assert done.returncode == 1, done
    report = json.loads(done.stdout)
    assert report["ok"] is False and [p["problem"] for p in report["problems"]] == ["truncated", "truncated"]
    assert report["path"] == str(registry.resolve())
    # Every other command refuses it with one line, exit 2, no traceback.
    done = cli("inspect", registry)
    assert done.returncode == 2 and "DamagedRegistryError" in done.stderr and "Traceback" not in done.stderr
    done = cli("verify", tmp_path / "missing")
    assert done.returncode == 2 and "RegistryOpenError" in done.stderr


# ------------------------------------------------------------ --kek-factory

KMS_MODULE = '''\
"""A KMS-shaped KEK for the CLI tests (AES-GCM, the key name as AAD)."""
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY = Path(__file__).with_name("kms.key")


class Kms:
    def __init__(self, key, name="cli-key", fail=False):
        self.identity = f"kms:{name}"
        self.name = name.encode()
        self.aead = AESGCM(key)
        self.fail = fail

    def wrap(self, dek):
        nonce = os.urandom(12)
        return b"KMS1" + nonce + self.aead.encrypt(nonce, dek, self.name)

    def unwrap(self, wrapped):
        if self.fail:
            raise ConnectionError("KMS endpoint unreachable")
        return self.aead.decrypt(wrapped[4:16], wrapped[16:], self.name)


def make_kek():
    return Kms(KEY.read_bytes())


def other_kek():
    return Kms(os.urandom(32), "other-key")


def failing_kek():
    return Kms(KEY.read_bytes(), fail=True)


def not_a_kek():
    return 3


def no_credentials():
    raise RuntimeError("no credentials")


class Namespace:
    make = staticmethod(make_kek)
'''


@pytest.fixture
def kms(tmp_path: Path) -> dict[str, str]:
    """A module `mykms` on PYTHONPATH, and the environment to run the CLI with."""
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "mykms.py").write_text(KMS_MODULE)
    (tmp_path / "mods" / "kms.key").write_bytes(os.urandom(32))
    return {**os.environ, "PYTHONPATH": str(tmp_path / "mods")}


def kms_cli(env: dict[str, str], *args: object) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "encryption_applier"] if SCRIPT is None else [SCRIPT]
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, timeout=120, env=env)


def kms_entries(tmp_path: Path, env: dict[str, str]) -> Path:
    """A bootstrap and a rotation wrapped by `mykms.make_kek()`, as a log file."""
    code = (
        "import sys, mykms, encryption_applier as ea\n"
        "k = mykms.make_kek()\n"
        "b = ea.Bootstrap(1, k.wrap(b'\\x01' * 32), 2, k.wrap(b'\\x02' * 32), [ea.Registration(1, 0xABCD0001, 1)])\n"
        "r = ea.Rotation(3, ea.Purpose.STORAGE, k.wrap(b'\\x03' * 32), ea.Registration(3, 0xABCD0001, 1))\n"
        "print(b.to_entry().hex()); print(r.to_entry().hex())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    log = tmp_path / "kms.hex"
    log.write_text(done.stdout)
    return log


def test_apply_and_doctor_with_a_kek_factory(tmp_path: Path, kms: dict[str, str]) -> None:
    log = kms_entries(tmp_path, kms)
    reg = tmp_path / "reg"
    done = kms_cli(kms, "apply", reg, log, "--kek-factory", "mykms:make_kek", "--first-index", 1)
    assert done.returncode == 0, done.stderr
    assert "bootstrapped 1, rotated 1" in done.stdout
    sidecar = ea.read_sidecar(reg / "keys.json")
    assert sidecar is not None and sidecar.active == {"storage": 3, "raft": 2}
    # A dotted name inside the module works too.
    done = kms_cli(kms, "doctor", reg, "--kek-factory", "mykms:Namespace.make")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "KEK kms:cli-key," in done.stdout and "ok: no startup guard refuses" in done.stdout
    # Another KMS key: ErrKEKMismatch, key 1 named, exit 1.
    done = kms_cli(kms, "doctor", reg, "--kek-factory", "mykms:other_kek")
    assert done.returncode == 1, done.stderr
    assert "REFUSED ErrKEKMismatch: the KEK cannot unwrap key_id=1" in done.stdout and "key_id=1" in done.stdout
    assert "kms:other-key" in done.stdout
    # A KMS that cannot be reached: a refusal at start-up, a halt on apply.
    done = kms_cli(kms, "doctor", reg, "--kek-factory", "mykms:failing_kek")
    assert done.returncode == 1 and "KMS endpoint unreachable" in done.stdout
    before = (reg / "keys.json").read_bytes()
    done = kms_cli(kms, "apply", reg, log, "--kek-factory", "mykms:failing_kek")
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "KEKUnwrapError" in done.stderr and "dek_id=1" in done.stderr
    assert (reg / "keys.json").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--kek", "{kek}", "--kek-factory", "mykms:make_kek"], "not allowed with argument"),
        (["--kek-factory", "mykms"], "expected MODULE:CALLABLE"),
        (["--kek-factory", ":make_kek"], "expected MODULE:CALLABLE"),
        (["--kek-factory", "nosuchmodule:make"], "cannot import nosuchmodule"),
        (["--kek-factory", "mykms:missing"], "mykms has no missing"),
        (["--kek-factory", "mykms:KEY"], "KEY is not callable"),
        (["--kek-factory", "mykms:no_credentials"], "no_credentials() raised RuntimeError: no credentials"),
        (["--kek-factory", "mykms:not_a_kek"], "kek must be a FileKek or a KEK object"),
    ],
)
@pytest.mark.parametrize("command", ["apply", "doctor"])
def test_kek_factory_usage_errors_exit_2_with_one_line(
    tmp_path: Path, kms: dict[str, str], command: str, args: list[str], expected: str
) -> None:
    ea.FileKek.generate(tmp_path / "kek")
    (tmp_path / "reg").mkdir()
    log = write_entries(tmp_path / "log.hex", [ea.Registration(1, A, 1).to_entry()])
    files = [log] if command == "apply" else []
    args = [a.replace("{kek}", str(tmp_path / "kek")) for a in args]
    done = kms_cli(kms, command, tmp_path / "reg", *files, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert expected in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stdout == ""


# ------------------------------------------------------------ making entries and KEKs


def test_a_keyed_registry_built_with_the_cli_as_node_x_passes_doctor(tmp_path: Path) -> None:
    """Issue 23: bootstrap, X's registrations and a rotation, every entry and
    the KEK made with the command line; applied as X, doctor lets X start."""
    x = "0xabcd0001"
    kek, log = tmp_path / "kek", tmp_path / "log.hex"
    steps = [
        ["kek", "generate", kek],
        ["encode", "bootstrap", "--kek", kek, "--storage-dek-id", "1", "--raft-dek-id", "2", "--writer", f"{x}:1"],
        ["encode", "registration", "--dek-id", "1", "--full-node-id", x, "--local-epoch", "2"],  # X restarted
        ["encode", "registration", "--dek-id", "1", "--full-node-id", x, "--local-epoch", "3"],  # and again
        ["encode", "rotation", "--kek", kek, "--dek-id", "3", "--purpose", "storage", "--proposer", f"{x}:3"],
    ]
    for step in steps:
        done = cli(*step, *(["-o", log] if step[0] == "encode" else []))
        assert done.returncode == 0, done
    assert len(log.read_text().splitlines()) == 4
    as_x = tmp_path / "as-x"
    done = cli("apply", as_x, log, "--kek", kek, "--first-index", "1", "--full-node-id", x)
    assert done.returncode == 0, done
    assert done.stdout.splitlines() == [
        f"applied 4 entries to {as_x}: advanced 2, bootstrapped 1, rotated 1",
        "keys.json: local_epoch of key 1 0 -> 3 (node 0x00000000abcd0001's own row)",
        "keys.json: local_epoch of key 2 0 -> 1 (node 0x00000000abcd0001's own row)",
        "keys.json: local_epoch of key 3 0 -> 3 (node 0x00000000abcd0001's own row)",
    ]
    doctor = cli("doctor", as_x, "--kek", kek, "--full-node-id", x)
    assert doctor.returncode == 0, doctor
    assert "ok: no startup guard refuses" in doctor.stdout.splitlines()
    # Oracle: the sidecar's epoch for the active storage key is X's last_seen under it.
    sidecar = ea.read_sidecar(as_x / "keys.json")
    assert sidecar is not None and sidecar.active_storage == 3 and sidecar.keys[3].local_epoch == 3
    # Without saying which node it runs as, the same log leaves X refused (the report).
    anonymous = tmp_path / "anonymous"
    assert cli("apply", anonymous, log, "--kek", kek, "--first-index", "1").returncode == 0
    doctor = cli("doctor", anonymous, "--kek", kek, "--full-node-id", x)
    assert doctor.returncode == 1 and "REFUSED ErrLocalEpochRollback: sidecar local_epoch=0 <" in doctor.stdout


def test_decode_json_then_encode_json_gives_the_same_bytes(tmp_path: Path) -> None:
    kek = ea.FileKek.generate(tmp_path / "kek")
    entries = [
        ea.Bootstrap(1, kek.wrap(b"\x01" * 32), 2, kek.wrap(b"\x02" * 32), [ea.Registration(1, A, 1)]).to_entry(),
        ea.Registration(0x01020304, 0x05060708090A0B0C, 0x0D0E).to_entry(),
        ea.Rotation(3, ea.Purpose.RAFT, kek.wrap(b"\x03" * 32), ea.Registration(3, B, 2)).to_entry(),
        ea.Rotation(
            3, ea.Purpose.STORAGE, b"", ea.Registration(3, B, 2), sub_tag=ea.ENABLE_STORAGE_ENVELOPE
        ).to_entry(),
        b"\x00",
        # Empty wraps stay empty (they are not "left out": no new DEK is made).
        ea.Bootstrap(1, b"", 2, b"", []).to_entry(),
    ]
    log = write_entries(tmp_path / "log.hex", entries, comments=True)
    decoded = cli("decode", log, "--json")
    assert decoded.returncode == 0, decoded
    docs = json.loads(decoded.stdout)
    # SPEC §2's pinned registration, field by field.
    assert docs[1] == {
        "line": 4,
        "type": "registration",
        "dek_id": 0x01020304,
        "full_node_id": "0x05060708090a0b0c",
        "local_epoch": 0x0D0E,
    }
    assert docs[3]["sub_tag"] == "enable-storage-envelope" and docs[4] == {"line": 7, "type": "other", "entry": "00"}
    (tmp_path / "log.json").write_text(decoded.stdout)
    encoded = cli("encode", "json", tmp_path / "log.json")
    assert encoded.returncode == 0, encoded
    assert [bytes.fromhex(line.split("#")[0]) for line in encoded.stdout.splitlines()] == entries

    # What encode writes, apply reads: the file's lines are the entries.
    out = tmp_path / "again.hex"
    assert cli("encode", "json", tmp_path / "log.json", "-o", out).returncode == 0

    def shown(path: Path) -> list[str]:
        return [line.split(": ", 1)[1] for line in cli("decode", path).stdout.splitlines()]

    assert shown(out) == shown(log) and len(shown(out)) == 6


def test_encode_json_defaults_a_rotation_sub_tag_and_names_bad_fields(tmp_path: Path) -> None:
    kek = tmp_path / "kek"
    ea.FileKek.generate(kek)
    rotation = {
        "type": "rotation",
        "dek_id": 3,
        "purpose": "storage",
        "proposer_registration": {"dek_id": 3, "full_node_id": "0x1", "local_epoch": 1},
    }
    (tmp_path / "r.json").write_text(json.dumps(rotation))
    done = cli("encode", "json", tmp_path / "r.json", "--kek", kek)
    assert done.returncode == 0, done.stderr
    assert ea.decode_entry(bytes.fromhex(done.stdout.split("#")[0])).sub_tag == ea.ROTATE_DEK
    (tmp_path / "bad.json").write_text(json.dumps(rotation | {"purpose": ["storage"]}))
    done = cli("encode", "json", tmp_path / "bad.json", "--kek", kek)
    assert done.returncode == 2 and done.stderr.endswith("""entry 0: 'purpose' must be "storage" or "raft"\n"""), done


def test_kek_generate_is_owner_only_whatever_the_umask_and_never_overwrites(tmp_path: Path) -> None:
    command = [SCRIPT] if SCRIPT else [sys.executable, "-m", "encryption_applier"]
    path = tmp_path / "kek"
    done = subprocess.run(
        [*command, "kek", "generate", str(path)], capture_output=True, text=True, preexec_fn=lambda: os.umask(0)
    )
    assert done.returncode == 0, done
    assert done.stdout == f"wrote a new KEK to {path} (mode 0600)\n"
    assert (path.stat().st_mode & 0o777) == 0o600 and path.stat().st_size == 32
    ea.FileKek(path)  # loads: a KEK the package accepts
    first = path.read_bytes()
    again = subprocess.run([*command, "kek", "generate", str(path)], capture_output=True, text=True)
    assert again.returncode == 2 and "already exists; refusing to overwrite a KEK" in again.stderr
    assert path.read_bytes() == first
    # A symlink is not followed either.
    (tmp_path / "link").symlink_to(tmp_path / "target")
    linked = subprocess.run([*command, "kek", "generate", str(tmp_path / "link")], capture_output=True, text=True)
    assert linked.returncode == 2 and not (tmp_path / "target").exists()


# ------------------------------------------------------------ progress and interrupts


@pytest.mark.parametrize(
    "args",
    [["inspect"], ["export", "--format", "csv"], ["export", "--format", "json", "-o", "{out}"]],
    ids=lambda a: " ".join(a),
)
def test_inspect_and_export_progress_only_when_asked_or_on_a_terminal(tmp_path: Path, args: list[str]) -> None:
    with ea.Applier(tmp_path / "reg", sync=False) as applier:
        applier.apply_many(ea.Registration(1, 0x10000 + n, 1) for n in range(1, 10_001))
    args = [a.format(out=tmp_path / "rows.json") for a in args]
    piped = cli(args[0], tmp_path / "reg", *args[1:])
    assert piped.returncode == 0 and piped.stderr == ""  # a pipe gets no progress by default
    shown = cli(args[0], tmp_path / "reg", *args[1:], "--progress")
    assert shown.returncode == 0 and "10000/10000 rows" in shown.stderr
    assert shown.stdout == piped.stdout  # progress never goes to the output


def started_past_the_first_chunk(args: list[str]) -> tuple[subprocess.Popen[bytes], bytes]:
    """An `apply --progress` of 300000 entries, started and read until its
    bar shows a committed chunk (mid-run); returns it and what it printed."""
    import time

    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stderr is not None
    seen = b""
    deadline = time.monotonic() + 60
    while b"/300000 entries" not in seen and time.monotonic() < deadline:
        seen += child.stderr.read1(4096)
    return child, seen


@pytest.mark.parametrize("indexed", [True, False], ids=["with --first-index", "without"])
def test_ctrl_c_during_apply_says_how_far_it_got_and_rerunning_resumes(tmp_path: Path, indexed: bool) -> None:
    import signal

    entries = [ea.Registration(1 + n // 50_000, 0x10000 + n, 1).to_entry() for n in range(300_000)]
    log = write_entries(tmp_path / "log.hex", entries)
    command = [SCRIPT] if SCRIPT else [sys.executable, "-m", "encryption_applier"]
    args = [*command, "apply", str(tmp_path / "reg"), str(log), *(["--first-index", "10"] if indexed else [])]
    # Wait for the bar to move past the first chunk (mid-run), then press Ctrl-C.
    child, seen = started_past_the_first_chunk([*args, "--progress"])
    child.send_signal(signal.SIGINT)
    out, rest = child.communicate(timeout=60)
    err = (seen + rest).decode()
    assert child.returncode == 130, err
    (line,) = [x for x in err.replace("\r", "\n").splitlines() if x.startswith("interrupted:")]
    done = int(line.split()[1])
    assert 0 < done < 300_000 and done % 1000 == 0, line
    committed = f"interrupted: {done} of 300000 entries committed (through line {done}); "
    if indexed:
        assert line == committed + (
            f"applied index {10 + done - 1}; run the same command again to resume: the committed entries are skipped"
        )
    else:
        assert line == committed + (
            "no applied index is recorded without --first-index, so rerunning the same command would apply them "
            f"again: to resume, apply the entries after line {done}"
        )
    assert out == b""
    with ea.Registry(tmp_path / "reg") as registry:
        assert registry.applied_index == (10 + done - 1 if indexed else None) and len(registry) == done
    if indexed:
        again = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert again.stdout == (
            f"applied 300000 entries to {tmp_path / 'reg'}: inserted {300_000 - done}, skipped {done}\n"
        )


def test_a_second_ctrl_c_stops_at_once_and_still_says_how_far_it_got(tmp_path: Path) -> None:
    import signal

    entries = [ea.Registration(1 + n // 50_000, 0x10000 + n, 1).to_entry() for n in range(300_000)]
    log = write_entries(tmp_path / "log.hex", entries)
    command = [SCRIPT] if SCRIPT else [sys.executable, "-m", "encryption_applier"]
    args = [*command, "apply", str(tmp_path / "reg"), str(log), "--first-index", "10", "--progress"]
    child, seen = started_past_the_first_chunk(args)
    child.send_signal(signal.SIGINT)
    child.send_signal(signal.SIGINT)  # the second: at once
    _, rest = child.communicate(timeout=60)
    err = (seen + rest).decode()
    assert child.returncode == 130, err
    (line,) = [x for x in err.replace("\r", "\n").splitlines() if x.startswith("interrupted:")]
    done = int(line.split()[1])
    # The count comes from the registry's applied index: exact either way.
    with ea.Registry(tmp_path / "reg") as registry:
        assert registry.applied_index == 10 + done - 1 and len(registry) == done, line
    assert f"applied index {10 + done - 1}; run the same command again to resume" in line


def test_the_guides_example_runs_as_written(tmp_path: Path) -> None:
    """docs/guide/cli.md's "Making entries and KEKs" block, run by a shell
    in an empty directory: every command exits 0."""
    from helpers import REPO

    guide = (REPO / "docs" / "guide" / "cli.md").read_text()
    section = guide[guide.index("## Making entries and KEKs") :]
    block = section[section.index("```sh\n") + len("```sh\n") : section.index("\n```", section.index("```sh\n"))]
    assert block.startswith("encryption-applier kek generate kek\n"), block
    bin_dir = str(Path(SCRIPT).parent) if SCRIPT else str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    done = subprocess.run(
        ["bash", "-e", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "ok: no startup guard refuses" in done.stdout.splitlines()
    assert "3 rows; 3 DEKs: 1, 2, 3" in done.stdout.splitlines()
