#!/usr/bin/env bash
# Builds vmon's default guest: a minimal Linux kernel from Debian's linux-source-6.1
# (tinyconfig + guest/kernel.config) and an uncompressed busybox initramfs
# (guest/init + Debian's static busybox).
#
# Output: ${VMON_CACHE:-$HOME/.cache/vmon}/guest-<key>/{bzImage,vmlinux,initramfs.cpio,complete}
# where <key> is computed by scripts/guest-paths.sh. An entry counts as built only
# once its `complete` stamp exists, and the entry directory only appears under its
# final name after everything in it was written, so an interrupted build is never
# taken for a finished one.
#
# Work directories, kept in the cache so later builds are fast:
#   linux-source-<version>/   the extracted source tree (never modified)
#   linux-obj-<version>/      out-of-tree object directory, reused incrementally:
#                             a change to the fragment recompiles only what it touches.
#                             VMON_GUEST_CLEAN=1 starts it from scratch.
# Concurrent runs are serialised with a lock file in the cache.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${VMON_CACHE:-${HOME:?HOME is not set; set VMON_CACHE to a cache directory}/.cache/vmon}
tarball=/usr/src/linux-source-6.1.tar.xz
busybox=/bin/busybox
fragment=$root/guest/kernel.config
init_script=$root/guest/init
start=$SECONDS

say() { printf 'build-guest [%4ds] %s\n' "$((SECONDS - start))" "$*"; }
die() { printf 'build-guest: %s\n' "$*" >&2; exit 1; }

dir=$("$root/scripts/guest-paths.sh" --dir)
if [ -f "$dir/complete" ]; then
  echo "using cached guest at $dir"
  exit 0
fi

# --- Prerequisites -------------------------------------------------------------------
missing=()
for tool in make gcc flex bison bc xz tar perl sha256sum flock; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]}; run scripts/install-deps.sh"
[ -f "$tarball" ] || die "$tarball not found; run scripts/install-deps.sh (package linux-source-6.1)"
[ -x "$busybox" ] || die "$busybox not found; run scripts/install-deps.sh (package busybox-static)"
ldd_out=$(LC_ALL=C ldd "$busybox" 2>&1 || true)
if [[ $ldd_out != *"not a dynamic executable"* ]]; then
  die "$busybox is dynamically linked, but the initramfs has no libraries; install busybox-static"
fi

src_version=$(dpkg-query -W -f='${Version}' linux-source-6.1)
src=$cache/linux-source-$src_version
obj=$cache/linux-obj-$src_version
jobs=$(nproc)
make_args=(ARCH=x86_64 -C "$src/linux-source-6.1" O="$obj")

mkdir -p "$cache"
exec 9>"$cache/.build.lock"
if ! flock -n 9; then
  say "another build-guest is running; waiting for it"
  flock 9
fi
if [ -f "$dir/complete" ]; then
  echo "using cached guest at $dir"
  exit 0
fi

stage=
cleanup() { [ -z "$stage" ] || rm -rf "$stage"; }
trap cleanup EXIT

# --- Kernel source ---------------------------------------------------------------------
if [ ! -f "$src/.extracted" ]; then
  say "extracting $tarball into $src"
  rm -rf "$src" "$src.tmp"
  mkdir -p "$src.tmp"
  tar -xf "$tarball" -C "$src.tmp"
  [ -f "$src.tmp/linux-source-6.1/Makefile" ] || die "$tarball does not contain linux-source-6.1/Makefile"
  touch "$src.tmp/.extracted"
  mv "$src.tmp" "$src"
fi

# --- Configuration ---------------------------------------------------------------------
if [ "${VMON_GUEST_CLEAN:-0}" = 1 ]; then
  say "VMON_GUEST_CLEAN=1: removing $obj"
  rm -rf "$obj"
fi
mkdir -p "$obj"
log=$obj/build.log
: >"$log"

say "configuring: make tinyconfig, then merge guest/kernel.config (allnoconfig semantics)"
make "${make_args[@]}" tinyconfig >>"$log" 2>&1 || die "make tinyconfig failed; see $log"
# -n: options the fragment does not mention stay off even where their default is y.
(cd "$src/linux-source-6.1" && ARCH=x86_64 scripts/kconfig/merge_config.sh -n -O "$obj" "$obj/.config" "$fragment") \
  >>"$log" 2>&1 || die "merging guest/kernel.config failed; see $log"

