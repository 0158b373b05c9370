#!/usr/bin/env bash
# Installs everything, then applies a short stream of real entries to a
# registry in a temporary directory and prints what happened.
source "$(dirname "$0")/setup.sh"
python examples/apply_stream.py
