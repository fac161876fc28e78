#!/usr/bin/env bash
# The README's `make test` on a bare Debian 12 machine, to catch what the
# usual (well-stocked) machine hides: packages the project uses but never
# installs. Needs root on Debian or Ubuntu (debootstrap, chroot, mounts).
#
#   1. a Debian 12 root: `debootstrap --variant=minbase bookworm` plus only a
#      compiler toolchain, CMake, git, Python 3, GoogleTest and Google
#      Benchmark, cached as a tarball (see --cache-dir) and unpacked afresh for
#      every check, so each starts from the same pristine base;
#   2. this machine's CA certificates, pip configuration (/etc/pip.conf, the
#      user's pip.conf, PIP_* variables), proxy variables and apt proxy
#      settings copied in (registries behind a proxy need them), nothing else;
#   3. a clean clone of the current commit (HEAD, not uncommitted changes);
#   4. `make test` in it, in a chroot with /proc, /sys, /dev, /dev/pts and
#      /dev/shm mounted, all unmounted on exit by a trap;
#   5. with --run: `make run` in the background (on free ports: the chroot
#      shares this machine's network), one turn with `build/bin/hcctl chat`
#      once the router and both workers listen, then SIGINT to its process
#      group (Ctrl-C), after which every server must drain and exit 0.
# It prints each phase's verdict and wall time, what apt and pip downloaded,
# and exits 0 only when every phase passed.
#
# ccache starts cold inside the root (the host's cache is not shared), so the
# time is the honest fresh-machine time.
#
# Usage: scripts/fresh-check.sh [--run] [--run-only] [--keep] [--cache-dir DIR]
#                               [--mirror URL] [--security-mirror URL]
#   --run        also run the stack and send one turn (after make test)
#   --run-only   only that (make run builds what it needs)
#   --keep       leave the root (unmounted) for inspection; printed at the end
#   --cache-dir  where the base tarball is kept (default $HC_FRESH_CACHE, else
#                /var/cache/hybridcache-fresh)
#   --mirror, --security-mirror  Debian archives (default deb.debian.org)
# The root is unpacked under $TMPDIR (default /var/tmp); the build needs a few GB.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
do_test=1 do_run=0 keep=0
cache_dir=${HC_FRESH_CACHE:-/var/cache/hybridcache-fresh}
mirror=http://deb.debian.org/debian
security_mirror=http://deb.debian.org/debian-security
suite=bookworm
# What the issue's "bare machine" holds besides minbase. Everything else must
# come from the project's own `make` targets.
toolchain=(build-essential cmake git python3 libgtest-dev libbenchmark-dev)

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --run) do_run=1; shift ;;
    --run-only) do_run=1; do_test=0; shift ;;
    --keep) keep=1; shift ;;
    --cache-dir) cache_dir=$2; shift 2 ;;
    --mirror) mirror=$2; shift 2 ;;
    --security-mirror) security_mirror=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "fresh-check: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

log() { printf 'fresh-check: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }
fmt_s() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, chroot and mounts); try: sudo $0 $*"
command -v apt-get >/dev/null || die "needs a Debian or Ubuntu host (apt-get)"
command -v git >/dev/null || die "needs git on the host to clone the repository"

