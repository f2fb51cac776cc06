# Shared by the bench scripts (source it after setting WORK, a temp dir,
# and defining log): processes started are added to PIDS and stopped, by
# PID, on exit, and WORK is removed; loopback ports and Nchan.
# shellcheck shell=bash

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # PORT: until something answers HTTP there (10 s at most)
  local _
  for _ in $(seq 1 200); do
    curl -s -m 1 -o /dev/null "http://127.0.0.1:$1/" && return 0
    sleep 0.05
  done
  log "nothing answers on port $1"
  return 1
}

forget() { # PID: drop it from the cleanup list once stopped
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so
install_nchan() { # Debian's nginx and Nchan, when missing
  if ! command -v nginx >/dev/null 2>&1 || [ ! -e "$NCHAN_MODULE" ]; then
    log "installing nginx and Nchan"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx libnginx-mod-nchan >/dev/null
  fi
}
