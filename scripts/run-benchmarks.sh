#!/usr/bin/env bash
# Runs every benchmark binary in <build>/bench. Each prints its own ratios
# (measured within one run, since these machines are noisy).
set -euo pipefail
build_dir=${1:-build}
shopt -s nullglob
benches=("$build_dir"/bench/*)
if [[ ${#benches[@]} -eq 0 ]]; then
  echo "no benchmarks built in $build_dir/bench" >&2
  exit 1
fi
for b in "${benches[@]}"; do
  [[ -x "$b" ]] || continue
  echo "=== $(basename "$b") ==="
  # model_bench measures every architecture (--arch=all, its default).
  "$b"
done

# End to end through the router: the load generator (cache on vs off).
echo "=== loadgen (tools/python/loadgen.py, synthetic:small, 2 workers) ==="
HC_BUILD_DIR="$build_dir" /usr/bin/python3 tools/python/loadgen.py --model synthetic:small

# Side by side with llama.cpp on the same checkpoint, threads and OpenAI-API workload
# (docs/benchmarks.md). The first run builds llama.cpp (~30 min on 2 cores; cached after).
# HC_SKIP_PEER_BENCH=1 leaves it out.
if [[ ${HC_SKIP_PEER_BENCH:-0} != 1 ]]; then
  echo "=== peer: llama.cpp side by side (tests/bench/peer/run.sh) ==="
  tests/bench/peer/run.sh "$build_dir"
fi
