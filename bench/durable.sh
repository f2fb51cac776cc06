#!/usr/bin/env bash
# The durable engine under 1, 16 and 256 concurrent publishers, with the
# memory engine beside it in the same run (issue 15).
#
# For every round and publisher count, starts a fresh release herald on a
# fresh --data-dir (and one without, the memory engine), pinned to core 0,
# and runs `herald bench publish --raw-http` on core 1 against it, the two
# engines alternating which goes first. Prints a markdown table of medians:
# publishes/s, the server's CPU-seconds per million publishes, p50 / p99.
#
#   bench/durable.sh                    # RUNS=3, 1 16 256 publishers
#   RUNS=1 PUBLISHERS="256" bench/durable.sh
#   HERALD=/tmp/herald-old bench/durable.sh   # another build
#   DATA=/var/tmp bench/durable.sh      # where stores go (default /tmp)
#
# Stops every process it started (by PID) and removes its temp dir on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-3}
PUBLISHERS=${PUBLISHERS:-"1 16 256"}
MESSAGES=${MESSAGES:-300000}
HERALD=${HERALD:-}
STARTED=$(date +%s)

WORK=$(mktemp -d "${DATA:-/tmp}/herald-durable.XXXXXX")
log() { printf '[durable %4ss] %s\n' "$(($(date +%s) - STARTED))" "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

if [ -z "$HERALD" ]; then
  log "building herald (release)"
  cargo build --release --bin herald >&2
  HERALD=$ROOT/target/release/herald
fi
if [ "$(nproc)" -ge 2 ]; then SERVER_CPU=0 CLIENT_CPU=1; else SERVER_CPU=0 CLIENT_CPU=0; fi
ulimit -n "$(ulimit -Hn)"

# run ENGINE PUBLISHERS: one fresh server, one bench, one JSON line.
run() {
  local engine=$1 publishers=$2 port pid store=() line
  port=$(free_port)
  if [ "$engine" = durable ]; then
    rm -rf "$WORK/store"
    store=(--data-dir "$WORK/store")
  fi
  taskset -c "$SERVER_CPU" "$HERALD" serve --listen "127.0.0.1:$port" "${store[@]}" \
    --history-size 1000 --history-ttl 1h --log-level warn >>"$WORK/herald.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait_port "$port"
  # One publisher waits for every fsync itself: fewer messages keep it short.
  local messages=$MESSAGES
  [ "$publishers" -gt 1 ] || messages=$((MESSAGES / 20))
  if line=$(taskset -c "$CLIENT_CPU" "$ROOT/target/release/herald" bench publish --raw-http \
    --publishers "$publishers" --messages "$messages" --size 256 --duration 60s \
    --pub-url "http://127.0.0.1:$port/pub/{ch}" --server-pid "$pid" --label "$engine" --json \
    2>>"$WORK/bench.err"); then
    printf '{"engine":"%s","publishers":%s,"report":%s}\n' "$engine" "$publishers" "$line" >>"$WORK/results.jsonl"
    log "$engine, $publishers publishers: $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("%.0f/s cpu/M=%.1f p99=%.2fms" % (r["throughput"], r["server"]["cpu_s_per_million"], r["latency_us"]["p99"]/1000))' "$line")"
  else
    log "$engine, $publishers publishers: FAILED ($(tail -1 "$WORK/bench.err"))"
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget "$pid"
}

# The bench client is always this checkout's build, whatever HERALD is.
[ -x "$ROOT/target/release/herald" ] || cargo build --release --bin herald >&2
: >"$WORK/results.jsonl"
for round in $(seq 1 "$RUNS"); do
  for publishers in $PUBLISHERS; do
    if [ $((round % 2)) -eq 1 ]; then
      run durable "$publishers"; run memory "$publishers"
    else
      run memory "$publishers"; run durable "$publishers"
    fi
  done
done

python3 - "$WORK/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(engine, publishers, f):
    v = [f(r["report"]) for r in rows if r["engine"] == engine and r["publishers"] == publishers]
    return statistics.median(v) if v else float("nan")
print("| publishers | durable publishes/s | memory publishes/s | durable / memory | durable CPU-s per million | memory CPU-s per million | durable p50 / p99 (ms) |")
print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for p in sorted({r["publishers"] for r in rows}):
    d = med("durable", p, lambda r: r["throughput"])
    m = med("memory", p, lambda r: r["throughput"])
    print("| %d | %s | %s | %.2f | %.1f | %.1f | %.2f / %.2f |" % (
        p, f"{d:,.0f}", f"{m:,.0f}", d / m,
        med("durable", p, lambda r: r["server"]["cpu_s_per_million"]),
        med("memory", p, lambda r: r["server"]["cpu_s_per_million"]),
        med("durable", p, lambda r: r["latency_us"]["p50"]) / 1000,
        med("durable", p, lambda r: r["latency_us"]["p99"]) / 1000))
PY
