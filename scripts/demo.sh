#!/usr/bin/env bash
# `make demo`: uses the stack on HC_ROUTER_PORT (default 50051) when one is
# serving there, otherwise starts one (scripts/run-stack.sh) for the demo.
set -euo pipefail
build_dir=${1:-build}
port=${HC_ROUTER_PORT:-50051}
py=/usr/bin/python3

serving() {
  "$py" - "$port" <<'PY' 2>/dev/null
import sys, grpc
ch = grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}")
grpc.channel_ready_future(ch).result(timeout=1)
PY
}

started=""
if ! serving; then
  echo "demo: starting a stack (logs in $build_dir/demo-stack.log)" >&2
  HC_LEDGER_DIR=$(mktemp -d) setsid scripts/run-stack.sh "$build_dir" >"$build_dir/demo-stack.log" 2>&1 &
  started=$!
  trap 'kill -TERM -- -"$started" 2>/dev/null || true; wait "$started" 2>/dev/null || true' EXIT
  for _ in $(seq 1 600); do
    serving && break
    if ! kill -0 "$started" 2>/dev/null; then
      cat "$build_dir/demo-stack.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  # The router probes its workers before it places the first conversation.
  sleep 1
fi
"$py" tools/python/demo.py --router "127.0.0.1:$port"
