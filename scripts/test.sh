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
echo "==> cargo test"
cargo test --quiet
echo "==> pytest"
python -m pytest "$@"
