#!/usr/bin/env bash
# Builds Debian's abseil, instrumented with ThreadSanitizer, as shared libraries
# with the same sonames and ABI as the installed libabsl20220623, into
#   <dir>/lib/libabsl_*.so.20220623
# (default dir: build-tsan/absl-tsan). Prints nothing else on stdout than that
# lib directory, so callers can do  LD_LIBRARY_PATH=$(scripts/build-tsan-abseil.sh).
#
# Why: Debian's abseil and gRPC are not instrumented. An uninstrumented
# absl::Mutex creates no happens-before edges for TSan, so every field our code
# guards with an absl::Mutex is reported as a race, and so is every handoff that
# gRPC orders with grpc_core::Mutex (a wrapper of absl::Mutex). Loading these
# libraries instead of Debian's (LD_LIBRARY_PATH, for the sanitized router only)
# makes every absl::Mutex in the process - ours and libgrpc's - visible to TSan.
#
# The source is Debian's own source package for exactly the installed version
# (apt verifies it against the signed archive index), with Debian's patches
# applied: they set the inline namespace, options.h and the SOVERSION, i.e. the
# ABI. The build is checked against the installed headers before it is used.
# Built once; later calls only print the directory (a stamp records the version).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(realpath -m "${1:-build-tsan/absl-tsan}")
pkg=libabsl20220623
version=$(dpkg-query -W -f='${source:Version}' "$pkg")   # e.g. 20220623.1-1+deb12u2
upstream=${version%-*}                                     # 20220623.1
stamp="$dir/lib/.built-$version"
if [[ -f "$stamp" ]]; then
  echo "$dir/lib"
  exit 0
fi
exec 3>&1 1>&2  # progress to stderr; only the result goes to the caller's stdout

# ---- Source: Debian's source package, fetched without touching the machine's
# apt configuration (a private sources list and list directory).
src="$dir/src"
mkdir -p "$src/apt/lists/partial"
if [[ ! -f "$src/abseil_$version.dsc" ]]; then
  cat > "$src/apt/sources.list" <<'EOF'
deb-src http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian bookworm-updates main
deb-src http://deb.debian.org/debian-security bookworm-security main
EOF
  apt_opts=(-o "Dir::Etc::sourcelist=$src/apt/sources.list" -o "Dir::Etc::sourceparts=-"
            -o "Dir::State::Lists=$src/apt/lists")
  apt-get "${apt_opts[@]}" update
  # The exact installed version: a different one could have a different ABI.
  (cd "$src" && apt-get "${apt_opts[@]}" source --download-only "abseil=$version")
fi

# ---- Unpack and apply Debian's patches in series order (what dpkg-source -x
# does; done by hand so dpkg-dev is not needed). Always from scratch, so a
# half-patched tree from an interrupted run is never built.
tree="$src/abseil-$upstream"
rm -rf "$tree" "$src/debian"
tar -xzf "$src/abseil_$upstream.orig.tar.gz" -C "$src"
tar -xJf "$src/abseil_$version.debian.tar.xz" -C "$tree"
while read -r p _; do
  [[ -z "$p" || "$p" == \#* ]] && continue
  patch -d "$tree" -p1 --quiet --forward < "$tree/debian/patches/$p"
done < "$tree/debian/patches/series"

# ---- Build as debian/rules does for the shared flavour (C++17, shared,
# CMAKE_BUILD_TYPE None: no NDEBUG), plus TSan. -O1 keeps the instrumented
# library fast enough; frame pointers give full report stacks.
flags="-fsanitize=thread -O1 -g -fno-omit-frame-pointer"
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache); fi
cmake -S "$tree" -B "$dir/build" -G Ninja "${launcher[@]}" \
  -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_STANDARD=17 -DABSL_PROPAGATE_CXX_STD=ON \
  -DBUILD_SHARED_LIBS=ON -DBUILD_TESTING=OFF \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=thread" \
  -DCMAKE_INSTALL_PREFIX="$dir/install" -DCMAKE_INSTALL_LIBDIR=lib
cmake --build "$dir/build" -j "${HC_JOBS:-$(nproc)}"
rm -rf "$dir/install"
cmake --install "$dir/build" >/dev/null

# ---- ABI checks before use. The headers (options.h: inline namespace, std
# type aliases, hardening) must equal the installed ones our code and libgrpc
# were compiled against, and every installed library must have its counterpart
# under the same soname.
if ! diff -r /usr/include/absl "$dir/install/include/absl" >/dev/null; then
  echo "build-tsan-abseil: built headers differ from /usr/include/absl (not the installed version?)" >&2
  exit 1
fi
libdir=$(dirname "$(dpkg -L "$pkg" | grep -m1 '/libabsl_.*\.so\.')")
missing=0
for f in "$libdir"/libabsl_*.so.*; do
  soname=$(basename "$f")
  if [[ ! -e "$dir/install/lib/$soname" ]]; then
    echo "build-tsan-abseil: no TSan build of $soname" >&2
    missing=1
  fi
done
[[ $missing -eq 0 ]] || exit 1

# Publish: only the shared objects, in a directory of their own (swap in place).
rm -rf "$dir/lib.new"
mkdir -p "$dir/lib.new"
cp -a "$dir/install/lib"/libabsl_*.so.* "$dir/lib.new/"
rm -rf "$dir/lib"
mv "$dir/lib.new" "$dir/lib"
touch "$dir/lib/.built-$version"
echo "$dir/lib" >&3
