#!/usr/bin/env bash
# Where the default guest (scripts/build-guest.sh) lives in the cache.
#
#   scripts/guest-paths.sh          prints GUEST_KERNEL=... GUEST_VMLINUX=... GUEST_INITRD=...
#                                   for `eval "$(scripts/guest-paths.sh)"`; exit 1 if not built
#   scripts/guest-paths.sh --dir    prints the cache directory for the current inputs (built or not)
#   scripts/guest-paths.sh --key    prints just the key
#
# The key is a hash of everything that determines the guest: the config fragment,
# the init script, the build script, and the versions of the Debian packages that
# provide the kernel source and busybox. Change any of them and the old entry is
# simply no longer looked at.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${VMON_CACHE:-${HOME:?HOME is not set; set VMON_CACHE to a cache directory}/.cache/vmon}

pkg_version() {
  local v
  if ! v=$(dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null) || [[ $v != "install ok installed "* ]]; then
    echo "guest-paths: package $1 is not installed; run scripts/install-deps.sh" >&2
    exit 2
  fi
  echo "${v##* }"
}

guest_key() {
  {
    for f in guest/kernel.config guest/init scripts/build-guest.sh; do
      if [ ! -f "$root/$f" ]; then
        echo "guest-paths: $root/$f is missing; the guest cannot be built from this tree" >&2
        exit 2
      fi
      printf '%s\n' "$f"
      sha256sum <"$root/$f"
    done
    printf 'linux-source-6.1 %s\n' "$(pkg_version linux-source-6.1)"
    printf 'busybox-static %s\n' "$(pkg_version busybox-static)"
  } | sha256sum | cut -c1-16
}

key=$(guest_key)
dir=$cache/guest-$key

case "${1:-}" in
  --key) echo "$key"; exit 0 ;;
  --dir) echo "$dir"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--dir|--key]" >&2; exit 2 ;;
esac

if [ ! -f "$dir/complete" ]; then
  echo "guest-paths: no guest built for the current sources (expected $dir); run scripts/build-guest.sh" >&2
  exit 1
fi
printf 'GUEST_DIR=%q\n' "$dir"
printf 'GUEST_KERNEL=%q\n' "$dir/bzImage"
printf 'GUEST_VMLINUX=%q\n' "$dir/vmlinux"
printf 'GUEST_INITRD=%q\n' "$dir/initramfs.cpio"
