#!/usr/bin/env bash
# The whole test suite: formatting and lints, the Rust core's tests, then
# the Python suite against a freshly built extension.
# Usage: bash scripts/test.sh [extra pytest args]
source "$(dirname "$0")/setup.sh"

echo "==> cargo fmt --check"
cargo fmt --check
echo "==> cargo clippy (core, and core + bindings)"
cargo clippy --quiet --all-targets -- -D warnings
cargo clippy --quiet --all-targets --features python -- -D warnings
echo "==> ruff (lint, then format check) on the Python sources, tests, bench and notebooks"
ruff check .
ruff format --check .
echo "==> cargo test"
cargo test --quiet
echo "==> pytest"
python -m pytest "$@"

echo "==> stubs: mypy.stubtest against the runtime module, mypy --strict on the package and examples"
(cd "$(mktemp -d)" && python -m mypy.stubtest encryption_applier._native)
python -m mypy

echo "==> wheel: release build, installed into a fresh venv, smoke-tested outside the tree"
rm -rf dist
maturin build --release --quiet --out dist
wheel=$(ls dist/encryption_applier-*-cp311-abi3-*.whl)
scratch=$(mktemp -d)
python -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-index "$wheel"
(cd "$scratch" && "$scratch/venv/bin/python" "$repo_root/tests/smoke_wheel.py")

echo "==> benchmark script, quick sizes (keeps bench/ runnable; figures go to a scratch file)"
"$scratch/venv/bin/python" -m pip install --quiet --disable-pip-version-check "lmdb>=1.4"
cargo build --release --quiet --example raw_lmdb
"$scratch/venv/bin/python" bench/run.py --quick --raw target/release/examples/raw_lmdb --output "$scratch/bench.json" > "$scratch/bench.txt"
grep -q "columns" "$scratch/bench.txt"
rm -rf "$scratch"
