#!/usr/bin/env bash
# Runs every registered test (unit, integration, python: all are CTest tests)
# and prints CTest's summary. Exits non-zero on any failure.
set -euo pipefail
build_dir=${1:-build}
shift || true
jobs=$(nproc)
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" "$@"
