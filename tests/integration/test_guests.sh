#!/usr/bin/env bash
# The real vmon binary booting tiny test guests: exit paths, console, SMP, timers, bad input.
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

if ! have_kvm; then
	skip guests "no usable /dev/kvm on this machine"
	exit 0
fi

# Port-I/O console output, unclaimed ports, ACPI power-off -> exit 0.
run_vmon hello 120 run --kernel $GUESTS/hello.elf --memory 32M
expect guest/hello "exit 0 and the guest's lines on stdout" \
	sh -c "[ $RC -eq 0 ] && grep -q 'hello from the vmon test guest' $OUT && grep -q PASS $OUT"
expect guest/poweroff-message "stderr says the guest powered off" grep -q 'guest powered off' "$ERR"

# A crashing guest: triple fault -> non-zero exit and a message naming it.
run_vmon triple 120 run --kernel $GUESTS/triple_fault.elf --memory 32M
expect guest/triple-fault "exit 1 and a triple-fault message" \
	sh -c "[ $RC -eq 1 ] && grep -q 'triple-faulted' $ERR"

# A reboot request stops the VM with exit 0 and says so.
run_vmon reboot 120 run --kernel $GUESTS/reboot.elf --memory 32M
expect guest/reboot "exit 0 and a message that the guest asked to reboot" \
	sh -c "[ $RC -eq 0 ] && grep -q 'asked to reboot' $ERR"

# A guest kernel panic reported through pvpanic: exit 1 and a message.
run_vmon panic 120 run --kernel $GUESTS/panic.elf --memory 32M
expect guest/panic "exit 1 and a panic message" sh -c "[ $RC -eq 1 ] && grep -q 'panicked' $ERR"

# SMP bring-up through INIT-SIPI-SIPI: every vCPU comes up.
for n in 1 2 4; do
	run_vmon smp$n 180 run --kernel $GUESTS/smp.elf --memory 32M --cpus $n --cmdline "smp.expect=$n"
	expect guest/smp-$n "the guest counts $n cpus" sh -c "[ $RC -eq 0 ] && grep -q 'SMP: $n cpus up' $OUT"
done

# PIT -> PIC -> LAPIC interrupts wake a halted vCPU.
run_vmon timer 120 run --kernel $GUESTS/timer_hlt.elf --memory 32M
expect guest/timer-hlt "20 timer ticks while halting" sh -c "[ $RC -eq 0 ] && grep -q 'timer ticks: 20' $OUT"

# Serial input: bytes on vmon's stdin reach the guest's UART.
OUT=$TEST_TMP/echo.out ERR=$TEST_TMP/echo.err
printf 'hello uart\n' | timeout --signal=KILL 120 "$VMON" run --kernel $GUESTS/echo.elf --memory 32M >"$OUT" 2>"$ERR"
RC=$?
expect guest/serial-input "the guest echoes the typed line" sh -c "[ $RC -eq 0 ] && grep -q 'got: HELLO UART' $OUT"

# The console escape (Ctrl-A x) stops a guest that would run forever.
OUT=$TEST_TMP/esc.out ERR=$TEST_TMP/esc.err
(sleep 2; printf '\001x') | timeout --signal=KILL 120 "$VMON" run --kernel $GUESTS/idle.elf --memory 32M >"$OUT" 2>"$ERR"
RC=$?
expect guest/console-escape "Ctrl-A x stops the VM with exit 0" sh -c "[ $RC -eq 0 ] && grep -q 'Ctrl-A x' $ERR"

# SIGTERM and SIGINT stop the VM cleanly (exit 0, no sanitizer report).
for sig in TERM INT; do
	OUT=$TEST_TMP/sig$sig.out ERR=$TEST_TMP/sig$sig.err
	"$VMON" run --kernel $GUESTS/idle.elf --memory 32M </dev/null >"$OUT" 2>"$ERR" &
	pid=$!
	for _ in $(seq 100); do grep -q 'idle guest sleeping' "$OUT" 2>/dev/null && break; sleep 0.2; done
	kill -$sig $pid
	( sleep 30; kill -KILL $pid 2>/dev/null ) & watchdog=$!
	wait $pid
	RC=$?
	kill $watchdog 2>/dev/null; wait $watchdog 2>/dev/null
	expect guest/sig$sig "SIG$sig stops the VM with exit 0" sh -c "[ $RC -eq 0 ] && grep -q 'stopped on' $ERR"
