#!/usr/bin/env bash
# Live migration of the default Linux guest while it works: one boot, two moves. The guest's
# /init (appended to the default initramfs) mounts an ext4 disk, appends a line to a file on it
# every second (synced), and runs mig_memcheck, which keeps rewriting 64 MiB and checks every
# word of the last pass before the next. The guest moves with pre-copy from network namespace A
# to B, then with post-copy from B back to a new vmon in A (two namespaces joined by a veth pair,
# tests/integration/netns.sh; loopback when not root), the disk image shared by all three. After
# each move the checker runs on at the destination without finding a wrong word and the guest's
# wall clock keeps its offset to the host's; at the end the guest unmounts the disk when told to
# on its console, e2fsck finds it clean and the file has every line, in order.
# VMON_MIGRATE_LINUX=0 skips it (a Linux boot takes minutes where KVM is software-virtualized).
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh
. tests/integration/netns.sh

if [ "${VMON_MIGRATE_LINUX:-1}" = 0 ]; then
	skip migrate-linux "VMON_MIGRATE_LINUX=0"
	exit 0
fi
if ! have_kvm; then
	skip migrate-linux "no usable /dev/kvm on this machine"
	exit 0
fi
for tool in mkfs.ext4 e2fsck debugfs cpio gcc; do
	if ! command -v $tool >/dev/null; then
		skip migrate-linux "$tool is not installed (scripts/install-deps.sh installs it)"
		exit 0
	fi
done
if ! scripts/build-guest.sh >"$TEST_TMP/build-guest.log" 2>&1; then
	fail migrate-linux/build-guest "scripts/build-guest.sh failed: $(tail -5 "$TEST_TMP/build-guest.log" | tr '\n' ' ')"
	exit 0
fi
eval "$(scripts/guest-paths.sh)"
BOOT_TIMEOUT=${VMON_LINUX_BOOT_TIMEOUT:-1800}
MIGRATE_TIMEOUT=${VMON_MIGRATE_TIMEOUT:-900}
CMDLINE="$(cat guest/cmdline 2>/dev/null || echo console=ttyS0)"

PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	exec 7>&- 2>/dev/null
	netns_remove
	rm -rf "$TEST_TMP"
}
trap cleanup EXIT
mkdir -p build/test-logs

mkdir -p "$TEST_TMP/extra/test.d"
if ! gcc -static -O2 -o "$TEST_TMP/extra/test.d/memcheck" tests/integration/mig_memcheck.c 2>"$TEST_TMP/gcc.log"; then
	skip migrate-linux "cannot build a static program (libc6-dev): $(head -1 "$TEST_TMP/gcc.log")"
	exit 0
fi
cat >"$TEST_TMP/extra/init" <<'INIT'
#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t devtmpfs devtmpfs /dev
$B mount -t sysfs sysfs /sys
$B mkdir -p /mnt
$B mount -t ext4 /dev/vda /mnt && echo "MIGTEST mounted"
/test.d/memcheck 64 &
MC=$!
(
	i=0
	while :; do
		i=$((i + 1))
		echo "line $i" >>/mnt/log
		$B sync
		$B sleep 1
	done
) &
W=$!
echo "MIGTEST ready"
# The host says when to stop, on the console (the last destination's stdin).
while read -r cmd; do [ "$cmd" = stop ] && break; done
kill $W
kill -TERM $MC
wait $MC
echo "MIGTEST memcheck exit $?"
$B sync
$B umount /mnt && echo "MIGTEST unmounted"
$B poweroff -f
INIT
chmod +x "$TEST_TMP/extra/init"
(cd "$TEST_TMP/extra" && find init test.d | cpio -o -H newc >../extra.cpio 2>/dev/null)
cat "$GUEST_INITRD" "$TEST_TMP/extra.cpio" >"$TEST_TMP/initrd.cpio"
DISK=$TEST_TMP/disk.img
truncate -s 64M "$DISK"
mkfs.ext4 -q -F "$DISK"

