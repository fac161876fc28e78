#!/usr/bin/env bash
# Side-by-side benchmark against llama.cpp (part of `make bench`, not of `make test`):
#   1. builds llama-server/llama-cli/llama-bench from the llama.cpp vendored in the PyPI
#      llama-cpp-python sdist (build_llama_cpp.sh; cached per version, a rerun does not rebuild);
#   2. a converter environment: Debian's python3-torch (PyPI has only CUDA builds of torch) in a
#      venv with the converter's other PyPI requirements (cached next to the build);
#   3. converts the synthetic `small` checkpoint to GGUF f32, exactly (convert_exact.py) and with
#      the stock converter (to show the q/k disagreement); cached per checkpoint content;
#   4. runs peer_bench.py: both servers, same threads, same OpenAI-API workload.
# Usage: tests/bench/peer/run.sh [build_dir] [extra peer_bench.py flags...]
# Environment: LLAMA_CPP_PYTHON_VERSION, HC_PEER_CACHE, PEER_BUILD_JOBS (build_llama_cpp.sh),
#   HC_PEER_PRESET (default small).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build_dir=$(cd "${1:-build}" && pwd)
shift || true
bin="$build_dir/bin"
preset=${HC_PEER_PRESET:-small}

dir=$("$here/build_llama_cpp.sh" | tail -n 1)

# Converter environment. torch: Debian's (1.13, CPU). The rest pinned from the converter's own
# requirements (transformers for the tokenizer, sentencepiece, protobuf) plus safetensors.
venv="$dir/venv-convert"
if [[ ! -f "$venv/.ready" ]]; then
  if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      python3-torch python3-venv >/dev/null
  fi
  rm -rf "$venv"
  /usr/bin/python3 -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check transformers==4.57.6 \
    sentencepiece==0.2.3 safetensors==0.8.0 "protobuf>=4.21.0,<5.0.0"
  touch "$venv/.ready"
fi

checkpoint=$("$bin/hc-checkpoint" --preset "$preset" --resolve)
key=$(cat "$checkpoint/config.json" "$checkpoint"/*.safetensors | sha256sum | cut -c1-16)
gguf_dir="$dir/gguf"
mkdir -p "$gguf_dir"
exact="$gguf_dir/$preset-$key-exact-f32.gguf"
stock="$gguf_dir/$preset-$key-stock-f32.gguf"
[[ -f "$exact" ]] || "$venv/bin/python" "$here/convert_exact.py" --llama_src "$dir/src" \
  --checkpoint "$checkpoint" --out "$exact" >"$gguf_dir/convert-exact.log" 2>&1 ||
  { tail -20 "$gguf_dir/convert-exact.log"; exit 1; }
[[ -f "$stock" ]] || "$venv/bin/python" "$here/convert_exact.py" --llama_src "$dir/src" \
  --checkpoint "$checkpoint" --out "$stock" --stock >"$gguf_dir/convert-stock.log" 2>&1 ||
  { tail -20 "$gguf_dir/convert-stock.log"; exit 1; }

exec /usr/bin/python3 "$here/peer_bench.py" --bin "$bin" --llama_bin "$dir/build/bin" \
  --checkpoint "$checkpoint" --gguf "$exact" --gguf_stock "$stock" "$@"
