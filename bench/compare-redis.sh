#!/usr/bin/env bash
# herald's Redis engine and Nchan on Redis side by side, two nodes each, in
# one run (issue 15).
#
# For every scenario and run, each system gets a fresh private redis-server
# and two fresh nodes on it: two `herald serve --redis` processes, or two
# one-worker nginx instances with Nchan storing in that Redis (same history
# as herald: 1000 messages, 1 hour). Redis and all four nodes' processes run
# on core 0, `herald bench` on core 1. Publishes go to node A; fan-out
# subscribers sit on node B, so every delivery crosses Redis. The script adds
# up the CPU time of both nodes (nginx: their workers) and of redis-server
# from /proc around each run, and writes medians and herald/Nchan ratios into
# docs/BENCHMARKS.md between the compare-redis markers.
#
#   bench/compare-redis.sh                  # RUNS=3 by default
#   RUNS=5 bench/compare-redis.sh
#   NO_WRITE=1 bench/compare-redis.sh       # print the section, leave docs/ alone
#   BIN=/path/to/herald bench/compare-redis.sh   # use this binary, skip the build
#   ORDER="publish ws" bench/compare-redis.sh    # a subset of publish ws sse
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

WORK=$(mktemp -d /tmp/herald-compare-redis.XXXXXX)

