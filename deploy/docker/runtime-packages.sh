#!/usr/bin/env bash
# Prints the Debian/Ubuntu packages that own the shared libraries the given
# binaries load (one per line, sorted), so an image's runtime stage can
# install exactly those. libcuda.so.1 is skipped: the NVIDIA container runtime
# mounts the host driver's. Fails if a library belongs to no package.
# Usage: runtime-packages.sh BINARY...
set -euo pipefail
[[ $# -gt 0 ]] || { echo "usage: $0 BINARY..." >&2; exit 2; }

owner() {  # dpkg's record may use /lib or /usr/lib (usrmerge), or the real file
  dpkg -S "$1" 2>/dev/null || dpkg -S "/usr$1" 2>/dev/null || dpkg -S "$(readlink -f "$1")" 2>/dev/null || {
    echo "runtime-packages: no package owns $1" >&2
    return 1
  }
}

libs=$(ldd "$@" | awk '/=> not found/ && !/libcuda\.so/ {print "missing " $1} /=> \// {print $3}' | sort -u)
if grep -q '^missing ' <<<"$libs"; then
  echo "runtime-packages: unresolved libraries: $(grep '^missing ' <<<"$libs" | cut -d' ' -f2 | tr '\n' ' ')" >&2
  exit 1
fi
while read -r lib; do
  [[ -z "$lib" || "$lib" == */libcuda.so* ]] && continue
  owner "$lib" | head -n1 | sed 's/: .*//'
done <<<"$libs" | sort -u
