#!/usr/bin/env bash
# Runs herald.js's browser tests in Debian's headless Chromium against a real
# herald (HERALD_BIN, default ../../target/debug/herald). Installs what a
# fresh machine lacks.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund
fi
export HERALD_BIN="${HERALD_BIN:-$PWD/../../target/debug/herald}"
npm test
