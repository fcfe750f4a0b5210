#!/usr/bin/env bash
# The memory balloon with the default Linux guest: host memory really comes back when the
# balloon inflates (RssShmem of the vmon process, guest RAM being its memfd), the guest's
# MemTotal shrinks and grows back, freed guest memory goes back to the host through free page
# reporting with no target set, and deflate-on-OOM saves a guest program from the OOM killer.
# The guest's /init (appended to the default initramfs) runs one scenario, chosen on the kernel
# command line with balloontest=inflate|report|oom, and prints "BALLOON-TEST ..." lines.
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

if ! have_kvm; then
	skip balloon "no usable /dev/kvm on this machine"
	exit 0
fi
if ! scripts/build-guest.sh >"$TEST_TMP/build-guest.log" 2>&1; then
	fail balloon/build-guest "scripts/build-guest.sh failed: $(tail -5 "$TEST_TMP/build-guest.log" | tr '\n' ' ')"
	exit 0
fi
eval "$(scripts/guest-paths.sh)"
BOOT_TIMEOUT=${VMON_LINUX_BOOT_TIMEOUT:-1800}
STEP_TIMEOUT=${VMON_BALLOON_STEP_TIMEOUT:-900} # the guest kernel is slow where KVM is emulated
CMDLINE="$(cat guest/cmdline 2>/dev/null || echo console=ttyS0)"
MIB_KB=1024

PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	rm -rf "$TEST_TMP"
}
trap cleanup EXIT

mkdir -p "$TEST_TMP/init.d"
cat >"$TEST_TMP/init.d/init" <<'INIT'
#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t devtmpfs devtmpfs /dev
$B mount -t sysfs sysfs /sys
$B mkdir -p /scratch
$B mount -t tmpfs -o size=240m tmpfs /scratch
meminfo() { $B awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }
mode=$($B sed -n 's/.*balloontest=\([a-z]*\).*/\1/p' /proc/cmdline)
echo "BALLOON-TEST up mode=$mode memtotal_kb=$(meminfo MemTotal)"
case $mode in
inflate)
	# Touch all free memory but 8 MiB and free it again: the host holds it until the balloon
	# takes it, and whichever free pages the balloon gets, at most 8 MiB of them were never
	# touched (untouched guest RAM costs the host nothing, so giving it back frees nothing).
	$B mount -o remount,size=$(($(meminfo MemFree) - 8192))k /scratch
	$B dd if=/dev/zero of=/scratch/fill bs=1M 2>/dev/null
	$B rm /scratch/fill
	echo "BALLOON-TEST touched"
	;;
report)
	$B dd if=/dev/zero of=/scratch/fill bs=1M count=150 2>/dev/null
	echo "BALLOON-TEST touched"
	$B sleep 10 # the host measures its memory with the 150 MiB held
	$B rm /scratch/fill
	echo "BALLOON-TEST freed"
	;;
oom)
	# Wait for the host's 128 MiB target to be in the balloon (MemFree well below 128 MiB) ...
	i=0
	while [ "$(meminfo MemFree)" -gt 131072 ] && [ $i -lt 900 ]; do $B sleep 1; i=$((i + 1)); done
	echo "BALLOON-TEST inflated memfree_kb=$(meminfo MemFree)"
	# ... then need 200 MiB: more than the balloon left.
	$B dd if=/dev/zero of=/scratch/big bs=1M count=200 2>/dev/null
	echo "BALLOON-TEST allocated kb=$($B du -k /scratch/big | $B cut -f1) killed=$($B dmesg | $B grep -c 'Killed process')"
	;;
esac
while :; do
	echo "BALLOON-TEST memtotal_kb=$(meminfo MemTotal)"
	$B sleep 2
done
INIT
chmod +x "$TEST_TMP/init.d/init"
(cd "$TEST_TMP/init.d" && echo init | cpio -o -H newc >../init.cpio 2>/dev/null)
cat "$GUEST_INITRD" "$TEST_TMP/init.cpio" >"$TEST_TMP/initrd.cpio"

