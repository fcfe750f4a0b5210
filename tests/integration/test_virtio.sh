#!/usr/bin/env bash
# Paravirtual I/O seen from a real Linux guest: the default guest kernel boots with an extra
# /init (appended to the default initramfs, so guest/init stays untouched) that reports what
# the kernel's virtio-pci driver found and reads the entropy device.
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

if ! have_kvm; then
	skip virtio "no usable /dev/kvm on this machine"
	exit 0
fi
if ! scripts/build-guest.sh >"$TEST_TMP/build-guest.log" 2>&1; then
	fail virtio/build-guest "scripts/build-guest.sh failed: $(tail -5 "$TEST_TMP/build-guest.log" | tr '\n' ' ')"
	exit 0
fi
eval "$(scripts/guest-paths.sh)"
BOOT_TIMEOUT=${VMON_LINUX_BOOT_TIMEOUT:-1800}

# A tiny guest drives the virtio-rng queue itself: quick, and no Linux involved.
run_vmon virtio-guest 120 run --kernel $GUESTS/virtio_rng.elf --memory 32M
expect virtio/guest-queue "the test guest gets random bytes through a virtqueue" \
	sh -c "grep -q 'PASS: random bytes through the virtqueue' $OUT && grep -q 'PASS: a second request' $OUT"
expect virtio/guest-needs-reset "a descriptor outside RAM gives DEVICE_NEEDS_RESET, vmon runs on, a reset recovers" \
	sh -c "[ $RC -eq 0 ] && grep -q 'PASS: DEVICE_NEEDS_RESET' $OUT && grep -q 'PASS: the device works again' $OUT"

# The probe /init: busybox applets by full path (the default initramfs may not have links).
mkdir -p "$TEST_TMP/probe"
cat >"$TEST_TMP/probe/init" <<'INIT'
#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t devtmpfs devtmpfs /dev
$B mount -t sysfs sysfs /sys
echo "VIRTIO-TEST pci=$($B cat /sys/bus/pci/devices/0000:00:01.0/vendor):$($B cat /sys/bus/pci/devices/0000:00:01.0/device)"
echo "VIRTIO-TEST driver=$($B basename "$($B readlink /sys/bus/pci/devices/0000:00:01.0/driver)")"
echo "VIRTIO-TEST rng_current=$($B cat /sys/class/misc/hw_random/rng_current)"
echo "VIRTIO-TEST hwrng_bytes=$($B head -c 65536 /dev/hwrng | $B wc -c)"
echo "VIRTIO-TEST hwrng_distinct=$($B head -c 64 /dev/hwrng | $B od -An -tx1 -v | $B tr ' ' '\n' | $B sort -u | $B wc -l)"
echo "VIRTIO-TEST msix_irqs=$($B grep -c 'PCI-MSI.*virtio0' /proc/interrupts)"
echo "VIRTIO-TEST done"
$B poweroff -f
INIT
chmod +x "$TEST_TMP/probe/init"
(cd "$TEST_TMP/probe" && echo init | cpio -o -H newc >../probe.cpio 2>/dev/null)
cat "$GUEST_INITRD" "$TEST_TMP/probe.cpio" >"$TEST_TMP/initrd.cpio"

start=$(date +%s)
run_vmon virtio-boot "$BOOT_TIMEOUT" run --kernel "$GUEST_KERNEL" --initrd "$TEST_TMP/initrd.cpio" \
	--memory 128M --cmdline "$(cat guest/cmdline 2>/dev/null || echo console=ttyS0)"
echo "    virtio guest: boot to poweroff took $(($(date +%s) - start))s (exit $RC)"
cp "$OUT" build/test-logs/virtio-boot.console 2>/dev/null
cp "$ERR" build/test-logs/virtio-boot.stderr 2>/dev/null
value() { tr -d '\r' <"$OUT" | sed -n "s/^VIRTIO-TEST $1=//p" | head -1; }

expect virtio/probe-ran "the probe /init ran to the end" grep -q 'VIRTIO-TEST done' "$OUT"
expect virtio/pci-enumerated "Linux found a virtio 1.x rng at 00:01.0 ($(value pci))" \
	sh -c "[ '$(value pci)' = '0x1af4:0x1044' ]"
expect virtio/driver-bound "virtio-pci bound the function ($(value driver))" sh -c "[ '$(value driver)' = virtio-pci ]"
expect virtio/hwrng-selected "hw_random uses the virtio rng ($(value rng_current))" \
	sh -c "case '$(value rng_current)' in virtio_rng*) true ;; *) false ;; esac"
expect virtio/hwrng-read "64 KiB read from /dev/hwrng ($(value hwrng_bytes) bytes)" \
	sh -c "[ '$(value hwrng_bytes)' = 65536 ]"
# 64 random bytes hold well over 30 distinct values; all zeros (a device that writes nothing) hold 1.
expect virtio/hwrng-random "the bytes look random ($(value hwrng_distinct) distinct in 64)" \
	sh -c "[ -n '$(value hwrng_distinct)' ] && [ '$(value hwrng_distinct)' -gt 20 ]"
expect virtio/msix "MSI-X vectors for the device in /proc/interrupts ($(value msix_irqs))" \
	sh -c "[ -n '$(value msix_irqs)' ] && [ '$(value msix_irqs)' -ge 2 ]"
expect virtio/poweroff "the guest powered off (exit 0)" sh -c "[ $RC -eq 0 ]"
expect virtio/no-sanitizer-report "no AddressSanitizer/UBSan report" sh -c "! grep -qE 'Sanitizer|runtime error' $ERR"

# --no-rng leaves the device out: bus 0 then holds only the host bridge.
cat >"$TEST_TMP/probe/init" <<'INIT'
#!/bin/busybox sh
B=/bin/busybox
$B mount -t sysfs sysfs /sys
echo "VIRTIO-TEST pci_functions=$($B ls /sys/bus/pci/devices | $B wc -l)"
$B poweroff -f
INIT
(cd "$TEST_TMP/probe" && echo init | cpio -o -H newc >../probe.cpio 2>/dev/null)
cat "$GUEST_INITRD" "$TEST_TMP/probe.cpio" >"$TEST_TMP/initrd.cpio"
run_vmon virtio-no-rng "$BOOT_TIMEOUT" run --no-rng --kernel "$GUEST_KERNEL" --initrd "$TEST_TMP/initrd.cpio" \
	--memory 128M --cmdline "$(cat guest/cmdline 2>/dev/null || echo console=ttyS0)"
expect virtio/no-rng "--no-rng: only the host bridge on PCI bus 0 ($(value pci_functions) functions)" \
	sh -c "[ '$(value pci_functions)' = 1 ]"