# merge_config.sh only warns when a requested value does not survive (typo, unmet
# dependency); a guest silently missing a device is worse than a failed build.
lost=()
while IFS= read -r line; do
  case "$line" in
    CONFIG_*=*) grep -qxF -- "$line" "$obj/.config" || lost+=("$line") ;;
    "# CONFIG_"*" is not set")
      sym=${line#\# }; sym=${sym%% *}
      ! grep -q "^$sym=" "$obj/.config" || lost+=("$line") ;;
  esac
done <"$fragment"
if [ ${#lost[@]} -gt 0 ]; then
  printf 'build-guest: not in the final kernel config (unknown option or unmet dependency):\n' >&2
  printf '  %s\n' "${lost[@]}" >&2
  exit 1
fi

# --- Kernel ----------------------------------------------------------------------------
say "compiling the kernel with make -j$jobs (log: $log)"
(
  # A heartbeat, so a long compile does not look like a hang. The sleep runs in the
  # background so that killing this subshell ends it at once instead of leaving a
  # `sleep` holding our stdout open (a caller reading it through a pipe would wait).
  trap 'kill "$nap" 2>/dev/null; exit 0' TERM
  while :; do
    sleep 60 & nap=$!
    wait "$nap"
    n=$(find "$obj" -name '*.o' -newer "$obj/.config" 2>/dev/null | wc -l)
    say "  still compiling: $n objects built so far"
  done
) &
ticker=$!
if ! make "${make_args[@]}" -j"$jobs" bzImage vmlinux >>"$log" 2>&1; then
  kill "$ticker" 2>/dev/null || true
  tail -n 30 "$log" >&2
  die "kernel build failed; full log in $log (if a killed earlier build left a damaged object, VMON_GUEST_CLEAN=1 rebuilds from scratch)"
fi
kill "$ticker" 2>/dev/null || true
wait "$ticker" 2>/dev/null || true

# --- Initramfs -------------------------------------------------------------------------
stage=$(mktemp -d "$cache/guest-tmp.XXXXXX")
say "creating the initramfs (uncompressed newc cpio)"
# The kernel's own gen_init_cpio writes newc archives from a list, including the
# /dev/console node the kernel needs before /init runs, without needing root.
# Its list format cannot quote paths, so inputs are copied next to it first.
gcc -O2 -o "$stage/gen_init_cpio" "$src/linux-source-6.1/usr/gen_init_cpio.c"
cp "$busybox" "$stage/busybox"
cp "$init_script" "$stage/init"
cat >"$stage/initramfs.list" <<EOF
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
nod /dev/null 0666 0 0 c 1 3
dir /bin 0755 0 0
dir /sbin 0755 0 0
dir /usr 0755 0 0
dir /usr/bin 0755 0 0
dir /usr/sbin 0755 0 0
dir /etc 0755 0 0
dir /proc 0555 0 0
dir /sys 0555 0 0
dir /tmp 1777 0 0
dir /root 0700 0 0
dir /mnt 0755 0 0
file /bin/busybox busybox 0755 0 0
file /init init 0755 0 0
slink /bin/sh /bin/busybox 0777 0 0
EOF
(cd "$stage" && ./gen_init_cpio -t 0 initramfs.list >initramfs.cpio)
rm "$stage/gen_init_cpio" "$stage/initramfs.list" "$stage/busybox" "$stage/init"

cp "$obj/arch/x86/boot/bzImage" "$obj/vmlinux" "$stage/"
cp "$obj/.config" "$stage/kernel.config.full"
{
  echo "key $(basename "$dir")"
  echo "linux-source-6.1 $src_version"
  echo "busybox-static $(dpkg-query -W -f='${Version}' busybox-static)"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $((SECONDS - start)) s"
} >"$stage/complete"
chmod 755 "$stage"
rm -rf "$dir"
mv "$stage" "$dir"
stage=

say "done: $dir"
for f in "$dir"/*; do printf "    %10d  %s\n" "$(stat -c %s "$f")" "$(basename "$f")"; done