netns_pair_or_loopback

passes() { tr -d '\r' <"$1" | grep -ac '^MEMCHECK pass'; }
# clock_offset FILE: waits for the next "MEMCHECK pass N ok time=T" line in FILE and prints T
# minus this host's wall-clock time when the line appeared, in seconds.
clock_offset() {
	local n0 i now line
	n0=$(passes "$1")
	for ((i = 0; i < 3000; i++)); do
		if [ "$(passes "$1")" -gt "$n0" ]; then
			now=$(date +%s.%N)
			line=$(tr -d '\r' <"$1" | grep -a '^MEMCHECK pass' | tail -1)
			awk -v t="${line##*time=}" -v h="$now" 'BEGIN { printf "%.3f\n", t - h }'
			return 0
		fi
		sleep 0.02
	done
	return 1
}
# runs_on FILE: the checker passed three more times in FILE, and nowhere found a wrong word.
runs_on() {
	local n i
	n=$(passes "$1")
	for ((i = 0; i < 600; i++)); do
		[ "$(passes "$1")" -ge $((n + 3)) ] && break
		sleep 0.1
	done
	[ "$(passes "$1")" -ge $((n + 3)) ] && ! cat "$@" | grep -aq 'MEMCHECK CORRUPT'
}
# same_clock BEFORE AFTER: the guest's offset to the host's clock moved by less than a second.
same_clock() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { d = b - a; exit !(d < 1 && d > -1) }'; }
clean_stderr() { ! cat "$@" | grep -qE 'Sanitizer|runtime error'; }

# ---- boot in A ----
start_in "$NS_A" a run --kernel "$GUEST_KERNEL" --initrd "$TEST_TMP/initrd.cpio" --memory 256M --disk "$DISK" \
	--api-sock "$TEST_TMP/a.sock" --cmdline "$CMDLINE"
A_PID=$PID A_OUT=$OUT A_ERR=$ERR
if ! wait_for "$A_OUT" '^MIGTEST ready' "$BOOT_TIMEOUT" || ! wait_for "$A_OUT" '^MEMCHECK pass' 300; then
	fail migrate-linux/boot "the guest did not start its checks: $(tail -c 400 "$A_OUT" | tr '\r\n' '  '); $(tail -c 300 "$A_ERR")"
	exit 0
fi
OFFSET=$(clock_offset "$A_OUT")
declare -A PID_OF=([a]=$A_PID) OUT_OF=([a]=$A_OUT) ERR_OF=([a]=$A_ERR)

# move KIND FROM TO ADDR PORT OPTIONS...: vmon ctl migrate OPTIONS moves the guest from vmon FROM
# to vmon TO, waiting at ADDR:PORT; then what a user sees is checked: ctl's report, the source's
# exit, the checker running on at TO without a wrong word, the clock's offset kept (OFFSET).
move() {
	local kind=$1 from=$2 to=$3 addr=$4 port=$5 rc before=$OFFSET
	shift 5
	timeout "$MIGRATE_TIMEOUT" "$VMON" ctl --sock "$TEST_TMP/$from.sock" migrate tcp:$addr:$port "$@" \
		>"$TEST_TMP/$kind.out" 2>"$TEST_TMP/$kind.err"
	rc=$?
	RC=$rc OUT=$TEST_TMP/$kind.out ERR=$TEST_TMP/$kind.err
	expect migrate-linux/$kind "the working Linux guest migrates $LINK with $kind: $(tail -1 "$TEST_TMP/$kind.out")" \
		sh -c "[ $rc -eq 0 ] && grep -q 'downtime [0-9]* ms' '$TEST_TMP/$kind.out'"
	wait_exit "${PID_OF[$from]}" 120
	rc=$?
	RC=$rc OUT=${OUT_OF[$from]} ERR=${ERR_OF[$from]}
	expect migrate-linux/$kind-source-exits "the source exits 0 once the guest runs at the destination" \
		sh -c "[ $rc -eq 0 ] && grep -q 'migrated to' '${ERR_OF[$from]}'"
	OUT=${OUT_OF[$to]} ERR=${ERR_OF[$to]}
	expect migrate-linux/$kind-memory "after $kind the guest's checker runs on and finds every word of its 64 MiB right" \
		runs_on "${OUT_OF[$to]}" "${OUT_OF[@]}"
	OFFSET=$(clock_offset "${OUT_OF[$to]}")
	expect migrate-linux/$kind-clock "the guest's wall clock keeps its offset to the host's (before ${before:-?} s, after ${OFFSET:-?} s)" \
		same_clock "$before" "$OFFSET"
}

