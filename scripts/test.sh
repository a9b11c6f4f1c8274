#!/usr/bin/env bash
# Install everything the tests need and run the whole suite:
#   Debian packages of the real peers, a virtualenv in .venv with netkit[test],
#   then ruff and pytest (arguments go to pytest). Safe to run again; it only
#   installs what is missing.
# As root, pytest runs in a network namespace of its own where only loopback exists:
# nothing a test starts (uvloop's sockets, dig, NSD, curl) can reach past it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-peers.sh
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/ruff check .
if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null && unshare --net true 2>/dev/null; then
  exec unshare --net sh -c 'ip link set lo up && exec "$@"' sh .venv/bin/python -m pytest "$@"
fi
echo "test.sh: not root or no unshare: running without the loopback-only namespace" >&2
exec .venv/bin/python -m pytest "$@"
