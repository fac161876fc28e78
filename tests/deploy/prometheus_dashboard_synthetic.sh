#!/usr/bin/env bash
# Runs tests/integration/prometheus_dashboard_test.sh (real Prometheus on
# loopback) against synthetic metrics targets shaped like 1 router + 2 workers,
# so the dashboard queries and the integration script are tested before the
# real binaries exist. Then checks that the script does fail when the clients'
# view disagrees with the metrics (one cached token misreported).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
target="$here/synthetic_metrics_target.py"
tmp=$(mktemp -d -t hc-synth-XXXXXX)
pids=()
cleanup_targets() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
  cleanup_targets
  rm -rf "$tmp"
}
trap cleanup EXIT

start() {  # $1 role, $2 name -> echoes 127.0.0.1:port
  python3 "$target" serve --role "$1" --port-file "$tmp/$2.port" &
  pids+=($!)
}
wait_port() {
  for _ in $(seq 1 100); do [[ -s "$tmp/$1.port" ]] && { echo "127.0.0.1:$(cat "$tmp/$1.port")"; return; }; sleep 0.1; done
  echo "synthetic target $1 did not start" >&2; exit 1
}

run_case() {  # $1 = extra drive flags
  rm -f "$tmp"/*.port
  pids=()
  start router r; start worker w0; start worker w1
  local r w0 w1 rc=0
  if ! { r=$(wait_port r) && w0=$(wait_port w0) && w1=$(wait_port w1); }; then
    cleanup_targets
    return 2
  fi
  "$repo/tests/integration/prometheus_dashboard_test.sh" --router "$r" --worker "$w0" --worker "$w1" \
    --expect-turns 40 \
    --turns-cmd "python3 '$target' drive --router $r --worker $w0 --worker $w1 --turns 40 --seed 7 --usage \"\$HC_USAGE_FILE\" $1" \
    || rc=$?
  cleanup_targets
  return $rc
}

echo "== consistent metrics: must pass"
run_case ""
echo "== client view disagrees by one cached token: must fail, naming that comparison"
if run_case "--misreport" | tee "$tmp/misreport.log"; then
  echo "FAIL: the integration script accepted a misreported cached-token count" >&2
  exit 1
fi
grep -q "^FAIL cached tokens on the workers vs the clients' cached_tokens" "$tmp/misreport.log" || {
  echo "FAIL: the misreport run failed for another reason" >&2
  exit 1
}
echo "prometheus_dashboard_synthetic: both cases behaved as expected"
