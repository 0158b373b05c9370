"""The package against Go's verdicts on the same inputs: the vectors in
golden/go/ are written by scripts/go_vectors/*.py from elastickv's source
at the commit each file names (see each script for how)."""

import json
from pathlib import Path
from typing import Any

import encryption_applier as ea

from helpers import WrapOracle, edit_sidecar

GOLDEN = Path(__file__).parent / "golden" / "go"


def vectors(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((GOLDEN / f"{name}.json").read_text())
    assert doc["elastickv_commit"] == "d9a031d0" and doc["cases"], name
    return doc


#: Go's verdict → what the package raises for it. Go's scanner errors
#: (raft's compacted range, and the panic on a range past the last entry)
#: have no sentinel; the package's own class stands for both.
GAP_VERDICTS = {
    "ok": None,
    "warn-skip": None,
    "ErrSidecarBehindRaftLog": ea.SidecarBehindRaftLogError,
    "scanner-error: ErrCompacted": ea.RaftLogGapUncoveredError,
    "scanner-error: ErrUnavailable": ea.RaftLogGapUncoveredError,
    "scanner-error: panic: entries' hi is out of bound lastindex": ea.RaftLogGapUncoveredError,
}


def test_the_gap_audit_gives_gos_verdict_on_every_vector(booted: Path, cluster: WrapOracle) -> None:
    kek = ea.FileKek(cluster.kek_path)
    seen = set()
    for case in vectors("startup_gap")["cases"]:
        edit_sidecar(booted, raft_applied_index=case["sidecar_raft_applied_index"])
        opcodes = case["log_opcodes"]
        refusals = ea.diagnose_startup(
            encryption_enabled=True,
            kek=kek,
            sidecar_path=booted / "keys.json",
            engine_applied_index=case["engine_applied_index"],
            log=None if opcodes is None else [b"" if op is None else bytes([op, 0x01]) for op in opcodes],
            log_first_index=case["log_first_index"],
        )
        expected = GAP_VERDICTS[case["go"]]
        assert [type(r) for r in refusals] == ([] if expected is None else [expected]), case
        seen.add(case["go"])
    assert {"ok", "ErrSidecarBehindRaftLog", "scanner-error: ErrCompacted"} <= seen
