#!/usr/bin/env bash
# Builds the router and its tests with a sanitizer into build-<kind>/ and runs
# them: the router's unit tests (fake workers, real gRPC) and the integration
# soak (tests/integration/test_soak.py) with the sanitized hc-router in front
# of workers from the regular build (which must exist: `make build`).
#   scripts/run-sanitized-tests.sh asan   # AddressSanitizer + UndefinedBehaviorSanitizer
#   scripts/run-sanitized-tests.sh tsan   # ThreadSanitizer
# Any sanitizer report fails the run: the unit tests halt on the first one, and
# the soak checks the router's log and exit code.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:?usage: $0 asan|tsan}
case "$kind" in
  asan) sanitize="address,undefined" ;;
  tsan) sanitize="thread" ;;
  *) echo "usage: $0 asan|tsan" >&2; exit 2 ;;
esac
dir="build-$kind"
targets=(hc-router router_turn_test router_chat_service_test router_ledger_test
         router_file_ledger_test router_worker_pool_test router_replica_test)
if [[ ! -f "$dir/build.ninja" ]]; then
  # CUDA off: the sanitizers do not apply to device code and the router needs none.
  cmake -S . -B "$dir" -G Ninja -DHC_SANITIZE="$sanitize" -DHC_WITH_CUDA=OFF
fi
cmake --build "$dir" -j "$(nproc)" --target "${targets[@]}"

supp="$PWD/tests/sanitizers"
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:abort_on_error=0"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$supp/tsan.supp:print_suppressions=0"

failed=0
for t in "${targets[@]:1}"; do
  echo "=== $kind: $t"
  if ! "$dir/tests/$t" --gtest_brief=1; then failed=1; fi
done
echo "=== $kind: integration soak (sanitized hc-router, regular workers)"
if ! HC_ROUTER_BIN="$PWD/$dir/bin/hc-router" HC_BUILD_DIR="$PWD/build" \
     /usr/bin/python3 -m unittest -v tests/integration/test_soak.py; then
  failed=1
fi
if [[ $failed -ne 0 ]]; then
  echo "$kind: FAILED" >&2
  exit 1
fi
echo "$kind: clean"
