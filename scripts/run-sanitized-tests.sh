#!/usr/bin/env bash
# Builds the router and its tests with a sanitizer into build-<kind>/ and runs
# them: the router's unit tests (fake workers, real gRPC), the integration
# soak (tests/integration/test_soak.py) and the wire fuzz
# (tests/integration/test_wire_fuzz.py) with the sanitized hc-router in front
# of workers from the regular build (which must exist: `make build`).
#   scripts/run-sanitized-tests.sh asan   # AddressSanitizer + UndefinedBehaviorSanitizer
#   scripts/run-sanitized-tests.sh tsan   # ThreadSanitizer
# Any sanitizer report fails the run: the unit tests halt on the first one, and
# the soak checks the router's log and exit code.
#
# tsan: Debian's abseil and gRPC are not instrumented, and an uninstrumented
# absl::Mutex gives TSan no happens-before edges, so everything guarded by one
# (ours, and gRPC's grpc_core::Mutex) would be reported. The router's processes
# therefore run with an instrumented build of the same abseil (same sonames and
# ABI; scripts/build-tsan-abseil.sh, built once into build-tsan/absl-tsan) first
# on LD_LIBRARY_PATH: our code and libgrpc then share one instrumented Mutex.
# Only the sanitized router gets it: the soak's workers come from the regular
# build and keep Debian's abseil.
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
         router_file_ledger_test router_worker_pool_test router_replica_test
         router_raw_request_test)
if [[ ! -f "$dir/build.ninja" ]]; then
  # CUDA off: the sanitizers do not apply to device code and the router needs none.
  cmake -S . -B "$dir" -G Ninja -DHC_SANITIZE="$sanitize" -DHC_WITH_CUDA=OFF
fi
cmake --build "$dir" -j "$(nproc)" --target "${targets[@]}"

# Prefix that runs a router process (unit test or hc-router) under the sanitizer.
run=()
if [[ "$kind" == tsan ]]; then
  HC_JOBS=$(nproc) scripts/build-tsan-abseil.sh "$PWD/$dir/absl-tsan" >/dev/null
  absl_lib="$PWD/$dir/absl-tsan/lib"
  run=(env "LD_LIBRARY_PATH=$absl_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  # Every abseil library of every binary, libgrpc's included, must come from
  # there, and every symbol must resolve (ldd -r relocates): a library from
  # /usr would bring back the uninstrumented Mutex, a missing symbol an ABI
  # mismatch.
  for t in "${targets[@]}"; do
    bin="$dir/tests/$t"
    [[ "$t" == hc-router ]] && bin="$dir/bin/hc-router"
    deps=$("${run[@]}" ldd -r "$bin" 2>&1)
    if grep -q 'undefined symbol' <<<"$deps" ||
       grep 'libabsl_' <<<"$deps" | grep -qv "=> $absl_lib/"; then
      echo "tsan: $bin does not resolve abseil from $absl_lib:" >&2
      grep -e 'undefined symbol' -e libabsl_ <<<"$deps" | grep -v "=> $absl_lib/" >&2
      exit 1
    fi
  done
  # hc_harness runs HC_ROUTER_BIN with the test's environment, which the
  # workers share: the library path is set for the router alone.
  router="$PWD/$dir/hc-router-tsan"
  printf '#!/usr/bin/env bash\nexec env LD_LIBRARY_PATH=%q %q "$@"\n' \
    "$absl_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$PWD/$dir/bin/hc-router" > "$router"
  chmod +x "$router"
else
  router="$PWD/$dir/bin/hc-router"
fi

supp="$PWD/tests/sanitizers"
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:abort_on_error=0"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
# ignore_noninstrumented_modules: interceptors (malloc/free, memcpy, sendmsg,
# ...) called from uninstrumented libraries (libgrpc, libgpr, libprotobuf,
# libstdc++) are not checked. Those calls touch gRPC's own memory, handed
# between gRPC threads by synchronisation TSan cannot see, and would otherwise
# be reported by the hundred. What this gives up: a memcpy/memcmp that such a
# library makes on our data (protobuf copying a string) is not checked either;
# their inlined accesses never were. Everything compiled here (and the TSan
# abseil) stays checked.
# history_size=7 (the most): the earlier access of a race keeps its stack, which
# the suppressions (tests/sanitizers/tsan.supp) need to recognise gRPC's side.
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1:history_size=7:suppressions=$supp/tsan.supp:print_suppressions=0"

failed=0
for t in "${targets[@]:1}"; do
  echo "=== $kind: $t"
  if ! "${run[@]}" "$dir/tests/$t" --gtest_brief=1; then failed=1; fi
done
echo "=== $kind: integration soak (sanitized hc-router, regular workers)"
if ! HC_ROUTER_BIN="$router" HC_BUILD_DIR="$PWD/build" \
     /usr/bin/python3 -m unittest -v tests/integration/test_soak.py; then
  failed=1
fi
echo "=== $kind: wire fuzz (sanitized hc-router, regular worker)"
if ! HC_ROUTER_BIN="$router" HC_BUILD_DIR="$PWD/build" \
     /usr/bin/python3 -m unittest -v tests/integration/test_wire_fuzz.py; then
  failed=1
fi
if [[ $failed -ne 0 ]]; then
  echo "$kind: FAILED" >&2
  exit 1
fi
echo "$kind: clean"
