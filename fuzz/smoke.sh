#!/usr/bin/env bash
# A short run of every fuzz target on stable Rust (libFuzzer, no sanitizer,
# debug assertions on): replays the committed corpus, then fuzzes for a few
# seconds. It keeps the targets building against herald's API (this crate is
# outside the main workspace, so nothing else compiles it) and the corpus
# crash-free. New inputs go to a scratch directory, never into fuzz/corpus/.
#
#   fuzz/smoke.sh                   # 5 seconds per target
#   FUZZ_SECONDS=600 fuzz/smoke.sh  # a longer run
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-5}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (crates.io)"
  cargo install --locked cargo-fuzz
fi
# libfuzzer-sys compiles libFuzzer, which is C++.
if ! command -v c++ >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# `--sanitizer none` needs no nightly toolchain: every other flag cargo-fuzz
# passes is a stable `-C` option.
flags=(--sanitizer none --dev)
cargo fuzz build "${flags[@]}"
for target in $(cargo fuzz list); do
  mkdir "$scratch/$target"
  log="$scratch/$target.log"
  if cargo fuzz run "${flags[@]}" "$target" "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 >"$log" 2>&1; then
    echo "$target: $(grep -E '^Done [0-9]+ runs' "$log" || echo 'done')"
  else
    tail -n 40 "$log"
    echo "$target: FAILED (the input is saved under fuzz/artifacts/$target/)"
    exit 1
  fi
done