done

# A guest printing while nobody reads vmon's stdout: output is dropped (and said so), the vCPU
# never blocks on it, and SIGTERM still stops the VM within a few seconds.
ERR=$TEST_TMP/stalled.err
mkfifo "$TEST_TMP/stall.fifo"
sleep 120 <"$TEST_TMP/stall.fifo" >/dev/null 2>&1 & stalled_reader=$! # opens the pipe, never reads
"$VMON" run --kernel $GUESTS/chatter.elf --memory 32M </dev/null 2>"$ERR" >"$TEST_TMP/stall.fifo" &
pid=$!
for _ in $(seq 300); do grep -q 'not being read' "$ERR" 2>/dev/null && break; sleep 0.2; done
t0=$(date +%s%N)
kill -TERM $pid
( sleep 30; kill -KILL $pid 2>/dev/null ) & watchdog=$!
wait $pid
RC=$?
took_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
kill $watchdog $stalled_reader 2>/dev/null; wait $watchdog $stalled_reader 2>/dev/null
expect guest/stalled-stdout-sigterm "SIGTERM stops a VM whose stdout is stalled in under 5 s (took ${took_ms} ms)" \
	sh -c "[ $RC -eq 0 ] && [ $took_ms -lt 5000 ] && grep -q 'stopped on' $ERR && grep -q 'dropped' $ERR"

