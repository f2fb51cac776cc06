#!/usr/bin/env bash
# Memory for the same history in herald and in Nchan (issue 15): both keep
# the last MESSAGES messages of each of CHANNELS channels, and
# `herald bench publish --publishers CHANNELS` fills them over HTTP (one
# channel per publisher, CHANNELS × MESSAGES single publishes of SIZE bytes).
#
# herald (memory engine): the growth of its resident size, per message.
# Nchan: the growth of its shared memory in use (`nchan_stub_status`), where
# it keeps messages, and of its worker's resident size, per message.
#
#   bench/history-memory.sh                          # 1000 × 1000 × 256 B
#   CHANNELS=100 MESSAGES=1000 bench/history-memory.sh
#   BIN=target/release/herald bench/history-memory.sh   # skip the build
#
# Stops every process it started (by PID) and removes its temp dir on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
CHANNELS=${CHANNELS:-1000}
MESSAGES=${MESSAGES:-1000}
SIZE=${SIZE:-256}
TOTAL=$((CHANNELS * MESSAGES))
if [ -z "${BIN:-}" ]; then
  cargo build --release --bin herald >&2
  BIN=target/release/herald
fi
ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d /tmp/herald-history-memory.XXXXXX)
log() { echo "$*" >&2; }
# shellcheck source=bench/lib.sh
source bench/lib.sh
install_nchan
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
fill() { # PORT: publish the whole history
  "$BIN" bench publish --publishers "$CHANNELS" --messages "$TOTAL" --size "$SIZE" \
    --duration 600s --pub-url "http://127.0.0.1:$1/pub/{ch}" --json >"$WORK/fill.json"
  python3 - "$WORK/fill.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
if r["delivered"] != r["expected"] or r["errors"]:
    sys.exit("published %d of %d (%d errors)" % (r["delivered"], r["expected"], r["errors"]))
PY
}

# ---------------------------------------------------------------- herald
port=$(free_port)
"$BIN" serve --listen "127.0.0.1:$port" --history-size "$MESSAGES" --history-ttl 24h \
  --history-bytes 1GiB --log-level warn >"$WORK/herald.log" 2>&1 &
herald=$!
PIDS+=("$herald")
wait_port "$port"
before=$(rss_kib "$herald")
fill "$port"
after=$(rss_kib "$herald")
herald_per=$(((after - before) * 1024 / TOTAL))
kill "$herald"

# ----------------------------------------------------------------- Nchan
port=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
load_module $NCHAN_MODULE;
worker_processes 1;
worker_rlimit_nofile $(ulimit -n);
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
daemon off;
events { worker_connections $(($(ulimit -n) - 100)); }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  nchan_message_buffer_length $MESSAGES;
  nchan_message_timeout 24h;
  # Room for the whole history (Nchan's default is 128 MiB).
  nchan_shared_memory_size 2048m;
  server {
    listen 127.0.0.1:$port;
    location ~ /pub/(\w+)$ { nchan_publisher; nchan_channel_id \$1; }
    location = /status { nchan_stub_status; }
  }
}
EOF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" >"$WORK/nginx/out.log" 2>&1 &
nginx=$!
PIDS+=("$nginx")
wait_port "$port"
worker=$(pgrep -P "$nginx" | head -1)
shm() { curl -s "http://127.0.0.1:$port/status" | awk -F': ' '/shared memory used/ {print $2+0}'; }
shm_before=$(shm)
before=$(rss_kib "$worker")
fill "$port"
shm_after=$(shm)
after=$(rss_kib "$worker")
stored=$(curl -s "http://127.0.0.1:$port/status" | awk -F': ' '/^stored messages/ {print $2+0}')
nchan_shm_per=$(((shm_after - shm_before) * 1024 / TOTAL))
nchan_rss_per=$(((after - before) * 1024 / TOTAL))

printf 'history: %d channels x %d messages of %d B (%d messages)\n' "$CHANNELS" "$MESSAGES" "$SIZE" "$TOTAL"
printf 'herald: %d B per message (resident size growth)\n' "$herald_per"
printf 'Nchan:  %d B per message (shared memory in use; %s messages stored), worker resident size growth %d B per message\n' \
  "$nchan_shm_per" "$stored" "$nchan_rss_per"
printf 'herald / Nchan shared memory: %.2f\n' "$(echo "$herald_per / $nchan_shm_per" | bc -l)"
