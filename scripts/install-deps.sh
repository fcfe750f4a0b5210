#!/usr/bin/env bash
# Installs the Debian packages vmon needs.
#   scripts/install-deps.sh run    what `make run` needs: build vmon, build and boot the default guest
#   scripts/install-deps.sh test   that and what the tests need (the default)
# Safe to run repeatedly: packages already present are skipped. Works on a minimal Debian 12
# (debootstrap --variant=minbase), which has apt and dpkg but no compiler and no make.
set -euo pipefail

set_name=${1:-test}
case "$set_name" in
  run | test) ;;
  *) echo "usage: $0 [run|test]" >&2; exit 2 ;;
esac

PKGS=(
  build-essential pkg-config git
  # libraries linked into vmon
  zlib1g-dev liblzma-dev liblz4-dev libzstd-dev
  liburing-dev libslirp-dev libjansson-dev libmicrohttpd-dev libseccomp-dev libcurl4-openssl-dev
  libcap-ng-dev libgnutls28-dev
  # default guest: kernel source, its build tools, busybox for the initramfs
  linux-source-6.1 flex bison bc libelf-dev libssl-dev cpio xz-utils busybox-static
)
TEST_PKGS=(
  # tests
  libcmocka-dev clang curl
  # ACPI tables checked by disassembling them with iasl
  acpica-tools
  # disk tests: images made and checked on the host, fio figures
  e2fsprogs fio
  # qcow2 images made, checked and compared by qemu-img (tests/unit/test_qcow2.c)
  qemu-utils
  # the fresh-machine check builds a minimal Debian root
  debootstrap
)
[ "$set_name" = run ] || PKGS+=("${TEST_PKGS[@]}")

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "install-deps: missing packages (${missing[*]}) and not root; run this script as root" >&2
    exit 1
  fi
else
  SUDO=
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
