# Sourced by scripts/demo.sh and scripts/test.sh: creates .venv under the
# repo (if missing), installs maturin and the requested extras of
# pyproject.toml into it, at the versions pinned in
# scripts/dev-constraints.txt, and builds the extension from source into it.
# Needs only Rust, Python >= 3.11 and pip on the machine.
#
# Usage: EA_EXTRAS="test docs" source scripts/setup.sh
# (no EA_EXTRAS: the package alone, which is all the demo needs).
# EA_DEVELOP=0 skips the build (for steps that do not import the package).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

# Always build the LMDB copy bundled with lmdb-rkv-sys, never a system one.
export LIBLMDB_NO_PKG_CONFIG=1

python_bin=${PYTHON:-python3}
if ! "$python_bin" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: $python_bin is $("$python_bin" -V 2>&1); Python >= 3.11 is needed (set PYTHON=...)" >&2
    exit 1
fi

venv="$repo_root/.venv"
if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating $venv"
    "$python_bin" -m venv "$venv"
fi
export VIRTUAL_ENV="$venv"
export PATH="$venv/bin:$PATH"

# Runs a noisy step with its output in a log, shown only if the step fails.
quietly() {
    local log
    log=$(mktemp "${TMPDIR:-/tmp}/ea-setup.XXXXXX")
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "error: '$*' failed (output above)" >&2
        return 1
    fi
    rm -f "$log"
}

# The extras' requirements, read from pyproject.toml so that they are listed
# in one place.
requirements=()
if [ -n "${EA_EXTRAS:-}" ]; then
    # A plain assignment, so that an unknown extra stops the script (set -e).
    # shellcheck disable=SC2086
    listed=$(python - ${EA_EXTRAS} <<'PY'
import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    extras = tomllib.load(f)["project"]["optional-dependencies"]
for name in sys.argv[1:]:
    if name not in extras:
        sys.exit(f"error: no extra {name!r} in pyproject.toml (have {', '.join(sorted(extras))})")
    print(*extras[name], sep="\n")
PY
    )
    mapfile -t requirements <<<"$listed"
fi

# The requirements stay pyproject's ranges; the constraints file pins each
# tool and what it pulls in (see docs/development.md for its refresh).
echo "==> installing maturin${EA_EXTRAS:+ and the extras [${EA_EXTRAS// /,}]} into .venv (pinned by scripts/dev-constraints.txt)"
quietly python -m pip install --disable-pip-version-check -c "$repo_root/scripts/dev-constraints.txt" \
    "maturin>=1.9,<2" "${requirements[@]}"

if [ "${EA_DEVELOP:-1}" != 0 ]; then
    echo "==> building the extension from source into .venv (maturin develop)"
    quietly maturin develop
fi
