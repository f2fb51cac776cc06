#!/usr/bin/env bash
# Runs herald.js's browser tests (clients/js/test/*.test.mjs) in Debian's
# headless Chromium against a real herald. Builds nothing: HERALD_BIN names
# the server binary (default: target/debug/herald of this repository).
# Installs what a fresh Debian machine lacks: chromium (and a CJK font, so
# the demo page's 你好 renders in screenshots), node and npm, then
# playwright-core with `npm ci`. Screenshots land in test-artifacts/.
set -euo pipefail
cd "$(dirname "$0")"

export HERALD_BIN="${HERALD_BIN:-$PWD/../../target/debug/herald}"
if [ ! -x "$HERALD_BIN" ]; then
  echo "run-tests.sh: no herald binary at $HERALD_BIN (run cargo build, or set HERALD_BIN)" >&2
  exit 1
fi

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if command -v fc-list >/dev/null 2>&1 && [ -z "$(fc-list :lang=zh 2>/dev/null)" ]; then
  missing+=(fonts-wqy-microhei)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "run-tests.sh: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# npm ci when playwright-core is absent or not the locked version.
locked=$(node -p 'require("./package-lock.json").packages["node_modules/playwright-core"].version')
installed=$(node -p 'try { require("./node_modules/playwright-core/package.json").version } catch { "" }')
if [ "$locked" != "$installed" ]; then
  npm ci --no-audit --no-fund
fi

export CHROMIUM="${CHROMIUM:-$(command -v chromium)}"
npm test
