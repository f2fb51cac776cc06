#!/usr/bin/env bash
# Memory per stored message: a release herald loads CHANNELS × MESSAGES
# messages of SIZE bytes from a durable store written directly with
# Python's sqlite3, and its resident size is compared with the same herald
# on an empty store. Prints the RSS of both, the startup time and the bytes
# per stored message (RSS difference / messages).
#
#   bench/stored-memory.sh                       # 1000 × 1000 × 256 B
#   CHANNELS=100 MESSAGES=1000 bench/stored-memory.sh
#   HERALD=target/release/herald bench/stored-memory.sh
#
# Stops the herald it starts (by PID) and removes its temp dir on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
CHANNELS=${CHANNELS:-1000}
MESSAGES=${MESSAGES:-1000}
SIZE=${SIZE:-256}
HERALD=${HERALD:-target/release/herald}
[ -x "$HERALD" ] || cargo build --release --bin herald

WORK=$(mktemp -d /tmp/herald-stored.XXXXXX)
PID=""
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

python3 - "$WORK/full" "$CHANNELS" "$MESSAGES" "$SIZE" <<'PY'
import os, sqlite3, sys, time
path, channels, messages, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
os.makedirs(path, exist_ok=True)
db = sqlite3.connect(os.path.join(path, "herald.sqlite3"))
# The log layout (src/engine/durable/schema.rs): one table in commit order,
# channels by numeric id.
db.executescript("""
CREATE TABLE channels (id INTEGER PRIMARY KEY, channel TEXT NOT NULL UNIQUE, epoch INTEGER NOT NULL,
  last_seq INTEGER NOT NULL);
CREATE TABLE log (id INTEGER PRIMARY KEY, channel INTEGER NOT NULL, seq INTEGER NOT NULL,
  published_at INTEGER NOT NULL, event TEXT, data BLOB NOT NULL, kind INTEGER NOT NULL);
CREATE TABLE idempotency (channel TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  PRIMARY KEY (channel, key)) WITHOUT ROWID;
PRAGMA user_version = 2;
""")
now = int(time.time() * 1000)
payload = (b"x" * size)
for c in range(channels):
    db.execute("INSERT INTO channels VALUES (?, ?, ?, ?)", (c + 1, f"bench.{c}", 2_000_000_000 + c, messages))
# Round-robin over the channels, as many publishers would have written it.
db.executemany("INSERT INTO log (channel, seq, published_at, event, data, kind) VALUES (?, ?, ?, NULL, ?, 0)",
               ((c + 1, s, now, payload) for s in range(1, messages + 1) for c in range(channels)))
db.commit()
db.close()
PY
mkdir -p "$WORK/empty"

# Starts herald on DIR, waits for its address; prints "RSS_KiB startup_s".
measure() {
  local dir=$1 started out line
  started=$(date +%s.%N)
  out="$WORK/out"
  "$HERALD" serve --listen 127.0.0.1:0 --data-dir "$dir" --history-size "$MESSAGES" \
    --history-ttl 24h --history-bytes 1GiB --log-level warn >"$out" 2>"$WORK/err" &
  PID=$!
  for _ in $(seq 600); do
    line=$(head -n1 "$out" 2>/dev/null || true)
    [ -n "$line" ] && break
    sleep 0.1
  done
  [ -n "$line" ] || { cat "$WORK/err" >&2; exit 1; }
  local elapsed rss
  elapsed=$(echo "$(date +%s.%N) - $started" | bc)
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$PID/status")
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  echo "$rss $elapsed"
}

read -r empty_rss _ < <(measure "$WORK/empty")
read -r full_rss startup < <(measure "$WORK/full")
total=$((CHANNELS * MESSAGES))
per=$(( (full_rss - empty_rss) * 1024 / total ))
printf 'messages %d of %d B | RSS empty %d KiB | RSS loaded %d KiB (%.0f MiB) | startup %.2f s | %d B per stored message\n' \
  "$total" "$SIZE" "$empty_rss" "$full_rss" "$(echo "$full_rss / 1024" | bc -l)" "$startup" "$per"
