#!/usr/bin/env bash
# Keeps docs/openapi.yaml true: starts a real `herald serve` on a free
# loopback port and lets schemathesis throw generated requests (valid and
# invalid) at every operation the file describes, failing on any 5xx, any
# undocumented status code, any JSON body or content type that contradicts
# the schema. Two servers: one open (the quick-start setup), one with a
# publish key and a JWT secret and no credentials sent (every refusal path).
#
#   scripts/schemathesis.sh            # uses target/debug/herald
#   HERALD_BIN=path/to/herald scripts/schemathesis.sh
#   SCHEMATHESIS_EXAMPLES=200 SCHEMATHESIS_SEED=7 scripts/schemathesis.sh   # a longer run
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${HERALD_BIN:-target/debug/herald}
examples=${SCHEMATHESIS_EXAMPLES:-25}
seed=${SCHEMATHESIS_SEED:-1}

if ! command -v schemathesis >/dev/null 2>&1; then
  echo "installing schemathesis (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check schemathesis
fi

work=$(mktemp -d)
pid=
stop_server() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
  fi
}
trap 'stop_server; rm -rf "$work"' EXIT

# Subscriptions are tested as long polls: an SSE stream (transport=sse) never
# ends by itself, and /status/stream is endless by design.
cat >"$work/schemathesis.toml" <<'EOF'
[[operations]]
include-operation-id = "subscribe"
parameters = { "query.transport" = "poll" }
EOF

# run NAME EXAMPLES [SERVE OPTIONS...]: one server, one schemathesis run.
run() {
  local name=$1 count=$2
  shift 2
  # Long polls are capped at 200 ms so held polls do not slow the run down.
  "$bin" serve --listen 127.0.0.1:0 --poll-timeout 200ms --max-poll-timeout 200ms "$@" \
    >"$work/$name.stdout" 2>"$work/$name.log" &
  pid=$!
  # The server prints its address once it listens; wait for it (10 s at most).
  local url=
  for _ in $(seq 200); do
    url=$(sed -n 's/^herald listening on \(http:\/\/[^ ]*\)$/\1/p' "$work/$name.stdout")
    [ -n "$url" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if [ -z "$url" ]; then
    echo "herald did not start" >&2
    cat "$work/$name.log" >&2
    return 1
  fi
  echo "== $name: herald $* at $url"

  local status=0
  timeout 150 schemathesis --config-file "$work/schemathesis.toml" run docs/openapi.yaml \
    --url "$url" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --exclude-path /status/stream \
    --phases examples,coverage,fuzzing \
    --max-examples "$count" \
    --seed "$seed" \
    --request-timeout 5 \
    --generation-database none \
    --no-color \
    --warnings off || status=$?
  stop_server
  if [ "$status" -ne 0 ]; then
    echo "schemathesis failed ($status) against the $name server; its log:" >&2
    tail -50 "$work/$name.log" >&2
  fi
  if grep -q '"level":"ERROR"\| ERROR ' "$work/$name.log"; then
    echo "the $name server logged errors:" >&2
    grep '"level":"ERROR"\| ERROR ' "$work/$name.log" >&2
    status=1
  fi
  return "$status"
}

run open "$examples"
run auth "$(( (examples + 4) / 5 ))" --publish-key schemathesis-key --jwt-secret schemathesis-secret
