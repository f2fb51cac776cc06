#!/usr/bin/env bash
# Keeps docs/openapi.yaml true: starts a real `herald serve` on a free
# loopback port and lets schemathesis throw generated requests (valid and
# invalid) at every operation the file describes, failing on any 5xx, any
# undocumented status code, any JSON body or content type that contradicts
# the schema.
#
#   scripts/schemathesis.sh            # uses target/debug/herald
#   HERALD_BIN=path/to/herald scripts/schemathesis.sh
#   SCHEMATHESIS_EXAMPLES=200 scripts/schemathesis.sh   # a longer run
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${HERALD_BIN:-target/debug/herald}
examples=${SCHEMATHESIS_EXAMPLES:-25}

if ! command -v schemathesis >/dev/null 2>&1; then
  echo "installing schemathesis (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check schemathesis
fi

work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Long polls are capped at 200 ms so held polls do not slow the run down.
"$bin" serve --listen 127.0.0.1:0 --poll-timeout 200ms --max-poll-timeout 200ms \
  >"$work/stdout" 2>"$work/server.log" &
pid=$!

# The server prints its address once it listens; wait for it (10 s at most).
url=
for _ in $(seq 200); do
  url=$(sed -n 's/^herald listening on \(http:\/\/[^ ]*\)$/\1/p' "$work/stdout")
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.05
done
[ -n "$url" ] || { echo "herald did not start" >&2; cat "$work/server.log" >&2; exit 1; }
echo "herald under test at $url"

# Subscriptions are tested as long polls: an SSE stream (transport=sse) never
# ends by itself, and /status/stream is endless by design.
cat >"$work/schemathesis.toml" <<'EOF'
[[operations]]
include-operation-id = "subscribe"
parameters = { "query.transport" = "poll" }
EOF

status=0
timeout 150 schemathesis --config-file "$work/schemathesis.toml" run docs/openapi.yaml \
  --url "$url" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --exclude-path /status/stream \
  --phases examples,coverage,fuzzing \
  --max-examples "$examples" \
  --seed "${SCHEMATHESIS_SEED:-1}" \
  --request-timeout 5 \
  --generation-database none \
  --no-color \
  --warnings off || status=$?

if [ "$status" -ne 0 ]; then
  echo "schemathesis failed ($status); server log:" >&2
  tail -50 "$work/server.log" >&2
fi
if grep -q '"level":"ERROR"\| ERROR ' "$work/server.log"; then
  echo "the server logged errors:" >&2
  grep '"level":"ERROR"\| ERROR ' "$work/server.log" >&2
  status=1
fi
exit "$status"
