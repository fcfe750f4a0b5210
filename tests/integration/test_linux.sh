#!/usr/bin/env bash
# The real vmon binary booting the default Linux guest (guest/) and checking, from a script in
# its initramfs, what the guest sees. Slow on software-virtualized KVM: one full boot, reused
# for every check, plus a short boot of the ELF vmlinux.
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

if ! have_kvm; then
	skip linux "no usable /dev/kvm on this machine"
	exit 0
fi
if ! scripts/build-guest.sh >"$TEST_TMP/build-guest.log" 2>&1; then
	fail linux/build-guest "scripts/build-guest.sh failed: $(tail -5 "$TEST_TMP/build-guest.log" | tr '\n' ' ')"
	exit 0
fi
eval "$(scripts/guest-paths.sh)"

CPUS=2
MEM=128M

# Checks run by the guest's /init from /test.d (guest/init), in an initramfs appended to the default one.
mkdir -p "$TEST_TMP/extra/test.d"
XSTATE_BUILT=0
if gcc -static -O2 -o "$TEST_TMP/extra/test.d/xstate_check" tests/integration/xstate_check.c 2>"$TEST_TMP/gcc.log"; then
	XSTATE_BUILT=1
fi
ENTRY_JUMP_BUILT=0
if gcc -static -O2 -o "$TEST_TMP/extra/test.d/syscall_entry_jump" tests/integration/syscall_entry_jump.c \
	2>"$TEST_TMP/gcc-entry-jump.log"; then
	ENTRY_JUMP_BUILT=1
fi
(cd "$TEST_TMP/extra" && find test.d | cpio -o -H newc >../extra.cpio 2>/dev/null)
cat "$GUEST_INITRD" "$TEST_TMP/extra.cpio" >"$TEST_TMP/initrd.cpio"
BOOT_TIMEOUT=${VMON_LINUX_BOOT_TIMEOUT:-1800}

start=$(date +%s)
run_vmon linux-boot "$BOOT_TIMEOUT" run --kernel "$GUEST_KERNEL" --initrd "$TEST_TMP/initrd.cpio" \
	--cpus $CPUS --memory $MEM --cmdline "console=ttyS0 vmon.test=1 $(cat guest/cmdline 2>/dev/null)"
elapsed=$(($(date +%s) - start))
echo "    default guest: bzImage boot to poweroff took ${elapsed}s (exit $RC)"
cp "$OUT" build/test-logs/linux-boot.console 2>/dev/null
cp "$ERR" build/test-logs/linux-boot.stderr 2>/dev/null

value() { tr -d '\r' <"$OUT" | sed -n "s/^VMON-TEST $1=//p" | head -1; }

expect linux/init-runs "the initramfs /init ran" grep -q 'VMON-INIT: started' "$OUT"
expect linux/nproc "nproc is $CPUS" sh -c "[ '$(value nproc)' = $CPUS ]"
memtotal=$(value memtotal_kb)
# MemTotal excludes what the kernel reserves for itself: expect 75% to 100% of --memory.
expect linux/memtotal "MemTotal ($memtotal kB) close to 128 MiB" \
	sh -c "[ -n '$memtotal' ] && [ '$memtotal' -gt $((131072 * 3 / 4)) ] && [ '$memtotal' -le 131072 ]"
gdate=$(value date)
now=$(date +%s)
expect linux/date "the guest's date ($gdate) is the host's ($now, within 1 hour)" \
	sh -c "[ -n '$gdate' ] && [ \$(( $now - $gdate )) -lt 3600 ] && [ \$(( $gdate - $now )) -lt 3600 ]"
# Two processes taking turns on one CPU keep their own AVX registers (on hosts that run guest
# user code with their own XCR0, this needs the guest kernel to manage XSAVE state).
if [ $XSTATE_BUILT = 1 ]; then
	xstate=$(value xstate)
	if [ "$xstate" = no-avx ]; then
		skip linux/xstate "the guest has no usable AVX"
	else
		expect linux/xstate "AVX registers survive context switches in the guest ($xstate)" \
			sh -c "tr -d '\r' <$OUT | grep -q '^VMON-TEST xstate=ok'"
	fi
else
	skip linux/xstate "gcc -static failed: $(head -3 "$TEST_TMP/gcc.log" | tr '\n' ' ')"
fi
# A process that jumps to the kernel's SYSCALL entry gets SIGSEGV, as on hardware, and the guest
# goes on (the line is printed by its parent; the checks after it still run). Where vmon
# completes system calls itself, this is the fault it must not mistake for one.
if [ $ENTRY_JUMP_BUILT = 1 ]; then
	entry_jump=$(value syscall_entry_jump)
	if [ "$entry_jump" = no-symbol ]; then
		skip linux/syscall-entry-jump "the guest kernel shows no entry_SYSCALL_64 in /proc/kallsyms"
	else
		expect linux/syscall-entry-jump "a jump to entry_SYSCALL_64 gets SIGSEGV, not CPL0 (${entry_jump:-no result})" \
			sh -c "[ '$entry_jump' = sigsegv ] && tr -d '\r' <$OUT | grep -q '^VMON-TEST done'"
	fi
else
	skip linux/syscall-entry-jump "gcc -static failed: $(head -3 "$TEST_TMP/gcc-entry-jump.log" | tr '\n' ' ')"
fi
expect linux/no-segfault "no guest program crashed" sh -c "! grep -q 'segfault at' $OUT"
expect linux/poweroff "poweroff in the guest gives exit 0" sh -c "[ $RC -eq 0 ] && grep -q 'VMON-TEST done' $OUT"
expect linux/no-sanitizer-report "no AddressSanitizer/UBSan report" sh -c "! grep -qE 'Sanitizer|runtime error' $ERR"

# The ELF vmlinux boots too: run it until the kernel prints its banner, then stop it.
OUT=$TEST_TMP/vmlinux.out ERR=$TEST_TMP/vmlinux.err
"$VMON" run --kernel "$GUEST_VMLINUX" --memory $MEM --cmdline "console=ttyS0" </dev/null >"$OUT" 2>"$ERR" &
pid=$!
for _ in $(seq 600); do
	grep -q 'Linux version' "$OUT" 2>/dev/null && break
	kill -0 $pid 2>/dev/null || break
	sleep 1
done
kill -TERM $pid 2>/dev/null
wait $pid
RC=$?
expect linux/vmlinux-elf "the ELF vmlinux prints its banner and stops on SIGTERM" \
	sh -c "grep -q 'Linux version' $OUT && [ $RC -eq 0 ]"
