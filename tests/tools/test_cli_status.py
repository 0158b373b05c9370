"""`encryption-applier status`: elastickv's GetSidecarState report (and, with
--resync-for, a leader's ResyncSidecar response) on the command line, against
the Go answers of golden/go/status.json."""

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import encryption_applier as ea
from encryption_applier import cli

from helpers import plant_raw

GOLDEN = json.loads((Path(__file__).parents[1] / "core" / "golden" / "go" / "status.json").read_text())
CASES = {c["name"]: c for c in GOLDEN["cases"]}
ME = 0xCAFE_BABE_0000_1234


def extra(name: str, value: object) -> str:
    """A line of the extras block: names padded to 33 columns."""
    return f"  {name + ':':<33}{value}"


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main([str(a) for a in args], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def data_dir(tmp_path: Path, name: str) -> Path:
    """The case's registry and keys.json in one directory."""
    case = CASES[name]
    directory = tmp_path / "data"
    with ea.Applier(directory) as applier:
        for r in case["registry"]["rows"]:
            applier.apply_registration(ea.Registration(r["dek_id"], r["full_node_id"], r["first"]))
            if r["last"] != r["first"]:
                applier.apply_registration(ea.Registration(r["dek_id"], r["full_node_id"], r["last"]))
    for raw in case["registry"]["raw"]:
        plant_raw(directory, ea.registry_key(raw["dek_id"], raw["node_id16"]), bytes.fromhex(raw["value_hex"]))
    (directory / "keys.json").write_text(json.dumps(case["sidecar"]["doc"]))
    return directory


def test_text_starts_with_elastickv_admins_block(tmp_path: Path) -> None:
    directory = data_dir(tmp_path, "projects_the_callers_rows")
    code, out, err = run("status", directory, "--full-node-id", hex(ME))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    # cmd/elastickv-admin/encryption.go:266-296, then the projection.
    assert lines[:9] == [
        "sidecar_state:",
        "  active_storage_id:           10",
        "  active_raft_id:              11",
        "  storage_envelope_active:     false",
        "  raft_envelope_cutover_index: 0",
        "  latest_applied_index:        1",
        "  wrapped_dek_ids:             [10 11 12]",
        "  writer_registry_for_caller:  map[10:3 11:7]",
        "extras (this package; not in Go's GetSidecarState answer):",
    ]
    assert extra("caller_full_node_id", f"0x{ME:016x} (node_id16 0x1234)") in lines
    assert any(line.split()[:3] == ["12", "storage", "0"] for line in lines)  # key 12: not active
    code, bare, _ = run("status", directory, "--full-node-id", str(ME), "--no-extras")
    assert bare.splitlines() == lines[:8]


def test_json_is_gos_message_and_the_extras(tmp_path: Path) -> None:
    case = CASES["projects_the_callers_rows"]
    directory = data_dir(tmp_path, case["name"])
    code, out, _ = run("status", directory, "--full-node-id", str(ME), "--json", "--no-extras")
    assert code == 0 and json.loads(out) == case["get_sidecar_state"]["response"]
    code, out, _ = run("status", directory, "--full-node-id", str(ME), "--json")
    doc = json.loads(out)
    assert doc.pop("extras")["keys"]["12"]["purpose"] == "storage"
    assert doc == case["get_sidecar_state"]["response"]
    assert ea.SidecarStateReport.from_json(out) == ea.sidecar_state(directory, full_node_id=ME)


def test_resync_for_prints_the_leaders_response(tmp_path: Path) -> None:
    case = CASES["resync_for_another_caller"]
    directory = data_dir(tmp_path, case["name"])
    code, out, _ = run("status", directory, "--resync-for", str(case["caller_full_node_id"]), "--json", "--no-extras")
    assert code == 0 and json.loads(out) == case["resync_sidecar"]["response"]
    code, out, _ = run("status", directory, "--resync-for", hex(case["caller_full_node_id"]))
    lines = out.splitlines()
    assert lines[:6] == [
        "resync_sidecar_response:",
        "  active_storage_id:           5",
        "  active_raft_id:              4",
        "  leader_latest_applied_index: 120",
        "  wrapped_dek_ids:             [1 2 3 4 5]",
        "  writer_registry_for_caller:  map[4:1 5:2]",
    ]
    # Go's response has no envelope flags: the extras carry them.
    assert extra("storage_envelope_active", "true") in lines
    assert extra("raft_envelope_cutover_index", 100) in lines
    code, out, _ = run("status", directory, "--resync-for", "1", "--latest-applied-index", "77", "--json")
    assert json.loads(out)["leader_latest_applied_index"] == "77"


def test_raft_id_and_no_registry(tmp_path: Path) -> None:
    directory = data_dir(tmp_path, "projects_the_callers_rows")
    code, out, _ = run("status", directory, "--raft-id", "n1", "--json")
    assert code == 0 and json.loads(out)["extras"]["caller_full_node_id"] == str(ea.derive_node_id("n1"))
    # Without data.mdb there is no registry: the projection is empty.
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(directory / "keys.json", bare / "keys.json")
    code, out, _ = run("status", bare, "--full-node-id", str(ME))
    assert code == 0
    assert "  writer_registry_for_caller:  map[]" in out.splitlines()
    assert extra("registry", "none read") in out.splitlines()


def test_a_foreign_row_exits_1_and_names_the_ids(tmp_path: Path) -> None:
    directory = data_dir(tmp_path, "foreign_row_under_the_callers_prefix")
    (candidate,) = CASES["foreign_row_under_the_callers_prefix"]["get_sidecar_state"]["error"]["candidates"]
    code, out, err = run("status", directory, "--full-node-id", str(ME))
    assert (code, err) == (1, "")
    assert out.startswith("FOREIGN ROW (ForeignRegistryRowError): ")
    for part in ("dek_id=11", "node_id16=0x1234", f"0x{candidate['row_full_node_id']:x}", f"0x{ME:x}"):
        assert part in out
    code, out, _ = run("status", directory, "--resync-for", str(ME), "--json")
    assert code == 1
    error: dict[str, Any] = json.loads(out)["error"]
    assert error["type"] == "ForeignRegistryRowError"
    assert (error["dek_id"], error["node_id16"]) == (11, 0x1234)
    assert (int(error["row_full_node_id"]), int(error["caller_full_node_id"])) == (candidate["row_full_node_id"], ME)


@pytest.mark.parametrize(
    ("case", "args", "expected"),
    [
        ("projects_the_callers_rows", ["--resync-for", "0"], "caller_full_node_id must be non-zero"),
        (
            "projects_the_callers_rows",
            ["--sidecar", "{dir}/missing.json"],
            "--sidecar {dir}/missing.json: no such file",
        ),
        ("projects_the_callers_rows", ["--full-node-id", "1", "--resync-for", "1"], "not allowed with argument"),
        ("projects_the_callers_rows", ["--raft-id", ""], "--raft-id is empty"),
        ("stored_value_of_11_bytes", ["--full-node-id", str(ME)], "RegistryCorruptionError"),
        ("sidecar_version_3", [], "SidecarError"),
    ],
)
def test_errors_exit_2_with_one_line(tmp_path: Path, case: str, args: list[str], expected: str) -> None:
    directory = data_dir(tmp_path, case) if case != "sidecar_version_3" else tmp_path / "data"
    if case == "sidecar_version_3":
        directory.mkdir()
        (directory / "keys.json").write_text(json.dumps(CASES[case]["sidecar"]["doc"]))
    code, out, err = run("status", directory, *(a.format(dir=directory) for a in args))
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and expected.format(dir=directory) in err, err


def test_missing_directory_or_sidecar_exit_2(tmp_path: Path) -> None:
    code, _, err = run("status", tmp_path / "nope")
    assert code == 2 and "no such directory" in err
    code, _, err = run("status", tmp_path)
    assert code == 2 and "SidecarError" in err and "not bootstrapped" in err


def test_console_script_runs_status(tmp_path: Path) -> None:
    directory = data_dir(tmp_path, "projects_the_callers_rows")
    script = shutil.which("encryption-applier", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "encryption_applier"]
    proc = subprocess.run([*command, "status", str(directory), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--resync-for" in proc.stdout
    proc = subprocess.run([*command, "status", str(directory)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("sidecar_state:\n")
