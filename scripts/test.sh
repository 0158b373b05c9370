#!/usr/bin/env bash
# The test command, in stages: formatting, lints and the shape check; the
# Rust core's tests; the Python suite against a freshly built extension;
# the stubs; the release wheel and the benchmark script; the documentation
# site.
#
# Usage: bash scripts/test.sh [STAGE] [pytest args...]
#   STAGE: lint, rust, py, stubs, release, docs, or all (the default: every
#   stage, in that order). Arguments after it go to pytest:
#     bash scripts/test.sh py -m "not slow"   # the fast loop, about a minute
#     bash scripts/test.sh -k state_machine   # all stages, pytest gets -k
set -euo pipefail

STAGES=(lint rust py stubs release docs)
usage="usage: bash scripts/test.sh [lint|rust|py|stubs|release|docs|all] [pytest args...]"

stage=all
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then
    stage=$1
    shift
fi
if [ "$stage" = all ]; then
    run=("${STAGES[@]}")
elif [[ " ${STAGES[*]} " == *" $stage "* ]]; then
    run=("$stage")
else
    echo "error: unknown stage '$stage'; the stages are: ${STAGES[*]} all (default all)" >&2
    echo "$usage" >&2
    exit 2
fi
if [ $# -gt 0 ] && [[ " ${run[*]} " != *" py "* ]]; then
    echo "error: the arguments '$*' are for pytest, and stage $stage runs no pytest" >&2
    echo "$usage" >&2
    exit 2
fi

# What the chosen stages need in .venv: pyproject extras, and whether the
# extension must be built into it (maturin develop).
extras=()
develop=0
for s in "${run[@]}"; do
    case $s in
        lint) extras+=(test) ;;                   # ruff
        rust) ;;                                  # cargo only
        py | stubs) extras+=(test) develop=1 ;;   # pytest, mypy; they import the package
        release) extras+=(release) ;;             # zig, auditwheel, twine
        docs) extras+=(docs) develop=1 ;;         # mkdocstrings imports the package
    esac
done
EA_EXTRAS=$(printf '%s\n' "${extras[@]}" | awk 'NF && !seen[$0]++' | paste -sd ' ')
EA_DEVELOP=$develop
started=$SECONDS
source "$(dirname "$0")/setup.sh"

# Scratch directories of the stages, removed when the script ends:
# `scratch NAME` makes one and sets $dir to it.
scratch_dirs=()
trap 'rm -rf "${scratch_dirs[@]}"' EXIT
scratch() {
    dir=$(mktemp -d "${TMPDIR:-/tmp}/ea-$1.XXXXXX")
    scratch_dirs+=("$dir")
}

stage_lint() {
    echo "==> cargo fmt --check"
    cargo fmt --check
    echo "==> cargo clippy (core, and core + bindings)"
    cargo clippy --quiet --all-targets -- -D warnings
    cargo clippy --quiet --all-targets --features python -- -D warnings
    echo "==> ruff (lint, then format check) on the Python sources, tests, bench and notebooks"
    ruff check .
    ruff format --check .
    echo "==> shape of the Rust sources (scripts/check_shape.py)"
    python scripts/check_shape.py
}

stage_rust() {
    echo "==> cargo test"
    cargo test --quiet
}

stage_py() {
    echo "==> pytest${*:+ $*}"
    python -m pytest "$@"
}

stage_stubs() {
    echo "==> stubs: mypy.stubtest against the runtime module, mypy --strict on the package and examples"
    # From an empty directory, so the runtime module is the installed one.
    local dir
    scratch stubtest
    (cd "$dir" && python -m mypy.stubtest encryption_applier._native)
    python -m mypy
}

