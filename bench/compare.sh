#!/usr/bin/env bash
# herald and Nchan side by side, on this machine, in one run (issue 7).
#
# Installs Nchan (Debian's nginx + libnginx-mod-nchan) when missing, starts a
# release herald and a private one-worker nginx with Nchan (same history: 1000
# messages, 1 hour), pins each server to core 0 and `herald bench` to core 1,
# runs every scenario RUNS times against both (alternating which goes first),
# and writes medians and herald/Nchan ratios into docs/BENCHMARKS.md between
# the compare markers, with SVG plots in docs/bench/.
#
#   bench/compare.sh            # RUNS=3 by default
#   RUNS=5 bench/compare.sh
#   NO_WRITE=1 bench/compare.sh # print the section, leave docs/ alone
#
# Stops every process it started (by PID) and removes its temp dir on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-3}
# Benchmark processes run slightly ahead of background work (builds,
# fuzzers) on a shared machine; CPU-seconds are counted either way.
NICE=${NICE:--5}
STARTED=$(date +%s)

WORK=$(mktemp -d /tmp/herald-compare.XXXXXX)

log() { printf '[compare %4ss] %s\n' "$(($(date +%s) - STARTED))" "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# ---------------------------------------------------------------- tools
install_nchan
if ! command -v python3 >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null
fi
if [ "$(nproc)" -ge 2 ]; then
  SERVER_CPU=0 CLIENT_CPU=1
else
  log "one CPU only: servers and generator share it"
  SERVER_CPU=0 CLIENT_CPU=0
fi

log "building herald (release)"
cargo build --release --bin herald >&2
BIN=$ROOT/target/release/herald
ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)


HERALD_PID='' HERALD_PORT=''
HERALD_CMD="herald serve --listen 127.0.0.1:PORT --demo --history-size 1000 --history-ttl 1h --log-level warn"
start_herald() {
  HERALD_PORT=$(free_port)
  nice -n "$NICE" taskset -c "$SERVER_CPU" "$BIN" serve --listen "127.0.0.1:$HERALD_PORT" --demo \
    --history-size 1000 --history-ttl 1h --log-level warn >>"$WORK/herald.log" 2>&1 &
  HERALD_PID=$!
  PIDS+=("$HERALD_PID")
  wait_port "$HERALD_PORT"
}
stop_herald() {
  [ -n "$HERALD_PID" ] || return 0
  kill "$HERALD_PID" 2>/dev/null || true
  wait "$HERALD_PID" 2>/dev/null || true
  forget "$HERALD_PID"
  HERALD_PID=''
}

NGINX_PID='' NCHAN_PORT='' NCHAN_WORKER=''
start_nchan() {
  NCHAN_PORT=$(free_port)
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<EOF
load_module $NCHAN_MODULE;
worker_processes 1;
worker_rlimit_nofile $NOFILE;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
daemon off;
events { worker_connections $((NOFILE - 100)); }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  # The same history as herald: 1000 messages per channel, kept 1 hour.
  nchan_message_buffer_length 1000;
  nchan_message_timeout 1h;
  server {
    listen 127.0.0.1:$NCHAN_PORT;
    location ~ /pub/(\w+)$ {
      nchan_publisher;
      nchan_channel_id \$1;
    }
    location ~ /sub/(\w+)$ {
      nchan_subscriber;
      nchan_channel_id \$1;
      nchan_subscriber_first_message oldest;
    }
  }
}
EOF
  nice -n "$NICE" taskset -c "$SERVER_CPU" nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" \
    >>"$WORK/nginx/out.log" 2>&1 &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  wait_port "$NCHAN_PORT"
  NCHAN_WORKER=$(pgrep -P "$NGINX_PID" | head -1)
  [ -n "$NCHAN_WORKER" ] || { log "no nginx worker"; return 1; }
}
stop_nchan() {
  [ -n "$NGINX_PID" ] || return 0
  kill "$NGINX_PID" 2>/dev/null || true # the master stops its worker
  wait "$NGINX_PID" 2>/dev/null || true
  forget "$NGINX_PID"
  NGINX_PID=''
}

restart_servers() {
  stop_herald
  stop_nchan
  start_herald
  start_nchan
}

