"""Reverts each fix of issue 18 in turn, rebuilds the extension, runs the
tests that must catch it, and restores the source. Every fix must be
caught by its unit test (tests/robustness/test_fault_holes.py), and fixes 1-6 also by
the power-loss explorer on its own (tests/robustness/test_power_loss.py).

    .venv/bin/python scripts/check_reverts.py [--explorer] [name-part ...]

`--explorer` runs the explorer's tests instead of the unit tests. Each
fix costs one rebuild (maturin develop), so a full run takes minutes; it
is not part of the test command. Run it after changing the apply path or
the store.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name: ([(file, fixed text, reverted text)], unit tests (-k), explorer tests (-k) or None)
Edit = tuple[str, str, str]
REVERTS: dict[str, tuple[list[Edit], str, str | None]] = {
    "1 a lost group falls back": (
        [
            (
                "src/applier/group.rs",
                "                self.applied_index = self.durable_index;\n"
                "                if let Some(lost) = pending.index {",
                "                if let Some(lost) = None::<u64> {",
            )
        ],
        "lost_to_a_full_map or batch_after_a_lost or timer_commit",
        "lost_to_a_full_map_then_power_loss",
    ),
    "2 rows stay past the rename": (
        [("src/applier/keys.rs", "if staged.wrote() && !renamed {", "if staged.wrote() {")],
        "cutover_whose_directory",
        "failed_fsyncs_of_keys_json",
    ),
    "3 only the meta in use is checked": (
        [
            (
                "src/store/verify/mod.rs",
                "} else if let Err(p) = check_meta(&meta) {",
                "} else if let Err(p) = check_meta(&metas[0]).and(check_meta(&metas[1])) {",
            )
        ],
        "failed_meta_write",
        "failed_meta_write_then_power_loss",
    ),
    "3b an unusable environment is not handed out": (
        [("src/store/mod.rs", "        if env.is_fatal() {", "        if false && env.is_fatal() {")],
        "failed_meta_write",
        None,
    ),
    "4 the meta after a failed relaxed commit is durable": (
        [
            (
                "src/store/mod.rs",
                "let at_risk = relaxed && self.meta_at_risk.load(Relaxed);",
                "let at_risk = relaxed && false && self.meta_at_risk.load(Relaxed);",
            )
        ],
        "relaxed_mode",
        "failed_fsync_with_sync_false",
    ),
    "5 a sidecar past its rename is written again": (
        [("src/applier/keys.rs", "if write || keyring.unsynced {", "if write {")],
        "bootstrap_whose_directory or cutover_whose_directory",
        "failed_fsyncs_of_keys_json",
    ),
    "5b opening makes the sidecar durable": (
        [("src/applier/keyring.rs", "        keyring.make_durable()?;\n", "")],
        "opening_makes",
        None,
    ),
    "6 creation fsyncs its directories": (
        [
            (
                "src/store/dirs.rs",
                "crate::fsutil::sync_parent_dir(dir).map_err(",
                "Ok::<(), std::io::Error>(()).map_err(",
            ),
            ("src/store/open.rs", "crate::fsutil::sync_dir(dir).map_err(", "Ok::<(), std::io::Error>(()).map_err("),
        ],
        "creating_a_registry",
        "during_creation",
    ),
    "7 a dropped applier reports": (
        [
            (
                "src/bindings/applier.rs",
                "report_failed_final_commit(&report_path, &error);",
                "let _ = (&report_path, &error);",
            )
        ],
        "dropped_applier",
        None,
    ),
    "8 a creation no commit completed": (
        [
            (
                "src/store/open.rs",
                "            if verify::never_committed(&file)",
                "            if false && verify::never_committed(&file)",
            )
        ],
        "creation_cut_short",
        None,
    ),
    "9 index 0 is no index": (
        [("src/applier/mod.rs", "index.filter(|&i| i != NO_RAFT_INDEX)", "index")],
        "index_0 or cutover_at_index_0",
        None,
    ),
    "10 version 1 becomes 2": (
        [("src/sidecar/mod.rs", "    next.version = SIDECAR_VERSION;\n", "")],
        "version_1",
        None,
    ),
}


def build(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["maturin", "develop", "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True)


def main(argv: list[str]) -> int:
    explorer = "--explorer" in argv
    wanted = [a for a in argv if a != "--explorer"]
    venv = ROOT / ".venv"
    env = {**os.environ, "LIBLMDB_NO_PKG_CONFIG": "1", "VIRTUAL_ENV": str(venv)}
    env["PATH"] = f"{venv}/bin:{env['PATH']}"
    missed = []
    for name, (edits, unit, explored) in REVERTS.items():
        tests = explored if explorer else unit
        if tests is None or (wanted and not any(w in name for w in wanted)):
            continue
        fixed = {path: (ROOT / path).read_text() for path, _, _ in edits}
        reverted = dict(fixed)
        for path, old, new in edits:
            assert old in reverted[path], f"{name}: the fixed text is no longer in {path}: {old!r}"
            reverted[path] = reverted[path].replace(old, new)
        for path, text in reverted.items():
            (ROOT / path).write_text(text)
        try:
            built = build(env)
            if built.returncode:
                print(f"{name}: the reverted source does not build\n{built.stderr[-2000:]}", flush=True)
                missed.append(name)
                continue
            test_file = "tests/robustness/test_power_loss.py" if explorer else "tests/robustness/test_fault_holes.py"
            ran = subprocess.run(
                [str(venv / "bin/python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file, "-k", tests],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
            )
            last = ran.stdout.strip().splitlines()[-1] if ran.stdout.strip() else ran.stderr[-300:]
            caught = ran.returncode != 0
            print(f"{name}: {'caught' if caught else 'NOT CAUGHT'} ({last})", flush=True)
            if not caught:
                missed.append(name)
        finally:
            for path, text in fixed.items():
                (ROOT / path).write_text(text)
    restored = build(env)
    print("rebuilt from the fixed source" if restored.returncode == 0 else restored.stderr[-2000:], flush=True)
    print("every revert was caught" if not missed else f"not caught: {', '.join(missed)}")
    return 1 if missed or restored.returncode else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