stage_release() {
    echo "==> wheel: manylinux2014 release build (zig), auditwheel, twine, then installed into a fresh venv and smoke-tested"
    rm -rf dist
    # The build and the installs are the commands docs/index.md gives a user
    # ("Install the wheel"), read from the page: the blocks it marks
    # <!-- release-stage: NAME -->.
    local dir
    scratch wheel
    python scripts/doc_commands.py build >"$dir/build.sh"
    python scripts/doc_commands.py install-notebook >"$dir/install-notebook.sh"
    python scripts/doc_commands.py install-testing >"$dir/install-testing.sh"
    quietly bash -euo pipefail "$dir/build.sh"
    quietly maturin sdist --out dist
    local arch wheel audit
    arch=$(uname -m)
    wheel=$(ls "dist/encryption_applier-"*"-cp311-abi3-manylinux2014_${arch}.manylinux_2_17_${arch}.whl")
    audit=$(auditwheel show "$wheel" | tr -s ' \n' ' ')
    if [[ "$audit" != *"consistent with the following platform tag: \"manylinux_2_17_${arch}\""* ]]; then
        echo "error: auditwheel does not confirm manylinux_2_17 (manylinux2014): $audit" >&2
        return 1
    fi
    quietly twine check --strict dist/*
    # In a scratch directory (the page's ea-env/ is made there), with dist/
    # beside it, after a stale wheel is put there too: the page's command
    # must still pick this build's. The extras come from the package index,
    # by the ranges the wheel declares (not the development pins): what a
    # user installs.
    ln -s "$repo_root/dist" "$dir/dist"
    cp "$wheel" "$dir/stale.whl"
    touch -d "1 hour ago" "$dir/stale.whl"
    mv "$dir/stale.whl" "dist/encryption_applier-0.0.1-cp311-abi3-manylinux2014_${arch}.manylinux_2_17_${arch}.whl"
    (cd "$dir" && quietly bash -euo pipefail "$dir/install-testing.sh")
    (cd "$dir" && quietly bash -euo pipefail "$dir/install-notebook.sh")
    rm "dist/encryption_applier-0.0.1-cp311-abi3-manylinux2014_${arch}.manylinux_2_17_${arch}.whl"
    "$dir/ea-env/bin/python" -c 'import importlib.metadata as m, sys; v = m.version("encryption-applier"); sys.exit(v == "0.0.1" and "the install picked the stale wheel")'
    (cd "$dir" && "$dir/ea-env/bin/python" "$repo_root/tests/smoke_wheel.py")

    echo "==> benchmark script, quick sizes (keeps bench/ runnable; figures go to a scratch file)"
    "$dir/ea-env/bin/python" -m pip install --quiet --disable-pip-version-check \
        -c "$repo_root/scripts/dev-constraints.txt" "lmdb>=1.4" pandas
    cargo build --release --quiet --example raw_lmdb --example batch_floor
    "$dir/ea-env/bin/python" bench/run.py --quick --raw target/release/examples/raw_lmdb \
        --batch-floor target/release/examples/batch_floor --output "$dir/bench.json" >"$dir/bench.txt"
    grep -q "columns" "$dir/bench.txt"
}

stage_docs() {
    echo "==> documentation site: mkdocs build --strict (a warning, a broken link or an undocumented name fails)"
    # docs/spec.md is the contract, SPEC.md, under a two-line note. Where the
    # shared SPEC.md sits beside the repository (as where this project is
    # developed), the copy must be exact.
    local spec="$repo_root/../shared/SPEC.md"
    if [ -f "$spec" ] && ! tail -n +3 docs/spec.md | cmp -s - "$spec"; then
        echo "error: docs/spec.md (after its first two lines) differs from $spec" >&2
        return 1
    fi
    local dir
    scratch site
    # As the README gives it: it must not print Material's end-of-life banner
    # (mkdocs-material is held below 9.7.2, which added it).
    local out
    out=$(mkdocs build --strict --quiet --site-dir "$dir/site" 2>&1) || { echo "$out" >&2; return 1; }
    if grep -qi "end of life\|MKDOCS_2_WARNING" <<<"$out"; then
        echo "error: mkdocs build printed Material's banner:" >&2
        echo "$out" >&2
        return 1
    fi
    [ -z "$out" ] || echo "$out"
}

for s in "${run[@]}"; do
    if [ "$s" = py ]; then
        stage_py "$@"
    else
        "stage_$s"
    fi
done
elapsed=$((SECONDS - started))
echo "==> $stage passed (${run[*]}) in $((elapsed / 60))m$(printf '%02d' $((elapsed % 60)))s"