# ------------------------------------------------------------ scenarios
# name | herald bench arguments (URLs, PID and label are added per server)
declare -A CASES=(
  [ws]="fanout --transport ws --subscribers 1000 --channels 1 --messages 500 --rate 500 --size 256 --duration 45s --drain 20s"
  [sse]="fanout --transport sse --subscribers 1000 --channels 1 --messages 500 --rate 500 --size 256 --duration 45s --drain 20s"
  [ws_100]="fanout --transport ws --subscribers 1000 --channels 1 --messages 1500 --rate 100 --size 256 --duration 30s --drain 10s"
  [sse_100]="fanout --transport sse --subscribers 1000 --channels 1 --messages 1500 --rate 100 --size 256 --duration 30s --drain 10s"
  [ws_50]="fanout --transport ws --subscribers 1000 --channels 1 --messages 250 --rate 50 --size 256 --duration 30s --drain 10s"
  [poll]="fanout --transport poll --subscribers 200 --channels 1 --messages 500 --rate 100 --size 256 --duration 30s --drain 10s"
  [channels]="fanout --transport ws --subscribers 1000 --channels 100 --messages 4000 --rate 2000 --size 256 --duration 30s --drain 10s"
  [saturation]="fanout --transport ws --subscribers 1000 --channels 1 --messages 1500 --rate 0 --max-lag 500 --size 256 --duration 45s --drain 20s"
  [saturation_10]="fanout --transport ws --subscribers 1000 --channels 1 --messages 1500 --rate 0 --max-lag 10 --size 256 --duration 45s --drain 20s"
  [saturation_1]="fanout --transport ws --subscribers 1000 --channels 1 --messages 1500 --rate 0 --max-lag 1 --size 256 --duration 45s --drain 20s"
  [publish]="publish --publishers 8 --messages 300000 --size 256 --duration 30s --raw-http"
  [publish_batch]="publish --publishers 8 --messages 2000000 --batch 100 --size 256 --duration 30s --raw-http"
  [idle_ws]="idle --transport ws --connections 10000 --hold 2s --duration 60s"
  [idle_sse]="idle --transport sse --connections 10000 --hold 2s --duration 60s"
  [echo]="echo --connections 1 --round-trips 5000 --size 64 --duration 30s"
)
# ORDER, IDLE=0 and SWEEP=0 narrow a run (with NO_WRITE=1, to look at a few
# scenarios without rewriting the whole section).
ORDER=${ORDER:-"ws sse ws_100 sse_100 ws_50 poll channels saturation saturation_10 saturation_1 publish publish_batch"}
IDLE=${IDLE:-1}
SWEEP=${SWEEP:-1}

summary_line() { # one report's headline, for the progress log
  python3 - "$1" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
cost = (r.get("server") or {})
print("%.0f/s lost=%d cpu/M=%.2f rss/conn=%.0fB" % (r["throughput"], r["lost"],
      cost.get("cpu_s_per_million", 0), cost.get("rss_per_connection_bytes", 0)))
PY
}

# bench SERVER CASE [extra args...]: one run, one JSON line into results.jsonl.
bench() {
  local server=$1 case=$2 port pid extra=()
  shift 2
  if [ "$server" = herald ]; then port=$HERALD_PORT pid=$HERALD_PID; else port=$NCHAN_PORT pid=$NCHAN_WORKER; fi
  if [ "$server" = nchan ] && [[ ${CASES[$case]} == *"--transport poll"* ]]; then
    extra+=(--poll-dialect nchan)
  fi
  if [ "$case" = echo ]; then extra+=(--url "ws://127.0.0.1:$port/demo/ws"); fi
  # Publishes go out through the raw HTTP/1.1 client (--raw-http in the
  # cases): through reqwest the generator reached 98 % of its core first.
  # WebSocket subscribers read with the light client (every whole message
  # a read brought, in one pass): tungstenite's per-message cost made the
  # generator, not the server, the ceiling at saturation.
  if [[ ${CASES[$case]} == "fanout --transport ws "* ]]; then extra+=(--ws-raw); fi
  local args="${CASES[$case]} ${extra[*]} $*"
  # Nchan has no batch publish: its side of publish_batch is single
  # publishes, so the ratio compares herald's batches with what Nchan can do.
  if [ "$server" = nchan ] && [ "$case" = publish_batch ]; then args="${CASES[publish]} $*"; fi
  # shellcheck disable=SC2086
  local line
  if line=$(nice -n "$NICE" taskset -c "$CLIENT_CPU" "$BIN" bench $args \
    --sub-url "http://127.0.0.1:$port/sub/{ch}" --pub-url "http://127.0.0.1:$port/pub/{ch}" \
    --server-pid "$pid" --label "$server" --json 2>>"$WORK/bench.err"); then
    printf '{"case":"%s","server":"%s","report":%s}\n' "$case" "$server" "$line" >>"$WORK/results.jsonl"
    log "$case $server: $(summary_line "$line")"
  else
    printf '{"case":"%s","server":"%s","report":null}\n' "$case" "$server" >>"$WORK/results.jsonl"
    log "$case $server: FAILED ($(tail -1 "$WORK/bench.err"))"
  fi
  if [ ! -e "$WORK/commands/$case.$server" ]; then
    mkdir -p "$WORK/commands"
    printf 'herald bench %s --sub-url http://127.0.0.1:PORT/sub/{ch} --pub-url http://127.0.0.1:PORT/pub/{ch} --server-pid PID --label %s --json\n' \
      "$(echo "$args" | xargs)" "$server" >"$WORK/commands/$case.$server"
  fi
}

