#!/usr/bin/env bash
# Install everything the tests need and run the whole suite:
#   Debian packages of the real peers, a virtualenv in .venv with netkit[test],
#   then ruff and pytest. Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-peers.sh
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
