#!/usr/bin/env bash
# Builds llama.cpp (CPU only, Release) from the sources vendored in the PyPI
# llama-cpp-python sdist, once per pinned version.
#
# Contract: prints the cache directory on stdout's last line. The directory holds
#   src/      the extracted vendored llama.cpp tree (convert_hf_to_gguf.py, gguf-py)
#   build/bin/llama-server, llama-cli, llama-bench
#   .built    stamp written only after a complete build
# A rerun with the stamp present does nothing (no download, no build). The cache lives
# outside the project's build tree (default ~/.cache/hybridcache/peer/<version>) so that
# `rm -rf build` or a fresh worktree does not cost another ~30 min build on 2 cores.
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE_ROOT="${HC_PEER_CACHE:-${HOME}/.cache/hybridcache/peer}"
DIR="${CACHE_ROOT}/llama-cpp-python-${VERSION}"
JOBS="${PEER_BUILD_JOBS:-2}"

if [[ -f "${DIR}/.built" ]]; then
  echo "${DIR}"
  exit 0
fi

mkdir -p "${DIR}"
SDIST="${DIR}/llama_cpp_python-${VERSION}.tar.gz"
if [[ ! -f "${SDIST}" ]]; then
  # --no-binary forces the sdist (the wheel has no sources); --no-deps keeps pip from
  # resolving the package's runtime dependencies, which the benchmark does not use.
  tmp="$(mktemp -d)"
  python3 -m pip download --quiet --no-binary :all: --no-deps \
    "llama-cpp-python==${VERSION}" -d "${tmp}" >&2
  mv "${tmp}/llama_cpp_python-${VERSION}.tar.gz" "${SDIST}"
  rmdir "${tmp}" 2>/dev/null || true
fi

if [[ ! -f "${DIR}/src/CMakeLists.txt" ]]; then
  rm -rf "${DIR}/src" "${DIR}/extract"
  mkdir -p "${DIR}/extract"
  tar xzf "${SDIST}" -C "${DIR}/extract" "llama_cpp_python-${VERSION}/vendor/llama.cpp"
  mv "${DIR}/extract/llama_cpp_python-${VERSION}/vendor/llama.cpp" "${DIR}/src"
  rm -rf "${DIR}/extract"
fi

# GGML_NATIVE tunes ggml to this CPU (as our kernels are), the fair comparison on one machine.
cmake -S "${DIR}/src" -B "${DIR}/build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF \
  -DGGML_VULKAN=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON >&2
cmake --build "${DIR}/build" -j "${JOBS}" --target llama-server llama-cli llama-bench >&2
touch "${DIR}/.built"
echo "${DIR}"
