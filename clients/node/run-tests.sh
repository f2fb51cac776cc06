#!/usr/bin/env bash
# Runs the Node SDK's tests (test/*.test.mjs, node --test) against a real
# herald. Builds nothing: HERALD_BIN names the server binary (default:
# target/debug/herald of this repository). The SDK has no dependencies, so
# nothing is installed but Node itself when missing (Debian's nodejs).
# Node 20 and 21 keep WebSocket behind --experimental-websocket: given here
# when this Node needs it.
set -euo pipefail
cd "$(dirname "$0")"

export HERALD_BIN="${HERALD_BIN:-$PWD/../../target/debug/herald}"
if [ ! -x "$HERALD_BIN" ]; then
  echo "run-tests.sh: no herald binary at $HERALD_BIN (run cargo build, or set HERALD_BIN)" >&2
  exit 1
fi

if ! command -v node >/dev/null 2>&1; then
  echo "run-tests.sh: installing nodejs" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs >/dev/null
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "run-tests.sh: node $(node --version) is too old; herald-node needs 20 or later" >&2
  exit 1
fi

flags=()
if [ "$(node -p 'typeof WebSocket')" != function ]; then
  flags+=(--experimental-websocket)
fi
exec node "${flags[@]}" --test --test-concurrency=1 test/*.test.mjs