pair() { # CASE ROUND: both servers, alternating which goes first
  if [ $(($2 % 2)) -eq 1 ]; then bench herald "$1"; bench nchan "$1"; else bench nchan "$1"; bench herald "$1"; fi
}

for round in $(seq 1 "$RUNS"); do
  log "round $round of $RUNS"
  restart_servers
  for case in $ORDER; do pair "$case" "$round"; done
  [ "$IDLE" = 1 ] || continue
  bench herald echo
  # Idle memory is measured on fresh servers (freed memory would be reused).
  restart_servers
  pair idle_ws "$round"
  restart_servers
  pair idle_sse "$round"
done

log "sweep: WebSocket fan-out at 500 msg/s against subscribers (for the plots)"
restart_servers
: >"$WORK/sweep.jsonl"
SWEEP_POINTS="100 250 500 1000"
[ "$SWEEP" = 1 ] || SWEEP_POINTS=""
for subs in $SWEEP_POINTS; do
  for server in herald nchan; do
    if [ "$server" = herald ]; then port=$HERALD_PORT pid=$HERALD_PID; else port=$NCHAN_PORT pid=$NCHAN_WORKER; fi
    nice -n "$NICE" taskset -c "$CLIENT_CPU" "$BIN" bench fanout --transport ws --ws-raw --subscribers "$subs" \
      --messages 500 --rate 500 --size 256 --duration 40s --drain 15s \
      --sub-url "http://127.0.0.1:$port/sub/{ch}" --pub-url "http://127.0.0.1:$port/pub/{ch}" \
      --server-pid "$pid" --label "$server" --json >>"$WORK/sweep.jsonl" 2>>"$WORK/bench.err" \
      || log "sweep $subs $server failed"
  done
done
stop_herald
stop_nchan

if [ -z "${NO_WRITE:-}" ]; then
  mkdir -p docs/bench
  if [ "$SWEEP" = 1 ]; then
    "$BIN" bench plot --input "$WORK/sweep.jsonl" --out-dir docs/bench --title "WebSocket fan-out, 500 msg/s" >&2
    cp "$WORK/sweep.jsonl" docs/bench/sweep.jsonl
  fi
  cp "$WORK/results.jsonl" docs/bench/results.jsonl
else
  cp "$WORK/results.jsonl" "${RESULTS_COPY:-/tmp/herald-compare-results.jsonl}"
fi

ELAPSED=$(($(date +%s) - STARTED))
{
  echo "machine: $(nproc) CPUs; $(lscpu | sed -n 's/^Model name: *//p' | head -1); $(uname -sr)"
  lscpu | head -n 8 | sed 's/^/    /'
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*nginx\///'), Nchan: $(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null || echo unknown)"
  echo "herald: $(git rev-parse --short HEAD)$(git diff --quiet -- src Cargo.toml || echo ' (with uncommitted changes)')"
  echo "runs: $RUNS; wall time: ${ELAPSED} s; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$WORK/machine.txt"
cat "$WORK"/commands/* >"$WORK/commands.txt"
echo "$HERALD_CMD" >>"$WORK/commands.txt"

python3 bench/summarize.py "$WORK/results.jsonl" "$WORK/machine.txt" "$WORK/commands.txt" \
  ${NO_WRITE:+--print} docs/BENCHMARKS.md
log "done in ${ELAPSED} s"
