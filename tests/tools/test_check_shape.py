"""scripts/check_shape.py, the lint stage's shape rules, on small fake
trees: a clean tree passes (with every near miss the rules must allow),
and each kind of violation added to it is reported, at its line, alone."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import REPO

SCRIPT = REPO / "scripts" / "check_shape.py"

# A tree every rule accepts, with the near misses each rule must let pass.
CLEAN = {
    # The one file that may name lmdb_sys.
    "src/store/ffi.rs": """
        //! Every lmdb_sys call as a small safe function.
        use lmdb_sys::MDB_env;

        pub fn env_flags(env: *mut MDB_env) -> u32 {
            let mut flags = 0;
            // SAFETY: a test fixture.
            unsafe { lmdb_sys::mdb_env_get_flags(env, &mut flags) };
            flags
        }
    """,
    "src/store/mod.rs": """
        //! Uses ffi.rs; a comment may say lmdb_sys::mdb_env_open, and so may
        /* a block comment: lmdb_sys::mdb_txn_begin, /* nested */ e.detail = format!("x") */
        pub fn describe(e: &StorageError) -> String {
            let text = "lmdb_sys::mdb_put and e.reason = format!(...) and cutover_index != 0";
            let raw = r#"lmdb_sys::x "quoted" cutover_index == 0"#;
            let c = '"';
            let lifetime: &'static str = "x";
            // Making an error with its message is fine; comparing one is too.
            let made = StorageError { detail: format!("{text}{raw}{c}{lifetime}"), reason: String::new() };
            if made.detail == format!("{}", e.detail) {
                return String::new();
            }
            made.detail
        }
    """,
    "src/sidecar/mod.rs": """
        impl Sidecar {
            /// Whether the Raft envelope has been cut over (0 = not yet).
            // shape: cutover accessor
            #[must_use]
            pub fn is_raft_cut_over(&self) -> bool {
                self.raft_envelope_cutover_index != 0
            }

            // shape: cutover accessor
            pub fn storage_cutover_index(&self) -> Option<u64> {
                (self.storage_envelope_cutover_index > 0).then_some(self.storage_envelope_cutover_index)
            }
        }
    """,
    "src/rules.rs": """
        pub fn may_rotate(sidecar: &Sidecar, index: u64) -> bool {
            // Any other test of an index against 0, and the accessor, are fine.
            sidecar.is_raft_cut_over() || index != 0 || sidecar.raft_envelope_cutover_index >= 10
        }
    """,
    # Exactly at the limit.
    "examples/long.rs": "fn main() {}\n" + "// filler\n" * 699,
}

# (file, text added at its end, (line of the report in the added text, rule)).
VIOLATIONS = {
    "ffi": ("src/store/txn.rs", "pub fn f() { unsafe { lmdb_sys::mdb_txn_abort(t) } }\n", (1, "ffi")),
    "ffi-use": ("src/applier/mod.rs", "use lmdb_sys as raw;\n", (1, "ffi")),
    "length": ("examples/long.rs", "// one line too many\n", (701, "length")),
    "length-test": ("src/applier/tests.rs", "#[test]\nfn t() {}\n" * 351, (701, "length")),
    "message": (
        "src/applier/keys.rs",
        'fn f(mut e: KeyError) {\n    e.reason = format!(\n        "{}; undo failed", e.reason\n    );\n}\n',
        (2, "message"),
    ),
    "message-plus": ("src/applier/group.rs", 'fn f(s: &mut S) { s.detail += &format!("; {}", 1); }\n', (1, "message")),
    "message-append": ("src/store/txn.rs", 'fn f(e: &mut E) { e.detail.push_str("; more"); }\n', (1, "message")),
    "cutover": (
        "src/sidecar.rs",
        "fn cut(s: &Sidecar) -> bool {\n    s.raft_envelope_cutover_index != 0\n}\n",
        (2, "cutover"),
    ),
    "cutover-eq": (
        "src/applier/keys.rs",
        "fn g(n: &Sidecar) -> bool { n.storage_envelope_cutover_index == 0 }\n",
        (1, "cutover"),
    ),
    "cutover-gt": (
        "src/startup.rs",
        "fn k(s: &Sidecar) -> bool { s.storage_envelope_cutover_index > 0 }\n",
        (1, "cutover"),
    ),
    "cutover-reversed": (
        "src/rules.rs",
        "fn h(s: &Sidecar) -> bool { 0 < s.raft_envelope_cutover_index }\n",
        (1, "cutover"),
    ),
    # The accessor's name without the mark, or the mark outside the sidecar.
    "cutover-unmarked": (
        "src/sidecar/json.rs",
        "pub fn is_raft_cut_over(s: &Sidecar) -> bool {\n    s.raft_envelope_cutover_index != 0\n}\n",
        (2, "cutover"),
    ),
    "cutover-mark-not-directly-above": (
        "src/sidecar/mod.rs",
        "// shape: cutover accessor\npub fn is_x_cut_over(s: &S) -> bool { true }\n\n"
        "pub fn is_raft_cut_over(s: &Sidecar) -> bool {\n    s.raft_envelope_cutover_index != 0\n}\n",
        (5, "cutover"),
    ),
    "cutover-mark-elsewhere": (
        "src/view.rs",
        "// shape: cutover accessor\npub fn is_raft_cut_over(s: &Sidecar) -> bool {\n"
        "    s.raft_envelope_cutover_index != 0\n}\n",
        (3, "cutover"),
    ),
}


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n") if text.startswith("\n") else text)


def check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(root)], capture_output=True, text=True, timeout=60
    )


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    write_tree(tmp_path, CLEAN)
    done = check(tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "check_shape: ok\n", "")


@pytest.mark.parametrize("kind", list(VIOLATIONS))
def test_each_violation_is_reported_alone_at_its_line(tmp_path: Path, kind: str) -> None:
    name, added, (line, rule) = VIOLATIONS[kind]
    write_tree(tmp_path, CLEAN)
    path = tmp_path / name
    before = path.read_text() if path.exists() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(before + added)
    if rule != "length":  # the line is within the added text; a length is reported at 701
        line += before.count("\n")
    done = check(tmp_path)
    assert done.returncode == 1, done
    reported = done.stdout.splitlines()
    assert len(reported) == 2 and reported[0].startswith(f"{name}:{line}: {rule}: "), reported
    assert reported[1].startswith(f"check_shape: 1 problem(s) ({rule})"), reported


def test_a_tree_without_src_is_a_usage_error(tmp_path: Path) -> None:
    done = check(tmp_path)
    assert done.returncode == 2 and "no src/ directory" in done.stderr


def test_a_benchmark_floor_may_call_lmdb_raw_and_no_other_example(tmp_path: Path) -> None:
    write_tree(tmp_path, CLEAN)
    raw = "fn main() { let _ = lmdb_sys::MDB_SET_KEY; }\n"
    write_tree(tmp_path, {"examples/batch_floor.rs": raw})
    assert check(tmp_path).returncode == 0
    write_tree(tmp_path, {"examples/other.rs": raw})
    done = check(tmp_path)
    assert done.returncode == 1 and done.stdout.startswith("examples/other.rs:1: ffi: "), done
