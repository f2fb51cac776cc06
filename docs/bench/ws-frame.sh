#!/usr/bin/env bash
# The /ws protocol socket before and after it moved onto herald's own RFC 6455
# implementation (issue 13), with the raw /sub WebSocket in the same runs.
#
#   docs/bench/ws-frame.sh BEFORE_BIN AFTER_BIN [OUT.jsonl]
#
# Each case runs RUNS times (3 by default) against each binary, alternating
# which goes first, a fresh server per run. The server is pinned to core 0,
# `herald bench` (always AFTER_BIN's, so the generator is the same for both)
# to core 1. One JSON line per run goes to OUT (default
# docs/bench/ws-frame.jsonl); docs/bench/ws-frame.py prints medians and ratios.
set -euo pipefail
BEFORE=$1 AFTER=$2
OUT=${3:-$(dirname "$0")/ws-frame.jsonl}
RUNS=${RUNS:-3}
CASES=${CASES:-"wsproto_50 ws_50 wsproto_sat ws_sat wsproto_10k ws_10k idle_wsproto idle_ws echo"}
ulimit -n "$(ulimit -Hn)"
WORK=$(mktemp -d /tmp/herald-ws-frame.XXXXXX)
SERVER=''
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

declare -A ARGS=(
  [wsproto_50]="fanout --transport wsproto --subscribers 1000 --channels 1 --messages 250 --rate 50 --size 256 --duration 30s --drain 10s"
  [ws_50]="fanout --transport ws --subscribers 1000 --channels 1 --messages 250 --rate 50 --size 256 --duration 30s --drain 10s"
  [wsproto_sat]="fanout --transport wsproto --subscribers 1000 --channels 1 --messages 1500 --rate 0 --max-lag 500 --size 256 --duration 45s --drain 20s"
  [ws_sat]="fanout --transport ws --subscribers 1000 --channels 1 --messages 1500 --rate 0 --max-lag 500 --size 256 --duration 45s --drain 20s"
  [wsproto_10k]="fanout --transport wsproto --subscribers 10000 --channels 1 --messages 20 --rate 10 --size 256 --duration 60s --drain 20s"
  [ws_10k]="fanout --transport ws --subscribers 10000 --channels 1 --messages 20 --rate 10 --size 256 --duration 60s --drain 20s"
  [idle_wsproto]="idle --transport ws --connections 10000 --hold 2s --duration 60s"
  [idle_ws]="idle --transport ws --connections 10000 --hold 2s --duration 60s"
  [echo]="echo --connections 1 --round-trips 5000 --size 64 --duration 30s"
)

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() { # BIN: a fresh server on core 0; sets PORT and SERVER
  PORT=$(free_port)
  # A long idle timeout: idle_wsproto holds unsubscribed /ws sockets open.
  taskset -c 0 "$1" serve --listen "127.0.0.1:$PORT" --demo --history-size 1000 \
    --history-ttl 1h --idle-timeout 10m --log-level warn >>"$WORK/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 200); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && return 0
    sleep 0.05
  done
  echo "no server on $PORT" >&2
  return 1
}

stop() {
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  SERVER=''
}

run() { # LABEL BIN CASE RUN
  local label=$1 bin=$2 case=$3 n=$4 sub extra=()
  start "$bin"
  sub="http://127.0.0.1:$PORT/sub/{ch}"
  case $case in
    idle_wsproto) sub="http://127.0.0.1:$PORT/ws" ;;
    echo) extra=(--url "ws://127.0.0.1:$PORT/demo/ws") ;;
  esac
  local line
  # shellcheck disable=SC2086
  if line=$(taskset -c 1 "$AFTER" bench ${ARGS[$case]} "${extra[@]}" --sub-url "$sub" \
    --pub-url "http://127.0.0.1:$PORT/pub/{ch}" --server-pid "$SERVER" --label "$label" --json \
    2>>"$WORK/bench.err"); then
    printf '{"case":"%s","binary":"%s","run":%d,"report":%s}\n' "$case" "$label" "$n" "$line" >>"$OUT"
    echo "$case $label run $n done" >&2
  else
    echo "$case $label run $n FAILED: $(tail -n 3 "$WORK/bench.err")" >&2
  fi
  stop
}

for case in $CASES; do
  for n in $(seq 1 "$RUNS"); do
    if [ $((n % 2)) -eq 1 ]; then
      run before "$BEFORE" "$case" "$n"
      run after "$AFTER" "$case" "$n"
    else
      run after "$AFTER" "$case" "$n"
      run before "$BEFORE" "$case" "$n"
    fi
  done
done
