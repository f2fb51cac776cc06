#!/usr/bin/env bash
# The runs behind docs/BENCHMARKS.md "TLS, HTTP/2 and WebSocket compression":
# SSE over TLS on HTTP/1.1 vs HTTP/2, raw WebSocket with and without
# permessage-deflate on JSON. Needs ca.pem, cert.pem, key.pem in the current
# directory (openssl, see tests/tls.rs) and a release build.
# One server per mode run; prints the JSON lines.
set -u
H=${HERALD_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/herald}
start() {
  $H serve --listen 127.0.0.1:0 --listen tls://127.0.0.1:0 --tls-cert cert.pem --tls-key key.pem --log-level error > out.txt 2>err.txt &
  echo $! > pid
  for i in $(seq 100); do [ "$(wc -l < out.txt)" -ge 2 ] && break; sleep 0.05; done
  P=$(sed -n 's|herald listening on http://||p' out.txt); T=$(sed -n 's|herald listening on https://||p' out.txt)
}
stop() { kill "$(cat pid)"; wait "$(cat pid)" 2>/dev/null; }
for round in 1 2 3; do
  for mode in h1 h2; do
    start
    extra=""; [ $mode = h2 ] && extra="--http2"
    echo -n "$mode "; $H bench fanout --sub-url "https://$T/sub/{ch}" --pub-url "http://$P/pub/{ch}" --ca ca.pem --transport sse $extra \
      --subscribers 1000 --channels 1 --messages 2000 --rate 1000 --size 256 --server-pid "$(cat pid)" --duration 60s --json --label $mode
    stop
  done
  for mode in raw deflate; do
    start
    echo -n "$mode "; $H bench fanout --sub-url "http://$P/sub/{ch}" --pub-url "http://$P/pub/{ch}" --transport ws --ws-$mode --payload json \
      --subscribers 500 --channels 1 --messages 2000 --rate 500 --size 1024 --server-pid "$(cat pid)" --duration 60s --json --label $mode
    stop
  done
done
