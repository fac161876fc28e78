#!/usr/bin/env bash
# Fails when a C++/CUDA source of the repository is not formatted as
# .clang-format says (Google style, 100 columns). Fix with:
#   git ls-files '*.cc' '*.h' '*.cu' '*.cuh' | xargs clang-format-14 -i
set -euo pipefail
cd "$(dirname "$0")/../.."
clang_format=${HC_CLANG_FORMAT:-clang-format-14}
mapfile -t files < <(git ls-files '*.cc' '*.h' '*.cu' '*.cuh')
if [[ ${#files[@]} -eq 0 ]]; then
  echo "check_format: no sources found (not a git checkout?)" >&2
  exit 1
fi
if ! "$clang_format" --dry-run --Werror "${files[@]}"; then
  echo "check_format: the files above are not formatted; run:" >&2
  echo "  git ls-files '*.cc' '*.h' '*.cu' '*.cuh' | xargs $clang_format -i" >&2
  exit 1
fi
echo "check_format: ${#files[@]} files formatted"
