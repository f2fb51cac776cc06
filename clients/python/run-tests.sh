#!/usr/bin/env bash
# Runs the Python SDK's tests (tests/) against a real herald. Builds nothing:
# HERALD_BIN names the server binary (default: target/debug/herald of this
# repository). Makes a virtual environment in .venv (installing Debian's
# python3-venv first if this Python cannot make one), installs the SDK with
# its test extras from PyPI, then runs pytest; exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")"

export HERALD_BIN="${HERALD_BIN:-$PWD/../../target/debug/herald}"
if [ ! -x "$HERALD_BIN" ]; then
  echo "run-tests.sh: no herald binary at $HERALD_BIN (run cargo build, or set HERALD_BIN)" >&2
  exit 1
fi

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1 || ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  echo "run-tests.sh: installing python3 and python3-venv" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3 python3-venv >/dev/null
  python=python3
fi

# A venv left half-made by an interrupted run has no working pip: make it anew.
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  rm -rf .venv
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
exec .venv/bin/python -m pytest -q "$@"