log() { printf '[compare-redis %4ss] %s\n' "$(($(date +%s) - STARTED))" "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# ---------------------------------------------------------------- tools
install_nchan
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  log "installing redis-server"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
if ! command -v python3 >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null
fi
if [ "$(nproc)" -ge 2 ]; then
  SERVER_CPU=0 CLIENT_CPU=1
else
  log "one CPU only: servers and generator share it"
  SERVER_CPU=0 CLIENT_CPU=0
fi

if [ -z "${BIN:-}" ]; then
  log "building herald (release)"
  cargo build --release --bin herald >&2
  BIN=$ROOT/target/release/herald
  BUILT="$(git rev-parse --short HEAD)$(git diff --quiet -- src Cargo.toml || echo ' (with uncommitted changes)')"
else
  BUILT="prebuilt binary $BIN ($("$BIN" --version 2>/dev/null || echo 'no --version')), not built by this run; tree at $(git rev-parse --short HEAD)"
fi
[ -x "$BIN" ] || { log "no herald binary at $BIN"; exit 1; }
ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
HZ=$(getconf CLK_TCK)

wait_redis() { # PORT: until redis-server answers PING there (10 s at most)
  local _
  for _ in $(seq 1 200); do
    [ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.05
  done
  log "no redis-server answers on port $1"
  return 1
}


stop_pid() { # PID: stop one process we started and wait for it
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget "$1"
}

cpu_ticks() { # PID...: utime + stime of these processes (all their threads), in clock ticks
  local pid sum=0 t
  for pid in "$@"; do
    # Fields after "pid (comm) ": state is 1, utime 12, stime 13.
    t=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
    sum=$((sum + t))
  done
  echo "$sum"
}

seconds_since() { # TICKS PID: CPU seconds the process used since it had TICKS
  awk -v a="$(cpu_ticks "$2")" -v b="$1" -v hz="$HZ" 'BEGIN { printf "%.2f", (a - b) / hz }'
}

# ------------------------------------------------------------- servers
# The running system: its redis-server, the processes whose CPU counts as the
# server's (herald nodes; nginx workers), the processes to stop (herald
# nodes; nginx masters) and the two nodes' ports.
REDIS_PID='' REDIS_PORT='' NODE_CPU_PIDS=() NODE_PIDS=() PORT_A='' PORT_B=''

start_redis() { # NAME
  REDIS_PORT=$(free_port)
  mkdir -p "$WORK/$1"
  nice -n "$NICE" taskset -c "$SERVER_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
    --save '' --appendonly no --dir "$WORK/$1" --maxclients $((NOFILE - 100)) \
    >>"$WORK/$1/redis.log" 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  wait_redis "$REDIS_PORT"
}

HERALD_CMD="herald serve --listen 127.0.0.1:PORT --redis redis://127.0.0.1:REDIS_PORT --history-size 1000 --history-ttl 1h --log-level warn"
start_herald_node() { # NAME: sets NODE_PORT
  NODE_PORT=$(free_port)
  nice -n "$NICE" taskset -c "$SERVER_CPU" "$BIN" serve --listen "127.0.0.1:$NODE_PORT" \
    --redis "redis://127.0.0.1:$REDIS_PORT" --history-size 1000 --history-ttl 1h --log-level warn \
    >>"$WORK/herald/$1.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  NODE_PIDS+=("$pid")
  NODE_CPU_PIDS+=("$pid")
  wait_port "$NODE_PORT"
}

start_nchan_node() { # NAME: sets NODE_PORT
  NODE_PORT=$(free_port)
  local dir=$WORK/nchan/$1
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<EOF
load_module $NCHAN_MODULE;
worker_processes 1;
worker_rlimit_nofile $NOFILE;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
daemon off;
events { worker_connections $((NOFILE - 100)); }
http {
  access_log off;
  client_body_temp_path $dir/body;
  # Messages live in Redis, shared by both nginx instances (Nchan's
  # "distributed" mode, its default). nchan_redis_pass must be given in each
  # location: set in http {} it is not inherited, and Nchan then keeps
  # messages in its own shared memory without a word.
  upstream redis_store {
    nchan_redis_server redis://127.0.0.1:$REDIS_PORT;
    nchan_redis_storage_mode distributed;
  }
  # The same history as herald: 1000 messages per channel, kept 1 hour.
  nchan_message_buffer_length 1000;
  nchan_message_timeout 1h;
  server {
    listen 127.0.0.1:$NODE_PORT;
    location ~ /pub/(\w+)$ {
      nchan_publisher;
      nchan_channel_id \$1;
      nchan_redis_pass redis_store;
    }
    location ~ /sub/(\w+)$ {
      nchan_subscriber;
      nchan_channel_id \$1;
      nchan_subscriber_first_message oldest;
      nchan_redis_pass redis_store;
    }
  }
}
EOF
  nice -n "$NICE" taskset -c "$SERVER_CPU" nginx -c "$dir/nginx.conf" -p "$dir" \
    >>"$dir/out.log" 2>&1 &
  local pid=$! worker
  PIDS+=("$pid")
  NODE_PIDS+=("$pid")
  if ! wait_port "$NODE_PORT"; then
    tail -5 "$dir/error.log" "$dir/out.log" >&2 || true
    return 1
  fi
  worker=$(pgrep -P "$pid" | head -1)
  [ -n "$worker" ] || { log "no nginx worker"; return 1; }
  NODE_CPU_PIDS+=("$worker")
}

# A message published on node A must be in the history node B sees.
check_shared() { # SYSTEM
  local ch probe
  ch=probe$RANDOM$RANDOM
  curl -s -m 5 -o /dev/null -X POST --data-binary shared "http://127.0.0.1:$PORT_A/pub/$ch"
  probe=$(curl -s -m 5 "http://127.0.0.1:$PORT_B/pub/$ch" || true)
  if [ "$1" = herald ]; then
    [[ $probe == *'"messages":1'* ]] && return 0
  else
    [[ $probe == *'queued messages: 1'* ]] && return 0
  fi
  log "$1: a message published on node A is not in node B's history: $probe"
  tail -5 "$WORK/$1"/*/error.log "$WORK/$1"/*.log 2>/dev/null >&2 || true
  return 1
}

start_system() { # herald | nchan
  NODE_CPU_PIDS=() NODE_PIDS=()
  start_redis "$1"
  if [ "$1" = herald ]; then
    start_herald_node a
    PORT_A=$NODE_PORT
    start_herald_node b
    PORT_B=$NODE_PORT
  else
    start_nchan_node a
    PORT_A=$NODE_PORT
    start_nchan_node b
    PORT_B=$NODE_PORT
  fi
  check_shared "$1"
}

stop_system() {
  local pid
  for pid in "${NODE_PIDS[@]}"; do stop_pid "$pid"; done # an nginx master stops its worker
  [ -z "$REDIS_PID" ] || stop_pid "$REDIS_PID"
  NODE_PIDS=() NODE_CPU_PIDS=() REDIS_PID=''
}

# ------------------------------------------------------------ scenarios
# name | herald bench arguments (URLs, PID and label are added per server)
declare -A CASES=(
  [publish]="publish --publishers 8 --messages 200000 --size 256 --duration 30s"
  [ws]="fanout --transport ws --subscribers 200 --channels 1 --messages 1000 --rate 100 --size 256 --duration 30s --drain 10s"
  [sse]="fanout --transport sse --subscribers 200 --channels 1 --messages 1000 --rate 100 --size 256 --duration 30s --drain 10s"
)
ORDER=${ORDER:-"publish ws sse"}
for case in $ORDER; do
  [ -n "${CASES[$case]:-}" ] || { log "unknown scenario $case (publish, ws, sse)"; exit 1; }
done

summary_line() { # REPORT NODE_A_S NODE_B_S REDIS_S: one run's headline, for the progress log
  python3 - "$@" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
n = r["delivered"] or 1
p = r.get("latency_us") or {}
a, b, redis = (float(x) * 1e6 / n for x in sys.argv[2:5])
print("%.0f/s lost=%d p99=%.1fms CPU-s/M: nodes %.1f (A %.1f, B %.1f) redis %.1f" % (
      r["throughput"], r["lost"], p.get("p99", 0) / 1000, a + b, a, b, redis))
PY
}

# bench SERVER CASE: one run on a fresh system, one JSON line into results.jsonl.
bench() {
  local server=$1 case=$2 args urls pid line before_a before_b before_r a_s b_s redis_s
  args=${CASES[$case]}
  start_system "$server"
  if [ "$case" = publish ]; then
    urls=(--pub-url "http://127.0.0.1:$PORT_A/pub/{ch}")
    pid=${NODE_CPU_PIDS[0]}
  else
    urls=(--sub-url "http://127.0.0.1:$PORT_B/sub/{ch}" --pub-url "http://127.0.0.1:$PORT_A/pub/{ch}")
    pid=${NODE_CPU_PIDS[1]}
  fi
  before_a=$(cpu_ticks "${NODE_CPU_PIDS[0]}")
  before_b=$(cpu_ticks "${NODE_CPU_PIDS[1]}")
  before_r=$(cpu_ticks "$REDIS_PID")
  # shellcheck disable=SC2086
  if line=$(nice -n "$NICE" taskset -c "$CLIENT_CPU" timeout -k 5 120 "$BIN" bench $args "${urls[@]}" \
    --server-pid "$pid" --label "$server" --log-level warn --json 2>>"$WORK/bench.err"); then
    a_s=$(seconds_since "$before_a" "${NODE_CPU_PIDS[0]}")
    b_s=$(seconds_since "$before_b" "${NODE_CPU_PIDS[1]}")
    redis_s=$(seconds_since "$before_r" "$REDIS_PID")
    printf '{"case":"%s","server":"%s","report":%s,"cpu":{"server_s":%s,"node_a_s":%s,"node_b_s":%s,"redis_s":%s}}\n' \
      "$case" "$server" "$line" "$(awk -v a="$a_s" -v b="$b_s" 'BEGIN { printf "%.2f", a + b }')" \
      "$a_s" "$b_s" "$redis_s" >>"$WORK/results.jsonl"
    log "$case $server: $(summary_line "$line" "$a_s" "$b_s" "$redis_s")"
  else
    printf '{"case":"%s","server":"%s","report":null}\n' "$case" "$server" >>"$WORK/results.jsonl"
    log "$case $server: FAILED ($(tail -1 "$WORK/bench.err"))"
  fi
  stop_system
  if [ ! -e "$WORK/commands/$case.$server" ]; then
    mkdir -p "$WORK/commands"
    local where="--pub-url http://127.0.0.1:A/pub/{ch} --server-pid PID_A"
    [ "$case" = publish ] || where="--sub-url http://127.0.0.1:B/sub/{ch} --pub-url http://127.0.0.1:A/pub/{ch} --server-pid PID_B"
    printf 'herald bench %s %s --label %s --json\n' "$(echo "$args" | xargs)" "$where" "$server" \
      >"$WORK/commands/$case.$server"
  fi
}

pair() { # CASE ROUND: both systems, alternating which goes first
  if [ $(($2 % 2)) -eq 1 ]; then bench herald "$1"; bench nchan "$1"; else bench nchan "$1"; bench herald "$1"; fi
}

mkdir -p "$WORK/herald" "$WORK/nchan"
for round in $(seq 1 "$RUNS"); do
  log "round $round of $RUNS"
  for case in $ORDER; do pair "$case" "$round"; done
done

if [ -z "${NO_WRITE:-}" ]; then
  mkdir -p docs/bench
  cp "$WORK/results.jsonl" docs/bench/redis-results.jsonl
elif [ -n "${RESULTS_COPY:-}" ]; then
  cp "$WORK/results.jsonl" "$RESULTS_COPY"
fi

ELAPSED=$(($(date +%s) - STARTED))
{
  echo "machine: $(nproc) CPUs; $(lscpu | sed -n 's/^Model name: *//p' | head -1); $(uname -sr)"
  lscpu | head -n 8 | sed 's/^/    /'
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*nginx\///'), Nchan: $(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null || echo unknown), Redis: $(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/')"
  echo "herald: $BUILT"
  echo "runs: $RUNS; wall time: ${ELAPSED} s; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$WORK/machine.txt"
{
  cat "$WORK"/commands/*
  echo "redis-server --port REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no  # one per system and run"
  echo "$HERALD_CMD  # twice: nodes A and B"
  echo "nginx -c nginx.conf  # twice: nodes A and B, one worker, nchan_redis_pass to an upstream of nchan_redis_server redis://127.0.0.1:REDIS_PORT"
} >"$WORK/commands.txt"

python3 bench/summarize_redis.py "$WORK/results.jsonl" "$WORK/machine.txt" "$WORK/commands.txt" \
  ${NO_WRITE:+--print} docs/BENCHMARKS.md
log "done in ${ELAPSED} s"
