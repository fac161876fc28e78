#!/usr/bin/env bash
# `make run`: 1 router + 2 CPU workers on loopback, in the foreground, with
# each line of their logs prefixed by the process name. Ctrl-C (or SIGTERM)
# drains and stops everything.
#
# Environment: HC_MODEL (default synthetic:tiny), HC_ROUTER_PORT (50051),
# HC_ROUTER_METRICS_PORT (9090), HC_WORKER_PORT (50061; workers use it and +1),
# HC_WORKER_METRICS_PORT (9101; and +1), HC_LEDGER_DIR (default .hc-ledger),
# HC_HTTP_PORT (8000: the OpenAI-compatible HTTP API).
set -euo pipefail
build_dir=${1:-build}
bin="$build_dir/bin"
model=${HC_MODEL:-synthetic:tiny}
router_port=${HC_ROUTER_PORT:-50051}
router_metrics=${HC_ROUTER_METRICS_PORT:-9090}
worker_port=${HC_WORKER_PORT:-50061}
worker_metrics=${HC_WORKER_METRICS_PORT:-9101}
ledger_dir=${HC_LEDGER_DIR:-.hc-ledger}
http_port=${HC_HTTP_PORT:-8000}

# The synthetic checkpoint is generated once (atomically) into the cache dir.
if [[ "$model" == synthetic:* ]]; then
  "$bin/hc-checkpoint" --preset "${model#synthetic:}" --resolve >/dev/null
fi

pids=() names=()
stop() {
  trap - INT TERM
  echo "stopping: draining router and workers..." >&2
  # The router first, so no new turn reaches a draining worker.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  # Each server exits 0 after its drain; anything else (killed mid-drain, a
  # crash) is reported and makes the stop fail.
  local failed=() rc
  for i in "${!pids[@]}"; do
    rc=0
    wait "${pids[i]}" || rc=$?
    [[ $rc == 0 ]] || failed+=("${names[i]} exited $rc")
  done
  if [[ ${#failed[@]} -gt 0 ]]; then
    echo "stopped, but not cleanly: ${failed[*]}" >&2
    exit 1
  fi
  echo "stopped" >&2
  exit 0
}
trap stop INT TERM

run() {  # run NAME CMD...: start CMD (its pid is what stop() signals), output prefixed by NAME
  local name=$1
  shift
  names+=("$name")
  # The prefixer ignores SIGINT: Ctrl-C reaches the whole process group, and
  # a dead sed would lose the drain messages (and break the servers' stdout).
  # It ends when its server closes the pipe.
  "$@" > >(trap '' INT; exec sed -u "s/^/[$name] /") 2>&1 &
  pids+=($!)
}

workers=""
for i in 0 1; do
  run "worker$i" "$bin/hc-worker" --port=$((worker_port + i)) --metrics_port=$((worker_metrics + i)) \
    --worker_id="worker$i" --model="$model" --device=cpu
  workers+="${workers:+,}127.0.0.1:$((worker_port + i))"
done
mkdir -p "$ledger_dir"
run router "$bin/hc-router" --port="$router_port" --metrics_port="$router_metrics" \
  --workers="$workers" --model="$model" --ledger_dir="$ledger_dir" --http_port="$http_port"

cat >&2 <<MSG

HybridCache is starting:
  ChatService (gRPC)   127.0.0.1:$router_port      try: $bin/hcctl chat --conversation demo
  OpenAI HTTP API      http://127.0.0.1:$http_port/v1  try: curl localhost:$http_port/v1/models
  router metrics       http://127.0.0.1:$router_metrics/metrics
  worker0              127.0.0.1:$worker_port  metrics http://127.0.0.1:$worker_metrics/metrics
  worker1              127.0.0.1:$((worker_port + 1))  metrics http://127.0.0.1:$((worker_metrics + 1))/metrics
  ledger               $ledger_dir (append-only file)
Ctrl-C stops everything.

MSG
wait