# ---- pre-copy, A to B ----
PORT=$(free_port)
start_in "$NS_B" b receive --listen tcp:$ADDR_B:$PORT --api-sock "$TEST_TMP/b.sock"
PID_OF[b]=$PID OUT_OF[b]=$OUT ERR_OF[b]=$ERR
wait_for "$ERR" 'waiting for a migration' 60
move pre-copy a b $ADDR_B $PORT --max-downtime 300

# ---- post-copy, B to a new vmon in A, whose console the test can type on ----
PORT=$(free_port)
mkfifo "$TEST_TMP/c.in"
exec 7<>"$TEST_TMP/c.in"
C_OUT=$TEST_TMP/c.out C_ERR=$TEST_TMP/c.err
${NS_A:+ip netns exec $NS_A} "$VMON" receive --listen tcp:$ADDR_A:$PORT --api-sock "$TEST_TMP/c.sock" \
	<&7 >"$C_OUT" 2>"$C_ERR" &
C_PID=$!
PIDS+=("$C_PID")
PID_OF[c]=$C_PID OUT_OF[c]=$C_OUT ERR_OF[c]=$C_ERR
wait_for "$C_ERR" 'waiting for a migration' 60
move post-copy b c $ADDR_A $PORT --postcopy --max-downtime 1
OUT=${OUT_OF[b]} ERR=${ERR_OF[b]}
expect migrate-linux/post-copy-switched "the second move switched to post-copy" grep -q 'switching to post-copy' "${ERR_OF[b]}"

# ---- the end: the guest stops its work, unmounts the disk and powers off ----
echo stop >&7
wait_exit $C_PID 600
RC=$?
expect migrate-linux/guest-ends "told to stop, the guest's checker reports no corruption, it unmounts the disk and powers off" \
	sh -c "[ $RC -eq 0 ] && tr -d '\r' <'$C_OUT' | grep -q '^MEMCHECK stopped after [0-9]* passes, no corruption' &&
		tr -d '\r' <'$C_OUT' | grep -q '^MIGTEST unmounted'"
e2fsck -fn "$DISK" >"$TEST_TMP/fsck.out" 2>&1
RC=$?
OUT=$TEST_TMP/fsck.out ERR=$TEST_TMP/fsck.out
expect migrate-linux/fsck "e2fsck finds the shared disk clean after two migrations" [ $RC -eq 0 ]
debugfs -R "cat /log" "$DISK" 2>/dev/null >"$TEST_TMP/log"
lines=$(wc -l <"$TEST_TMP/log")
OUT=$TEST_TMP/log ERR=$TEST_TMP/log
expect migrate-linux/disk-lines "the file written through both migrations has all its $lines lines, in order" \
	sh -c "[ $lines -gt 5 ] && awk '\$0 != \"line \" NR { exit 1 }' '$TEST_TMP/log'"
ERR=$C_ERR
expect migrate-linux/no-sanitizer-report "no AddressSanitizer/UBSan report from the three vmon processes" \
	clean_stderr "${ERR_OF[@]}"
for f in a b c; do
	cp "$TEST_TMP/$f.out" "build/test-logs/migrate-linux-$f.console" 2>/dev/null
	cp "$TEST_TMP/$f.err" "build/test-logs/migrate-linux-$f.stderr" 2>/dev/null
done
