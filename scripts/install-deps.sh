#!/usr/bin/env bash
# Installs the Debian packages HybridCache needs, and only the missing ones.
# Idempotent: when everything is present it returns in well under a second.
# Usage: scripts/install-deps.sh [--engine-only]
set -euo pipefail

engine_only=0
[[ "${1:-}" == "--engine-only" ]] && engine_only=1

pkgs=(build-essential cmake ninja-build ccache pkg-config libgtest-dev libgmock-dev
      libbenchmark-dev libopenblas-dev)
if [[ $engine_only == 0 ]]; then
  pkgs+=(libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
         libabsl-dev prometheus-cpp-dev grpc-proto libhiredis-dev
         python3-grpcio python3-protobuf python3-grpc-tools
         redis-server prometheus curl)
  # kubectl may come from another vendor's package; only install Debian's when absent.
  command -v kubectl >/dev/null 2>&1 || pkgs+=(kubernetes-client)
fi

missing=()
for p in "${pkgs[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
