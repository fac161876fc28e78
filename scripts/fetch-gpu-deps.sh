#!/usr/bin/env bash
# Downloads (does not install) the Debian packages the GPU build needs besides
# CUDA, CMake and a compiler -- Abseil, GoogleTest/GoogleMock, Google
# Benchmark, Oniguruma and ICU (the tokenizer) -- into .gpu-deps/ (git-ignored).
# Run it on a Debian 12 machine with apt, for a GPU machine that lacks these packages or network access:
# copy .gpu-deps/ into the checkout there, and tests/gpu/run.sh unpacks the
# .debs with `dpkg -x` into a private prefix (nothing is installed).
#
# Usage: scripts/fetch-gpu-deps.sh [dest]   (default: <repo>/.gpu-deps)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$repo/.gpu-deps}
packages=(libabsl-dev libabsl20220623 libgtest-dev libgmock-dev libbenchmark-dev
          libbenchmark1debian libonig-dev libonig5 libicu-dev libicu72)
mkdir -p "$dest"
cd "$dest"
if ! apt-get download "${packages[@]}"; then
  echo "apt-get download failed; refreshing the package lists once" >&2
  apt-get update
  apt-get download "${packages[@]}"
fi
for p in "${packages[@]}"; do
  ls "${p}"_*.deb >/dev/null 2>&1 || { echo "missing ${p}_*.deb in $dest" >&2; exit 1; }
done
ls -l "$dest"
du -sh "$dest"
