#!/usr/bin/env bash
# Builds and runs the GPU tests and benchmark on a machine with an NVIDIA GPU,
# engine-only (no gRPC, protobuf or prometheus-cpp needed), and writes a
# summary. Run it from anywhere:
#
#   bash tests/gpu/run.sh                  # results in <repo>/gpu-run-out/
#   OUT=/tmp/gpu-results bash tests/gpu/run.sh
#
# Needs: a GPU with its driver (nvidia-smi), the CUDA toolkit (nvcc; found on
# PATH or in /usr/local/cuda/bin), CMake >= 3.25, a C++20 host compiler, and
# Abseil, GoogleTest/GoogleMock and Google Benchmark, either installed (e.g.
# Debian's libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev libonig-dev
# libicu-dev) or as .deb
# files in <repo>/.gpu-deps/ for a machine without them or without network
# (scripts/fetch-gpu-deps.sh downloads them on a Debian 12 machine; copy the
# folder over). Optional: ninja; NCCL for the TP=2 test (a system nccl.h is
# found by CMake; the nvidia-nccl Python wheel is used when python3 can import
# nvidia.nccl); compute-sanitizer for the memcheck pass.
#
# Steps (it goes on after a failing step, to collect everything):
#   1. unpacks the .debs of .gpu-deps/, if any, into a private prefix under
#      $TMPDIR with `dpkg -x` (or `ar` + `tar` without dpkg);
#   2. configures build-gpu/ (-DHC_ENGINE_ONLY=ON -DHC_WITH_CUDA=ON, Release;
#      NCCL when found; retries with -allow-unsupported-compiler when nvcc
#      rejects the host g++);
#   3. builds gpu_kernels_test, gpu_model_test and gpu_bench with all cores;
#   4. runs gpu_kernels_test and gpu_model_test (a failing binary's tests are
#      rerun one per process, so one device fault does not hide the others),
#      then gpu_bench; then, while time is left, the GPU tests under
#      compute-sanitizer memcheck and the CPU unit tests of the engine build;
#   5. writes summary.txt (each step's status and time, gtest counts, the
#      benchmark table) and prints it.
# Every step's timeout is cut to the time left of a total budget, so the whole
# run stays within about HC_GPU_RUN_BUDGET_S seconds (default 465).
#
# Environment: OUT (results folder, default <repo>/gpu-run-out),
# HC_GPU_RUN_BUDGET_S, HC_GPU_BUILD_DIR (default <repo>/build-gpu), TMPDIR.
# Files written to $OUT: summary.txt, run.log (this script's trace),
# configure.log, build.log, gpu_kernels_test.log, gpu_model_test.log,
# gpu_bench.txt, cpu_tests.log. The exit status is always 0: read
# summary.txt for the verdicts.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$repo/gpu-run-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run.log") 2>&1
set -x
start=$SECONDS
budget=${HC_GPU_RUN_BUDGET_S:-465}  # 7 min 45 s of work; the rest is margin
summary=$OUT/summary.txt
: >"$summary"
note() { echo "$*" >>"$summary"; }
left() { echo $((budget - (SECONDS - start))); }
# Runs a step with a timeout of min(cap, time left); records its status.
step() {
  local name=$1 cap=$2 log=$3
  shift 3
  local t
  t=$(left)
  ((t > cap)) && t=$cap
  if ((t < 10)); then
    note "$(printf '%-22s %s' "$name" "NOT RUN (time budget spent)")"
    return 1
  fi
  local s=$SECONDS
  timeout --kill-after=5 "$t" "$@" >>"$log" 2>&1
  local rc=$?
  local verdict=ok
  ((rc == 124 || rc == 137)) && verdict="TIMEOUT after ${t}s"
  ((rc != 0 && rc != 124 && rc != 137)) && verdict="FAILED rc=$rc"
  note "$(printf '%-22s %-24s %4ss  (%s)' "$name" "$verdict" $((SECONDS - s)) "$(basename "$log")")"
  return $rc
}

note "HybridCache GPU run: $(date -u '+%F %T UTC'), commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >>"$summary" 2>&1 ||
  note "nvidia-smi failed"

