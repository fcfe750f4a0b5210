#!/usr/bin/env bash
# Boots vmon's default guest (guest/README.md) with its serial console on this terminal.
# Builds the guest first if the cache has none for the current sources.
#
#   scripts/run-default-guest.sh [extra vmon run options...]
#
# Extra options go to `vmon run` after the defaults, so they win where vmon takes the
# last value (e.g. --cpus 2, --memory 256M, or --cmdline "... vmon.test=1").
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
vmon=${VMON:-$root/build/vmon}

# Why each option (all cheap on hardware KVM, and each saves work where the guest
# kernel is emulated):
#   console=ttyS0    the 16550 UART is vmon's console
#   panic=-1         reboot at once on a panic, so a broken guest ends instead of hanging
#   mitigations=off  no speculation-mitigation set-up or per-switch barriers in a test guest
#   no_timer_check   skip the IO-APIC timer probe, which waits for timer ticks
#   tsc=reliable     skip the TSC watchdog and its periodic cross-checks
#   i8042.noaux      no PS/2 mouse port to probe (saves a timeout at boot)
# Host-specific options (clearcpuid=..., noxsave) are appended by vmon itself.
# The options live in guest/cmdline so the tests boot the guest the same way.
cmdline=$(cat "$root/guest/cmdline")

"$root/scripts/build-guest.sh" >&2
eval "$("$root/scripts/guest-paths.sh")"

if [ ! -x "$vmon" ]; then
  echo "run-default-guest: $vmon does not exist; build it with 'make' first" >&2
  exit 1
fi

exec "$vmon" run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --memory 128M \
  --cmdline "$cmdline" "$@"