# start NAME BALLOON-VALUE MODE: the guest in the background with 256 MiB; sets PID, OUT, ERR, SOCK.
start() {
	OUT=$TEST_TMP/$1.out
	ERR=$TEST_TMP/$1.err
	SOCK=$TEST_TMP/$1.sock
	"$VMON" run --kernel "$GUEST_KERNEL" --initrd "$TEST_TMP/initrd.cpio" --memory 256M --api-sock "$SOCK" \
		"--balloon=$2" --cmdline "$CMDLINE balloontest=$3" </dev/null >"$OUT" 2>"$ERR" &
	PID=$!
	PIDS+=("$PID")
	RC=0
}
finish() {
	kill -TERM "$PID" 2>/dev/null
	( sleep 30; kill -KILL "$PID" 2>/dev/null ) & local dog=$!
	wait "$PID"
	RC=$?
	kill $dog 2>/dev/null
	wait $dog 2>/dev/null
	cp "$OUT" "build/test-logs/balloon-$1.console" 2>/dev/null
	cp "$ERR" "build/test-logs/balloon-$1.stderr" 2>/dev/null
	expect "balloon/$1-no-sanitizer-report" "no AddressSanitizer/UBSan report" \
		sh -c "! grep -qE 'Sanitizer|runtime error' $ERR"
}
mkdir -p build/test-logs

rss_shmem_kb() { awk '/^RssShmem:/ { print $2 }' "/proc/$PID/status"; }
# A number from GET /balloon (pretty-printed: one key per line).
balloon() { "$VMON" ctl --sock "$SOCK" balloon-stats 2>/dev/null | sed -n "s/^ *\"$1\": \([0-9]*\).*/\1/p" | head -1; }
last_memtotal() { tr -d '\r' <"$OUT" | sed -n 's/^BALLOON-TEST memtotal_kb=//p' | tail -1; }
# wait_until SECONDS COMMAND...: true once COMMAND succeeds.
wait_until() {
	local end=$(($(date +%s) + $1))
	shift
	until "$@"; do
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 1
	done
}
actual_is() { [ "$(balloon actual_mib)" = "$1" ]; }