# ---- 1. dependencies from .gpu-deps --------------------------------------
deps=$repo/.gpu-deps
prefix=${TMPDIR:-/tmp}/hc-gpu-deps
rm -rf "$prefix"
mkdir -p "$prefix"
shopt -s nullglob
debs=("$deps"/*.deb)
if ((${#debs[@]} == 0)); then
  note "no .debs in $deps: run scripts/fetch-gpu-deps.sh and carry .gpu-deps; trying system packages"
fi
for deb in "${debs[@]}"; do
  if command -v dpkg >/dev/null; then
    dpkg -x "$deb" "$prefix"
  else  # a .deb is an ar archive holding data.tar.{xz,zst,gz}
    member=$(ar t "$deb" | grep '^data\.tar')
    case $member in
      *.xz) ar p "$deb" "$member" | tar -xJ -C "$prefix" ;;
      *.zst) ar p "$deb" "$member" | tar --zstd -x -C "$prefix" ;;
      *) ar p "$deb" "$member" | tar -xz -C "$prefix" ;;
    esac
  fi
done
libdir=$prefix/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
cmake_deps=()
if [[ -d $libdir/cmake/absl ]]; then
  cmake_deps+=("-DCMAKE_PREFIX_PATH=$prefix/usr" "-Dabsl_DIR=$libdir/cmake/absl"
               "-DGTest_DIR=$libdir/cmake/GTest" "-DGTest_ROOT=$prefix/usr"
               "-Dbenchmark_DIR=$libdir/cmake/benchmark")
fi

# ---- 2. configure ----------------------------------------------------------
unset NVIDIA_TF32_OVERRIDE  # fp32 GEMMs must stay fp32 (the tests compare at 1e-4)
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
nccl_args=()
nccl_py=$(python3 -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))' 2>/dev/null || true)
if [[ -n $nccl_py && -f $nccl_py/include/nccl.h ]]; then
  nccl_lib=$(find "$nccl_py/lib" -name 'libnccl.so*' | sort | head -1)
  [[ -n $nccl_lib ]] && nccl_args=("-DHC_NCCL_INCLUDE_DIR=$nccl_py/include" "-DHC_NCCL_LIBRARY=$nccl_lib")
  export LD_LIBRARY_PATH=$nccl_py/lib:$LD_LIBRARY_PATH
fi
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
build=${HC_GPU_BUILD_DIR:-$repo/build-gpu}
configure_args=(-S "$repo" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release
                -DHC_ENGINE_ONLY=ON -DHC_WITH_CUDA=ON "${cmake_deps[@]}" "${nccl_args[@]}")
if ! step configure 150 "$OUT/configure.log" cmake "${configure_args[@]}" &&
   grep -q 'unsupported GNU version' "$OUT/configure.log"; then
  # An nvcc older than the host g++: retry with nvcc's override.
  rm -rf "$build"
  step configure-retry 120 "$OUT/configure.log" cmake "${configure_args[@]}" \
    -DCMAKE_CUDA_FLAGS=-allow-unsupported-compiler
fi
grep -E 'HybridCache: engine_only|CUDA compiler identification' "$OUT/configure.log" >>"$summary"

# ---- 3. build the GPU targets ----------------------------------------------
jobs=$(nproc)
step build-gpu 300 "$OUT/build.log" \
  cmake --build "$build" -j "$jobs" --target gpu_kernels_test gpu_model_test gpu_bench

# ---- 4. run ----------------------------------------------------------------
# A device fault (illegal address) poisons the CUDA context for the rest of a
# test binary; when a binary fails, each of its tests is rerun in its own
# process so that one fault does not hide the others.
isolate() {
  local t=$1 name
  echo "==== each test in its own process ====" >>"$OUT/$t.log"
  for name in $("$build/tests/$t" --gtest_list_tests | awk '/^[^ ]/ {suite=$1} /^  / {print suite $1}'); do
    (($(left) > 30)) || { note "  $t: isolation stopped (time budget)"; break; }
    if timeout 30 "$build/tests/$t" --gtest_color=no --gtest_filter="$name" >>"$OUT/$t.log" 2>&1; then
      note "    isolated $name: ok"
    else
      note "    isolated $name: FAILED"
    fi
  done
}
for t in gpu_kernels_test gpu_model_test; do
  if [[ -x $build/tests/$t ]]; then
    step "$t" 120 "$OUT/$t.log" "$build/tests/$t" --gtest_color=no
    rc=$?
    {
      grep -E '^\[  (PASSED|FAILED|SKIPPED) *\]' "$OUT/$t.log" | grep -E 'tests?[ ,.]' | sed "s/^/  $t: /"
      grep -E '^\[  FAILED  \] .*\(' "$OUT/$t.log" | sed "s/^/  $t: /"
    } >>"$summary"
    ((rc != 0)) && isolate "$t"
  else
    note "$(printf '%-22s %s' "$t" "NOT BUILT")"
  fi
done
if [[ -x $build/bench/gpu_bench ]]; then
  step gpu_bench 150 "$OUT/gpu_bench.txt" "$build/bench/gpu_bench"
else
  note "$(printf '%-22s %s' gpu_bench "NOT BUILT")"
fi

# compute-sanitizer memcheck of the GPU tests (out-of-bounds and misaligned
# accesses, launch errors), appended to their logs, while time is left.
sanitizer=$(command -v compute-sanitizer || true)
[[ -z $sanitizer && -x /usr/local/cuda/bin/compute-sanitizer ]] && sanitizer=/usr/local/cuda/bin/compute-sanitizer
if [[ -n $sanitizer ]] && (($(left) > 200)); then
  for t in gpu_kernels_test gpu_model_test; do
    [[ -x $build/tests/$t ]] || continue
    echo "==== compute-sanitizer memcheck ====" >>"$OUT/$t.log"
    step "memcheck $t" 75 "$OUT/$t.log" "$sanitizer" --tool memcheck --error-exitcode 3 \
      "$build/tests/$t" --gtest_color=no
  done
else
  note "memcheck skipped: ${sanitizer:-no compute-sanitizer} / $(left) s left"
fi

# CPU unit tests of the engine (the same build), while time is left.
if (($(left) > 90)); then
  step build-cpu-tests $(($(left) - 60)) "$OUT/cpu_tests.log" cmake --build "$build" -j "$jobs" &&
    step cpu-tests $(($(left) - 5)) "$OUT/cpu_tests.log" \
      ctest --test-dir "$build" -LE 'build|gpu' -j "$jobs" --output-on-failure
  grep -E 'tests passed|tests failed|\(Failed\)|\(Timeout\)' "$OUT/cpu_tests.log" | sed 's/^/  cpu: /' >>"$summary"
else
  note "cpu unit tests skipped: time budget"
fi

# ---- 5. summary ------------------------------------------------------------
{
  echo
  echo "---- gpu_bench ----"
  cat "$OUT/gpu_bench.txt" 2>/dev/null || echo "(no benchmark output)"
  echo
  echo "total $((SECONDS - start)) s"
} >>"$summary"
set +x
echo "==== summary ===="
cat "$summary"
ls -l "$OUT"
exit 0
