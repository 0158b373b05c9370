#!/usr/bin/env bash
# Benchmark: builds the release wheel and the raw-LMDB Rust loop, installs
# the wheel and the py-lmdb baseline into .venv-bench, and runs
# bench/run.py, which prints a table and writes bench/results.json.
# Usage: bash bench/run.sh [--quick]
source "$(dirname "$0")/../scripts/setup.sh"

echo "==> release builds (wheel and the raw LMDB loop)"
rm -rf dist
maturin build --release --quiet --out dist
cargo build --release --quiet --example raw_lmdb --example batch_floor

bench_venv="$repo_root/.venv-bench"
[ -x "$bench_venv/bin/python" ] || python -m venv "$bench_venv"
"$bench_venv/bin/python" -m pip install --quiet --disable-pip-version-check "lmdb>=1.4" pandas
"$bench_venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall dist/encryption_applier-*.whl

echo "==> running"
"$bench_venv/bin/python" bench/run.py --raw "$repo_root/target/release/examples/raw_lmdb" \
    --batch-floor "$repo_root/target/release/examples/batch_floor" "$@"