# Bad input: one clear line on stderr, exit 2, never a crash.
bad() { # bad NAME PATTERN ARGS...
	local name=$1 pattern=$2
	shift 2
	run_vmon "bad-$name" 60 "$@"
	expect "bad-input/$name" "exit 2 and a message matching '$pattern'" \
		sh -c "[ $RC -eq 2 ] && grep -qiE -e '$pattern' $ERR && ! grep -q 'Sanitizer' $ERR"
}
bad missing-kernel "no such file|not found|does not exist" run --kernel /nonexistent/vmlinux
bad no-kernel "no kernel given" run --memory 64M
bad directory "directory" run --kernel /tmp
head -c 65536 /dev/urandom >"$TEST_TMP/random.bin"
bad not-a-kernel "not a Linux kernel" run --kernel "$TEST_TMP/random.bin"
: >"$TEST_TMP/empty.bin"
bad empty-kernel "empty" run --kernel "$TEST_TMP/empty.bin"
# A bzImage header that promises a payload the file does not contain.
python3 - "$TEST_TMP/truncated.bzImage" <<'PY'
import struct, sys
b = bytearray(0x1000)
b[0x1f1] = 3                      # setup_sects
b[0x1fe:0x200] = b'\x55\xaa'
b[0x202:0x206] = b'HdrS'
struct.pack_into('<H', b, 0x206, 0x020f)
struct.pack_into('<H', b, 0x236, 0x1)          # xloadflags: XLF_KERNEL_64
struct.pack_into('<I', b, 0x248, 0x100)        # payload_offset
struct.pack_into('<I', b, 0x24c, 0x400000)     # payload_length: 4 MiB, far past the end
open(sys.argv[1], 'wb').write(b)
PY
bad truncated-bzimage "truncated" run --kernel "$TEST_TMP/truncated.bzImage"
bad cpus-zero "cpus" run --kernel $GUESTS/hello.elf --cpus 0
bad cpus-text "cpus" run --kernel $GUESTS/hello.elf --cpus two
bad memory-text "memory" run --kernel $GUESTS/hello.elf --memory lots
bad memory-huge "more than this host has" run --kernel $GUESTS/hello.elf --memory 900G
truncate -s 48M "$TEST_TMP/big.initrd"
bad initrd-too-big "initrd" run --kernel $GUESTS/hello.elf --memory 32M --initrd "$TEST_TMP/big.initrd"
bad missing-initrd "initrd|no such file" run --kernel $GUESTS/hello.elf --initrd /nonexistent/initrd
bad unknown-option "unknown option" run --kernel $GUESTS/hello.elf --frobnicate
bad unknown-short-option "unknown option .-x. " run -x foo
bad cpus-beyond-32-bits "--cpus 4294967297 is out of range: give a number from 1 to 254" run --kernel $GUESTS/hello.elf --cpus 4294967297
bad cpus-beyond-64-bits "out of range: give a number from 1 to 254" run --kernel $GUESTS/hello.elf --cpus 99999999999999999999
printf '{"kernel": "%s", "cpus": 1e300}' "$GUESTS/hello.elf" >"$TEST_TMP/cpus.json"
bad config-cpus-1e300 '"cpus": 1e\+300 is out of range' run --config "$TEST_TMP/cpus.json"
mkfifo "$TEST_TMP/fifo"
bad kernel-fifo "kernel .*fifo is not a regular file \(a FIFO\)" run --kernel "$TEST_TMP/fifo"
bad initrd-fifo "initrd .*fifo is not a regular file \(a FIFO\)" run --kernel $GUESTS/hello.elf --initrd "$TEST_TMP/fifo"
bad config-fifo "config file .*fifo is not a regular file \(a FIFO\)" run --config "$TEST_TMP/fifo"
bad config-dev-zero "config file /dev/zero is not a regular file \(a character device\)" run --config /dev/zero
truncate -s 1M "$TEST_TMP/a.img"; ln -sf "$TEST_TMP/a.img" "$TEST_TMP/link.img"
bad disk-twice-abs "the same file given twice" run --kernel $GUESTS/hello.elf --disk "$TEST_TMP/a.img" --disk "$TEST_TMP/./a.img"
bad disk-twice-symlink "the same file given twice" run --kernel $GUESTS/hello.elf --disk "$TEST_TMP/a.img" --disk "$TEST_TMP/link.img"
bad console2-socket-empty "has an empty path" run --kernel $GUESTS/hello.elf --console2 socket=
bad console2-file-empty "has an empty path" run --kernel $GUESTS/hello.elf --console2 file=
bad api-sock-empty "--api-sock .* is empty" run --kernel $GUESTS/hello.elf --api-sock ""
if [ "$(id -u)" -eq 0 ]; then
	bad tap-not-tap "interface lo exists but is not a tap device" run --kernel $GUESTS/hello.elf --memory 32M --net tap=lo
fi

if command -v unshare >/dev/null && [ "$(id -u)" -eq 0 ]; then
	OUT=$TEST_TMP/nokvm.out ERR=$TEST_TMP/nokvm.err
	unshare -m sh -c "mount -t tmpfs none /dev && exec $VMON run --kernel $GUESTS/hello.elf" </dev/null >"$OUT" 2>"$ERR"
	RC=$?
	expect bad-input/no-dev-kvm "a message about /dev/kvm" sh -c "[ $RC -ne 0 ] && grep -q '/dev/kvm does not exist' $ERR"
	if id nobody >/dev/null 2>&1 && command -v setpriv >/dev/null; then
		OUT=$TEST_TMP/perm.out ERR=$TEST_TMP/perm.err
		cp $GUESTS/hello.elf "$TEST_TMP/hello.elf"; chmod 755 "$TEST_TMP"; chmod 644 "$TEST_TMP/hello.elf"
		setpriv --reuid=nobody --regid=nogroup --clear-groups "$VMON" run --kernel "$TEST_TMP/hello.elf" </dev/null >"$OUT" 2>"$ERR"
		RC=$?
		if [ "$(stat -c %a /dev/kvm)" = 666 ]; then
			skip bad-input/no-kvm-permission "/dev/kvm is world-writable here"
		else
			expect bad-input/no-kvm-permission "a message about permission" sh -c "[ $RC -ne 0 ] && grep -q 'permission' $ERR"
		fi
	fi
else
	skip bad-input/no-dev-kvm "needs root and unshare"
fi
