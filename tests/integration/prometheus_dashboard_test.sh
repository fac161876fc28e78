#!/usr/bin/env bash
# Starts a real Prometheus (Debian's `prometheus`) on loopback that scrapes the
# given router and worker metrics endpoints, runs the given turns, and checks
# the Grafana dashboard's hit-rate and commit-latency queries through the
# Prometheus HTTP API against the targets' own /metrics and what the clients
# saw. Every other dashboard query must evaluate, and every metric name in the
# dashboard and the alert rules must appear in the live scrapes.
#
# Usage:
#   tests/integration/prometheus_dashboard_test.sh \
#       --router 127.0.0.1:9101 [--router ...] \
#       --worker 127.0.0.1:9201 [--worker ...] \
#       [--turns-cmd 'shell command'] [--expect-turns N] \
#       [--dashboard deploy/grafana/hybridcache.json] [--prometheus BIN] \
#       [--scrape-interval 250ms] [--tolerance 0.005] [--no-name-check]
#
# The endpoints are host:port of each process's --metrics_port (/metrics).
# --turns-cmd runs once every target has been scraped; it gets HC_USAGE_FILE in
# its environment and appends one line per completed turn to it:
#   <prompt_tokens> <cached_tokens>
# (TurnStarted/Usage as the client received them). --expect-turns N also
# checks that the workers recorded exactly N commits.
#
# How the comparison stays exact: the workers should start fresh (counters at
# 0) so rate() does not extrapolate before the first sample; after the last
# turn the script waits until Prometheus has scraped it, then removes the
# targets (SIGHUP with an empty scrape config) so every series ends the same
# way, and evaluates the queries with $__rate_interval covering the whole run.
# Exit status 0 when every comparison holds. Needs: prometheus, curl, python3.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
routers=() workers=()
turns_cmd="" expect_turns="" tolerance=0.005 name_check=1
dashboard="$repo/deploy/grafana/hybridcache.json"
prometheus_bin=${PROMETHEUS:-prometheus}
scrape_interval=250ms

while [[ $# -gt 0 ]]; do
  case "$1" in
    --router) routers+=("$2"); shift 2 ;;
    --worker) workers+=("$2"); shift 2 ;;
    --turns-cmd) turns_cmd="$2"; shift 2 ;;
    --expect-turns) expect_turns="$2"; shift 2 ;;
    --dashboard) dashboard="$2"; shift 2 ;;
    --prometheus) prometheus_bin="$2"; shift 2 ;;
    --scrape-interval) scrape_interval="$2"; shift 2 ;;
    --tolerance) tolerance="$2"; shift 2 ;;
    --no-name-check) name_check=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ ${#routers[@]} -gt 0 && ${#workers[@]} -gt 0 ]] || { echo "need --router and --worker" >&2; exit 2; }
command -v "$prometheus_bin" >/dev/null || { echo "prometheus not found (apt-get install prometheus)" >&2; exit 2; }

tmp=$(mktemp -d -t hc-prom-XXXXXX)
prom_pid=""
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
  if [[ -n "$prom_pid" ]] && kill -0 "$prom_pid" 2>/dev/null; then
    kill "$prom_pid" 2>/dev/null || true
    wait "$prom_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

eval_py=(python3 "$here/prometheus_dashboard_eval.py")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
prom="http://127.0.0.1:$port"

# Each target gets the labels a Prometheus Operator monitor would give it
# (namespace, pod), so the dashboard's per-pod queries work unchanged.
write_config() {  # $1 = 1 with targets, 0 without
  {
    echo "global:"
    echo "  scrape_interval: $scrape_interval"
    echo "  scrape_timeout: $scrape_interval"
    echo "  evaluation_interval: $scrape_interval"
    echo "scrape_configs:"
    if [[ $1 == 1 ]]; then
      local job list i
      for job in hc-router hc-worker; do
        if [[ $job == hc-router ]]; then list=("${routers[@]}"); else list=("${workers[@]}"); fi
        echo "  - job_name: $job"
        echo "    static_configs:"
        for i in "${!list[@]}"; do
          echo "      - targets: ['${list[$i]}']"
          echo "        labels: {namespace: local, pod: $job-$i}"
        done
      done
    else
      echo "  []"
    fi
  } >"$tmp/prometheus.yml"
}

scrape_all() {  # $1 = output dir: <pod>.metrics for every target
  mkdir -p "$1"
  local i
  for i in "${!routers[@]}"; do curl -fsS --max-time 10 "http://${routers[$i]}/metrics" >"$1/hc-router-$i.metrics"; done
  for i in "${!workers[@]}"; do curl -fsS --max-time 10 "http://${workers[$i]}/metrics" >"$1/hc-worker-$i.metrics"; done
}

n_targets=$(( ${#routers[@]} + ${#workers[@]} ))
write_config 1
"$prometheus_bin" --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address="127.0.0.1:$port" --storage.tsdb.retention.time=1h \
  --log.level=warn >"$tmp/prometheus.log" 2>&1 &
prom_pid=$!
start_s=$(date +%s)
if ! "${eval_py[@]}" wait-ready "$prom" 30 || ! "${eval_py[@]}" wait-scraped "$prom" "$n_targets" 30; then
  cat "$tmp/prometheus.log" >&2
  exit 1
fi
echo "prometheus $prom scrapes ${#routers[@]} router(s) and ${#workers[@]} worker(s)"

scrape_all "$tmp/before"
: >"$tmp/usage"
if [[ -n "$turns_cmd" ]]; then
  echo "running turns: $turns_cmd"
  HC_USAGE_FILE="$tmp/usage" bash -c "$turns_cmd"
fi
scrape_all "$tmp/after"
"${eval_py[@]}" wait-caught-up "$prom" "$tmp/after" 30 || { cat "$tmp/prometheus.log" >&2; exit 1; }

# A few more samples of the final values (rate() extrapolates each series by
# half its average sample spacing; many samples make that spacing, and so the
# error of mixing targets in one sum, small), then stop scraping so that every
# series ends a whole scrape interval before the evaluation time. Both wait on
# Prometheus itself (its samples, its target list), not on the clock.
"${eval_py[@]}" wait-more-samples "$prom" 6 30 || { cat "$tmp/prometheus.log" >&2; exit 1; }
write_config 0
kill -HUP "$prom_pid"
eval_at=$("${eval_py[@]}" wait-stopped "$prom" "$scrape_interval" 30) || { cat "$tmp/prometheus.log" >&2; exit 1; }
window="$(( eval_at - start_s + 30 ))s"

status=0
"${eval_py[@]}" evaluate --prom "$prom" --dashboard "$dashboard" --before "$tmp/before" \
  --after "$tmp/after" --window "$window" --time "$eval_at" --usage "$tmp/usage" \
  --tolerance "$tolerance" ${expect_turns:+--expect-turns "$expect_turns"} || status=1

if [[ $name_check == 1 ]]; then
  scrapes=()
  for f in "$tmp"/after/*.metrics; do scrapes+=(--scrape "$f"); done
  python3 "$repo/tests/deploy/check_metric_names.py" "${scrapes[@]}" || status=1
fi
exit $status
