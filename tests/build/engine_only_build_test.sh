#!/usr/bin/env bash
# Usage: engine_only_build_test.sh <source dir> <build dir>
# Passes when the engine-only configuration builds and no target in it links
# gRPC, protobuf or prometheus-cpp.
set -euo pipefail
src=$1
out=$2
cmake -S "$src" -B "$out" -G Ninja -DHC_ENGINE_ONLY=ON >"$out.configure.log" 2>&1 || {
  cat "$out.configure.log"; exit 1; }
cmake --build "$out" -j "$(nproc)"

# Link lines of every target in the engine-only tree.
if grep -E '^ *LINK_LIBRARIES|^ *LINK_FLAGS' "$out/build.ninja" | grep -qiE 'grpc|protobuf|prometheus'; then
  echo "FAIL: an engine-only target links gRPC/protobuf/prometheus:" >&2
  grep -E '^ *LINK_LIBRARIES' "$out/build.ninja" | grep -iE 'grpc|protobuf|prometheus' >&2
  exit 1
fi
shopt -s nullglob
checked=0
for bin in "$out"/tests/* "$out"/bench/* "$out"/bin/*; do
  [[ -x "$bin" && -f "$bin" ]] || continue
  if ldd "$bin" | grep -qiE 'grpc|protobuf|prometheus'; then
    echo "FAIL: $bin loads gRPC/protobuf/prometheus" >&2
    ldd "$bin" >&2
    exit 1
  fi
  checked=$((checked + 1))
done
if [[ $checked -eq 0 ]]; then
  echo "FAIL: the engine-only build produced no binaries to check" >&2
  exit 1
fi
echo "engine-only build OK: $checked binaries, none links gRPC, protobuf or prometheus"