# --- host tools: debootstrap (and Debian's archive key, absent on Ubuntu) ----
host_missing=()
command -v debootstrap >/dev/null || host_missing+=(debootstrap)
[[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] || host_missing+=(debian-archive-keyring)
if [[ ${#host_missing[@]} -gt 0 ]]; then
  log "installing ${host_missing[*]} on the host"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${host_missing[@]}" >/dev/null
fi

commit=$(git -C "$repo" rev-parse HEAD)
if [[ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]]; then
  log "note: uncommitted changes are not checked; this checks commit ${commit:0:12}"
fi

# --- state for the trap -------------------------------------------------------
root=""       # the chroot of this check
build_tmp=""  # a base being built
cleanup_root() {  # $1 = directory: stop what runs in it, unmount all under it
  local dir=$1 p mnt
  [[ -n "$dir" && -d "$dir" ]] || return 0
  # Processes left in the chroot (a stack, a test server) hold the mounts busy.
  for p in /proc/[0-9]*; do
    if [[ "$(readlink "$p/root" 2>/dev/null)" == "$dir" ]]; then kill -KILL "${p#/proc/}" 2>/dev/null || true; fi
  done
  # Deepest first; lazily if still busy. Never remove a root with a mount left.
  while read -r mnt; do
    umount "$mnt" 2>/dev/null || umount -l "$mnt" || true
  done < <(awk -v d="$dir" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts | sort -r)
  if awk -v d="$dir" '$2 == d || index($2, d "/") == 1 {f = 1} END {exit !f}' /proc/self/mounts; then
    log "WARNING: mounts left under $dir; not removing it"
    return 1
  fi
}
# shellcheck disable=SC2317  # invoked by the trap
on_exit() {
  local rc=$?
  if [[ -n "$build_tmp" ]]; then
    cleanup_root "$build_tmp" && rm -rf --one-file-system "$build_tmp"
  fi
  if [[ -n "$root" ]]; then
    if cleanup_root "$root" && [[ $keep == 0 ]]; then
      rm -rf --one-file-system "$root"
    else
      log "root kept at $root"
    fi
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# /proc, /sys (read-only), and a /dev of its own: a tmpfs with the host's
# character devices bound in, a private devpts and a private /dev/shm (so
# nothing in the chroot can touch the host's /dev).
mount_root() {  # $1 = root
  local r=$1 n
  # The root a mount point of its own, as / is on a real machine (tools that
  # change mount propagation, e.g. `unshare --mount` in the netns pods test,
  # need that), and private, so nothing mounted inside reaches the host.
  mount --bind "$r" "$r"
  mount --make-rprivate "$r"
  mount -t proc proc "$r/proc"
  mount --bind /sys "$r/sys"
  mount -o remount,bind,ro "$r/sys"
  mount -t tmpfs -o mode=755,nosuid hc-dev "$r/dev"
  for n in null zero full random urandom tty; do
    touch "$r/dev/$n"
    mount --bind "/dev/$n" "$r/dev/$n"
  done
  mkdir -p "$r/dev/pts" "$r/dev/shm"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$r/dev/pts"
  ln -sf pts/ptmx "$r/dev/ptmx"
  mount -t tmpfs -o mode=1777,nosuid,nodev shm "$r/dev/shm"
  ln -sf /proc/self/fd "$r/dev/fd"
  ln -sf /proc/self/fd/0 "$r/dev/stdin"
  ln -sf /proc/self/fd/1 "$r/dev/stdout"
  ln -sf /proc/self/fd/2 "$r/dev/stderr"
}

# The host's network settings for registries: CA bundle (also as a local CA
# so that installing Debian's ca-certificates in the root keeps it), pip
# configuration, apt proxy settings, name resolution.
copy_host_settings() {  # $1 = root
  local r=$1 f
  if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    mkdir -p "$r/etc/ssl/certs" "$r/usr/local/share/ca-certificates"
    cp -L /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
    cp -L /etc/ssl/certs/ca-certificates.crt "$r/usr/local/share/ca-certificates/host-bundle.crt"
  fi
  [[ -f /etc/pip.conf ]] && cp -L /etc/pip.conf "$r/etc/pip.conf"
  for f in "${XDG_CONFIG_HOME:-$HOME/.config}/pip/pip.conf" "$HOME/.pip/pip.conf"; do
    if [[ -f "$f" ]]; then
      mkdir -p "$r/root/.config/pip"
      cp -L "$f" "$r/root/.config/pip/pip.conf"
      break
    fi
  done
  mkdir -p "$r/etc/apt/apt.conf.d"
  for f in /etc/apt/apt.conf /etc/apt/apt.conf.d/*; do
    [[ -f "$f" ]] && grep -qi 'proxy' "$f" && cp -L "$f" "$r/etc/apt/apt.conf.d/90host-$(basename "$f")"
  done
  cp -L /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
  cp -L /etc/hosts "$r/etc/hosts" 2>/dev/null || true
}

# The environment inside: a login-like root shell, plus what pip and proxies
# read from the environment here. Nothing else of the host (no CCACHE_*).
# A PIP_* value that is a local path absent from the root (a host wheel
# directory, say) is left out: the fresh machine does not have it either.
base_env=(HOME=/root USER=root LOGNAME=root SHELL=/bin/bash LANG=C.UTF-8 TERM=dumb
          PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
chroot_env=()
set_chroot_env() {  # $1 = root
  local name value
  chroot_env=("${base_env[@]}")
  while IFS='=' read -r name _; do
    case "$name" in
      PIP_*|http_proxy|https_proxy|no_proxy|HTTP_PROXY|HTTPS_PROXY|NO_PROXY)
        value=${!name}
        if [[ $name == PIP_* && $value == /* && ! -e "$1$value" ]]; then
          log "not passing $name=$value (no such path in the root)"
          continue
        fi
        chroot_env+=("$name=$value") ;;
    esac
  done < <(env)
}
in_root() {  # $1 = root, rest = a bash command run inside as root
  local r=$1
  shift
  chroot "$r" /usr/bin/env -i "${chroot_env[@]}" /bin/bash -c "$*"
}

# --- 1. the base (cached) ---------------------------------------------------------
# The key covers what goes into the base; a change makes a new one.
base_key=$(printf '%s\n' "v1" "$suite" "$mirror" "$security_mirror" "${toolchain[@]}" "$(uname -m)" |
  sha256sum | cut -c1-16)
base="$cache_dir/$suite-minbase-$base_key.tar"
mkdir -p "$cache_dir"
exec 9>"$cache_dir/.lock"
flock 9  # one base build at a time; a concurrent check waits, then reuses it
if [[ ! -f "$base" ]]; then
  t0=$SECONDS
  log "building the base ($suite minbase + ${toolchain[*]}) into $base"
  build_tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/hc-fresh-base.XXXXXX")
  chmod 755 "$build_tmp"  # it becomes / (mktemp's 0700 would lock out apt's _apt user)
  debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    "$suite" "$build_tmp" "$mirror" >"$cache_dir/debootstrap.log" 2>&1 ||
    { tail -20 "$cache_dir/debootstrap.log" >&2; die "debootstrap failed (log: $cache_dir/debootstrap.log)"; }
  # What a Debian 12 install has in its sources: the release, its updates and
  # the security archive.
  cat >"$build_tmp/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
EOF
  copy_host_settings "$build_tmp"
  set_chroot_env "$build_tmp"
  mount_root "$build_tmp"
  in_root "$build_tmp" "export DEBIAN_FRONTEND=noninteractive && apt-get update -qq &&
    apt-get install -y -qq --no-install-recommends ${toolchain[*]} >/dev/null && apt-get clean"
  cleanup_root "$build_tmp"
  # A fresh machine starts without package lists or downloaded archives.
  rm -rf "$build_tmp"/var/lib/apt/lists/* "$build_tmp"/var/cache/apt/*.bin
  tar --numeric-owner -C "$build_tmp" -cpf "$base.tmp" .
  mv "$base.tmp" "$base"
  rm -rf --one-file-system "$build_tmp"
  build_tmp=""
  log "base built in $(fmt_s $((SECONDS - t0)))"
fi
flock -u 9

# --- 2, 3. a pristine root with a clean clone ----------------------------------
# realpath: processes in the chroot are found by their root, the real path.
root=$(realpath "$(mktemp -d "${TMPDIR:-/var/tmp}/hc-fresh.XXXXXX")")
tar --numeric-owner -C "$root" -xpf "$base"
chmod 755 "$root"  # it is /
copy_host_settings "$root"
set_chroot_env "$root"
src=/root/hybridcache
git clone -q --no-local --no-checkout "$repo" "$root$src"
git -C "$root$src" checkout -q --detach "$commit"
mount_root "$root"
log "root $root: $suite minbase + ${toolchain[*]}, clone of ${commit:0:12} at $src"

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
log "host: $(nproc) CPUs ($cpu), load $(cut -d' ' -f1-3 /proc/loadavg)"

# Each output line gets the elapsed time of its phase, to read the log later.
stamp() { local t0=$SECONDS line; while IFS= read -r line; do printf '[%5ds] %s\n' $((SECONDS - t0)) "$line"; done; }

failed=0
summary=()

# --- 4. make test ------------------------------------------------------------------
if [[ $do_test == 1 ]]; then
  log "make test (deps, configure, build with a cold ccache, every test) ..."
  t0=$SECONDS
  rc=0
  # pipefail: the pipeline's status is make's.
  in_root "$root" "cd $src && make test" 2>&1 | stamp | tee "$root/tmp/make-test.log" || rc=$?
  elapsed=$((SECONDS - t0))
  verdict=$(grep -E '[0-9]+% tests passed' "$root/tmp/make-test.log" | tail -1 | sed 's/^\[ *[0-9]*s\] //' || true)
  # Where the time went, from the stamps: the first build step, the first test.
  at() { grep -m1 -E "$1" "$root/tmp/make-test.log" | sed -E 's/^\[ *([0-9]+)s\].*/\1/' || true; }
  build_at=$(at '^\[ *[0-9]+s\] \[1/[0-9]+\] ') tests_at=$(at '^\[ *[0-9]+s\] +Start +1: ')
  if [[ -n "$build_at" && -n "$tests_at" ]]; then
    verdict+="; packages + configure $(fmt_s "$build_at"), build $(fmt_s $((tests_at - build_at)))"
    verdict+=", tests $(fmt_s $((elapsed - tests_at)))"
  fi
  if [[ $rc == 0 ]]; then
    summary+=("make test: PASS in $(fmt_s $elapsed) (${verdict:-no CTest summary})")
  else
    failed=1
    summary+=("make test: FAIL (exit $rc) after $(fmt_s $elapsed) (${verdict:-no CTest summary})")
  fi
fi

# --- 5. make run + one turn ----------------------------------------------------
if [[ $do_run == 1 ]]; then
  log "make run in the background, one turn with hcctl chat, then SIGINT ..."
  t0=$SECONDS
  run_log="$root/tmp/make-run.log"
  # The chroot shares this machine's network: run-stack.sh's default ports may
  # be taken here, so pick 6 consecutive free ones (router, its metrics, two
  # workers, their metrics).
  ports=$(in_root "$root" "python3 - <<'PY'
import random, socket
for _ in range(200):
    base = random.randrange(20000, 40000)
    socks = []
    try:
        for p in range(base, base + 6):
            s = socket.socket()
            socks.append(s)
            s.bind(('127.0.0.1', p))
        print(base)
        break
    except OSError:
        pass
    finally:
        for s in socks:
            s.close()
PY")
  [[ -n "$ports" ]] || die "no 6 consecutive free ports"
  run_env=(HC_ROUTER_PORT="$ports" HC_ROUTER_METRICS_PORT=$((ports + 1)) HC_WORKER_PORT=$((ports + 2))
           HC_WORKER_METRICS_PORT=$((ports + 4)))
  # Its own session and process group, so SIGINT reaches make, run-stack.sh
  # and the servers, as Ctrl-C in a terminal would; SIGINT back at its default
  # (a background job of this script inherits it ignored, which would hide
  # how the stack handles Ctrl-C).
  setsid env --default-signal=INT chroot "$root" /usr/bin/env -i "${chroot_env[@]}" "${run_env[@]}" \
    /bin/bash -c "cd $src && exec make run" >"$run_log" 2>&1 </dev/null &
  run_pid=$!
  run_ok=1 why=""
  # make run builds first when make test did not run: allow for a full build.
  deadline=$((SECONDS + (do_test == 1 ? 300 : 5400)))
  until grep -q 'hc-router listening on' "$run_log" && grep -q 'hc-worker worker0 listening on' "$run_log" &&
        grep -q 'hc-worker worker1 listening on' "$run_log"; do
    if ! kill -0 "$run_pid" 2>/dev/null; then run_ok=0 why="make run exited before listening"; break; fi
    if ((SECONDS > deadline)); then run_ok=0 why="router and workers not listening in time"; break; fi
    sleep 2
  done
  if [[ $run_ok == 1 ]]; then
    grep -E 'listening on' "$run_log" | sed 's/^/  /' >&2
    turn_rc=0
    # hcctl chat reads one turn per stdin line (as in the README's first
    # session); its stats line goes to stderr.
    in_root "$root" "cd $src && echo 'Hello from a fresh machine' |
      timeout 120 build/bin/hcctl chat --conversation fresh-check --router 127.0.0.1:$ports" \
      >"$root/tmp/hcctl.out" 2>"$root/tmp/hcctl.err" || turn_rc=$?
    sed 's/^/  hcctl: /' "$root/tmp/hcctl.err" >&2
    if [[ $turn_rc != 0 ]]; then
      run_ok=0 why="hcctl chat exited $turn_rc"
    elif ! grep -qE '^\[round [0-9]+ on [^ ]+ \| prompt [1-9][0-9]* tokens, cached [0-9]+ \| completion [1-9]' "$root/tmp/hcctl.err"; then
      run_ok=0 why="hcctl chat printed no completed turn"
    fi
  fi
  # Stop the stack with SIGINT and expect it to drain and exit.
  kill -INT -- "-$run_pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$run_pid" 2>/dev/null || break; sleep 1; done
  if kill -0 "$run_pid" 2>/dev/null; then
    run_ok=0 why="${why:+$why; }the stack did not stop within 60 s of SIGINT"
    kill -KILL -- "-$run_pid" 2>/dev/null || true
  elif ! grep -qx 'stopped' "$run_log"; then
    # run-stack.sh says "stopped" only when every server exited 0 after its drain.
    run_ok=0 why="${why:+$why; }the stack did not stop cleanly after SIGINT"
  fi
  wait "$run_pid" 2>/dev/null || true
  if [[ $run_ok == 1 ]]; then
    summary+=("make run + one hcctl turn + SIGINT: PASS in $(fmt_s $((SECONDS - t0)))")
  else
    failed=1
    tail -30 "$run_log" | sed 's/^/  make run: /' >&2
    summary+=("make run + one hcctl turn + SIGINT: FAIL ($why) after $(fmt_s $((SECONDS - t0)))")
  fi
fi

# --- what the fresh machine downloaded -------------------------------------------
# apt keeps the archives it fetched (the base was cleaned of them). pip's HTTP
# cache is not a measure (a proxy may forbid caching): count what it installed.
debs=("$root"/var/cache/apt/archives/*.deb)
if [[ -e "${debs[0]}" ]]; then
  summary+=("apt downloaded ${#debs[@]} packages, $(du -sch "${debs[@]}" | tail -1 | cut -f1) (plus the package lists)")
fi
site=$(in_root "$root" "python3 -c 'import sysconfig; print(sysconfig.get_path(\"purelib\"))'")
if [[ -d "$root$site" ]]; then
  wheels=$(in_root "$root" "python3 -m pip list --path $site --format=freeze 2>/dev/null" | sort)
  summary+=("pip installed $(grep -c . <<<"$wheels") packages into $site ($(du -sh "$root$site" | cut -f1) on disk):" \
            "  $(tr '\n' ' ' <<<"$wheels")")
fi
summary+=("host: $(nproc) CPUs ($cpu), load now $(cut -d' ' -f1-3 /proc/loadavg)")

# The logs outlive the root.
logs="$cache_dir/logs/$(date +%Y%m%d-%H%M%S)-${commit:0:12}"
mkdir -p "$logs"
cp "$root"/tmp/make-test.log "$root"/tmp/make-run.log "$root"/tmp/hcctl.* "$logs"/ 2>/dev/null || true
summary+=("logs: $logs")

echo
echo "== fresh-check of ${commit:0:12} on a bare Debian 12 ($suite minbase + ${toolchain[*]})"
printf '  %s\n' "${summary[@]}"
if [[ $failed == 0 ]]; then
  echo "fresh-check: PASS"
else
  echo "fresh-check: FAIL (see the logs above; --keep leaves the root to inspect)"
fi
exit $failed