# ---- inflate and deflate: host memory drops, the guest's MemTotal follows ----
start inflate "deflate_on_oom=off,free_page_reporting=off,stats_interval=1" inflate
if wait_for "$OUT" '^BALLOON-TEST touched' "$BOOT_TIMEOUT"; then
	sleep 2
	total0=$(last_memtotal)
	rss0=$(rss_shmem_kb)
	ctl_rc=0
	"$VMON" ctl --sock "$SOCK" balloon 128 >/dev/null || ctl_rc=$?
	expect balloon/ctl-set "vmon ctl balloon 128 succeeds" [ "$ctl_rc" = 0 ]
	wait_until "$STEP_TIMEOUT" actual_is 128
	expect balloon/actual-reaches-target "actual_mib reaches 128 ($(balloon actual_mib))" actual_is 128
	rss1=$(rss_shmem_kb)
	expect balloon/host-memory-drops "RssShmem fell by >= 90% of 128 MiB (${rss0} kB -> ${rss1} kB)" \
		[ $((rss0 - rss1)) -ge $((128 * MIB_KB * 9 / 10)) ]
	sleep 5
	total1=$(last_memtotal)
	expect balloon/guest-sees-less "the guest's MemTotal shrank by >= 120 MiB (${total0} kB -> ${total1} kB)" \
		[ $((total0 - total1)) -ge $((120 * MIB_KB)) ]
	# Statistics arrive at the interval and agree with the guest's own figures.
	memtot=$(balloon memtot_bytes)
	expect balloon/stats-memtotal "memtot_bytes ($memtot) is the guest's MemTotal ($total1 kB) within 5%" \
		sh -c "[ -n '$memtot' ] && [ $((${memtot:-0} / 1024)) -ge $((total1 * 95 / 100)) ] && [ $((${memtot:-0} / 1024)) -le $((total1 * 105 / 100)) ]"
	u0=$(balloon stats_updates)
	sleep 5
	u1=$(balloon stats_updates)
	expect balloon/stats-interval "statistics every second (${u0} -> ${u1} updates in 5 s)" \
		[ $((${u1:-0} - ${u0:-0})) -ge 3 ]
	metric=$(curl -s --max-time 10 --unix-socket "$SOCK" http://vmon/metrics | awk '$1 == "vmon_balloon_actual_bytes" { print $2 }')
	expect balloon/metrics "vmon_balloon_actual_bytes is 128 MiB ($metric)" [ "$metric" = $((128 * 1024 * 1024)) ]

	# A snapshot of the ballooned guest restores with its balloon, which still works.
	SNAP=$TEST_TMP/snap
	"$VMON" ctl --sock "$SOCK" snapshot "$SNAP" >/dev/null 2>"$TEST_TMP/snap.err"
	expect balloon/snapshot "a snapshot of the ballooned guest is written" [ -d "$SNAP" ]
	R_SOCK=$TEST_TMP/restored.sock
	"$VMON" restore "$SNAP" --api-sock "$R_SOCK" </dev/null >"$TEST_TMP/restored.out" 2>"$TEST_TMP/restored.err" &
	R_PID=$!
	PIDS+=("$R_PID")
	r_balloon() { "$VMON" ctl --sock "$R_SOCK" balloon-stats 2>/dev/null | sed -n "s/^ *\"$1\": \([0-9]*\).*/\1/p" | head -1; }
	r_actual_is() { [ "$(r_balloon actual_mib)" = "$1" ]; }
	wait_for "$TEST_TMP/restored.out" '^BALLOON-TEST memtotal_kb=' 300
	expect balloon/restored-keeps-balloon "the restored VM has target and actual at 128 ($(r_balloon target_mib), $(r_balloon actual_mib))" \
		sh -c "[ '$(r_balloon target_mib)' = 128 ] && [ '$(r_balloon actual_mib)' = 128 ]"
	"$VMON" ctl --sock "$R_SOCK" balloon 256 >/dev/null
	wait_until "$STEP_TIMEOUT" r_actual_is 256
	expect balloon/restored-deflates "the restored VM's balloon deflates ($(r_balloon actual_mib))" r_actual_is 256
	kill -TERM "$R_PID" 2>/dev/null
	wait "$R_PID" 2>/dev/null
	expect balloon/restored-no-sanitizer-report "no AddressSanitizer/UBSan report in the restored VM" \
		sh -c "! grep -qE 'Sanitizer|runtime error' $TEST_TMP/restored.err"

	"$VMON" ctl --sock "$SOCK" balloon 256 >/dev/null
	wait_until "$STEP_TIMEOUT" actual_is 256
	expect balloon/deflate "actual_mib back at 256 ($(balloon actual_mib))" actual_is 256
	sleep 5
	total2=$(last_memtotal)
	expect balloon/guest-gets-it-back "MemTotal back to ${total0} kB ($total2 kB)" [ "$total2" = "$total0" ]
else
	fail balloon/inflate-boot "the guest did not come up: $(tail -c 400 "$ERR" | tr '\n' ' ')"
fi
finish inflate

# ---- free page reporting: memory the guest freed goes back with no target set ----
start report "" report
if wait_for "$OUT" '^BALLOON-TEST touched' "$BOOT_TIMEOUT"; then
	sleep 2
	rss_touched=$(rss_shmem_kb)
	wait_for "$OUT" '^BALLOON-TEST freed' 120
	fell_enough() { [ $((rss_touched - $(rss_shmem_kb))) -ge $((150 * MIB_KB * 8 / 10)) ]; }
	wait_until "$STEP_TIMEOUT" fell_enough
	rss_after=$(rss_shmem_kb)
	expect balloon/reporting-returns-memory \
		"RssShmem fell by >= 80% of 150 MiB after the guest freed it (${rss_touched} kB -> ${rss_after} kB)" fell_enough
	expect balloon/reporting-without-target "no target was set (target_mib $(balloon target_mib))" \
		[ "$(balloon target_mib)" = 256 ]
	reported=$(balloon reported_bytes)
	expect balloon/reporting-counted "reported_bytes counts it (${reported})" \
		[ "${reported:-0}" -ge $((120 * 1024 * 1024)) ]
else
	fail balloon/report-boot "the guest did not come up: $(tail -c 400 "$ERR" | tr '\n' ' ')"
fi
finish report

# ---- deflate on OOM: a guest program that needs more than the balloon left is not killed ----
start oom "deflate_on_oom=on,free_page_reporting=off" oom
if wait_for "$OUT" '^BALLOON-TEST up' "$BOOT_TIMEOUT"; then
	"$VMON" ctl --sock "$SOCK" balloon 128 >/dev/null
	wait_for "$OUT" '^BALLOON-TEST allocated' "$STEP_TIMEOUT"
	line=$(tr -d '\r' <"$OUT" | grep '^BALLOON-TEST allocated' | tail -1)
	expect balloon/oom-not-killed "the 200 MiB allocation completed, nothing OOM-killed ($line)" \
		sh -c "echo '$line' | grep -q 'kb=204800 killed=0'"
	after=$(balloon actual_mib)
	expect balloon/oom-deflated "the balloon gave pages back (actual_mib $after > 128)" [ "${after:-0}" -gt 128 ]
else
	fail balloon/oom-boot "the guest did not come up: $(tail -c 400 "$ERR" | tr '\n' ' ')"
fi
finish oom
