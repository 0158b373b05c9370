#!/usr/bin/env bash
# The whole test suite: formatting and lints, the Rust core's tests, then
# the Python suite against a freshly built extension.
# Usage: bash scripts/test.sh [extra pytest args]
EA_EXTRAS="test docs release" source "$(dirname "$0")/setup.sh"

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
# From an empty directory, so the runtime module is the installed one.
stub_dir=$(mktemp -d "${TMPDIR:-/tmp}/ea-stubtest.XXXXXX")
(cd "$stub_dir" && python -m mypy.stubtest encryption_applier._native)
rm -rf "$stub_dir"
python -m mypy

echo "==> wheel: manylinux2014 release build (zig), auditwheel, twine, then installed into a fresh venv and smoke-tested"
rm -rf dist
quietly maturin build --release --zig --compatibility manylinux2014 --out dist
quietly maturin sdist --out dist
arch=$(uname -m)
wheel=$(ls "dist/encryption_applier-"*"-cp311-abi3-manylinux2014_${arch}.manylinux_2_17_${arch}.whl")
audit=$(auditwheel show "$wheel" | tr -s ' \n' ' ')
if [[ "$audit" != *"consistent with the following platform tag: \"manylinux_2_17_${arch}\""* ]]; then
    echo "error: auditwheel does not confirm manylinux_2_17 (manylinux2014): $audit" >&2
    exit 1
fi
quietly twine check --strict dist/*
scratch=$(mktemp -d "${TMPDIR:-/tmp}/ea-wheel.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
python -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-index "$wheel"
(cd "$scratch" && "$scratch/venv/bin/python" "$repo_root/tests/smoke_wheel.py")

echo "==> documentation site: mkdocs build --strict (a warning, a broken link or an undocumented name fails)"
# docs/spec.md is the contract, SPEC.md, under a two-line note. Where the
# shared SPEC.md sits beside the repository (as where this project is
# developed), the copy must be exact.
spec="$repo_root/../shared/SPEC.md"
if [ -f "$spec" ] && ! tail -n +3 docs/spec.md | cmp -s - "$spec"; then
    echo "error: docs/spec.md (after its first two lines) differs from $spec" >&2
    exit 1
fi
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet --site-dir "$scratch/site"

echo "==> benchmark script, quick sizes (keeps bench/ runnable; figures go to a scratch file)"
"$scratch/venv/bin/python" -m pip install --quiet --disable-pip-version-check "lmdb>=1.4"
cargo build --release --quiet --example raw_lmdb
"$scratch/venv/bin/python" bench/run.py --quick --raw target/release/examples/raw_lmdb --output "$scratch/bench.json" > "$scratch/bench.txt"
grep -q "columns" "$scratch/bench.txt"
