#!/usr/bin/env bash
# Guest RAM backings with a test guest: --memory SIZE,merge=on is private memory that the host's
# KSM merges across two VMs (the test switches ksmd on and puts its settings back), and
# --memory SIZE,hugepages=on takes 2 MiB pages from the host's pool (the test raises
# vm.nr_hugepages and puts it back), with the message that says what to set when there are too few.
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

if ! have_kvm; then
	skip memory "no usable /dev/kvm on this machine"
	exit 0
fi
KSM=/sys/kernel/mm/ksm
NR=/proc/sys/vm/nr_hugepages
SAVED_NR=$(cat $NR)
SAVED_KSM="$(cat $KSM/run $KSM/pages_to_scan $KSM/sleep_millisecs 2>/dev/null | tr '\n' ' ')"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	[ "$(id -u)" = 0 ] && echo "$SAVED_NR" >$NR
	if [ "$(id -u)" = 0 ] && [ -n "$SAVED_KSM" ]; then
		read -r run scan sleep <<<"$SAVED_KSM"
		echo "$scan" >$KSM/pages_to_scan; echo "$sleep" >$KSM/sleep_millisecs; echo "$run" >$KSM/run
	fi
	rm -rf "$TEST_TMP"
}
trap cleanup EXIT

# start NAME ARGS...: vmon with the counter guest in the background; SOCK is its API socket.
start() {
	local name=$1
	shift
	SOCK=$TEST_TMP/$name.sock
	"$VMON" run --kernel $GUESTS/counter.elf --api-sock "$SOCK" --name "$name" "$@" </dev/null \
		>"$TEST_TMP/$name.out" 2>"$TEST_TMP/$name.err" &
	PIDS+=($!)
	OUT=$TEST_TMP/$name.out ERR=$TEST_TMP/$name.err
	wait_for "$OUT" 'count: ' 60
}
vm_field() { curl -s --max-time 10 --unix-socket "$1" http://vmon/vm | python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2" 2>/dev/null; }
metric() { curl -s --max-time 10 --unix-socket "$1" http://vmon/metrics | awk -v m="$2" '$1 == m { print $2 }'; }
hugepages_free() { awk '$1 == "HugePages_Free:" { print $2 }' /proc/meminfo; }
hugepages_rsvd() { awk '$1 == "HugePages_Rsvd:" { print $2 }' /proc/meminfo; }

# ---- too few hugepages: the message names both counts and the setting ----
have=$(($(hugepages_free) - $(hugepages_rsvd)))
need=$((have + 2))
run_vmon hugepages-too-few 60 run --kernel $GUESTS/counter.elf --memory $((need * 2))M,hugepages=on
expect memory/hugepages-too-few "vmon refuses to start and says how many hugepages it needs and the host has" \
	grep -q "guest RAM needs $need free 2 MiB pages, the host has $have: raise vm.nr_hugepages" "$ERR"

if [ "$(id -u)" != 0 ]; then
	skip memory/hugepages "raising vm.nr_hugepages and switching KSM on need root"
	exit 0
fi

# ---- hugepages=on: RAM comes from the pool, all of it reserved at start ----
echo $((SAVED_NR + 16)) >$NR
free0=$(hugepages_free) rsvd0=$(hugepages_rsvd)
if start huge --memory 32M,hugepages=on; then
	expect memory/hugepages-api "GET /vm says hugepages with 2 MiB pages" \
		[ "$(vm_field "$SOCK" 'd["memory_backing"], d["memory_page_bytes"], d["config"]["memory"]["hugepages"]')" = "('hugepages', 2097152, True)" ]
	expect memory/hugepages-pool "the VM holds its 16 hugepages (in use or reserved)" \
		[ $((free0 - $(hugepages_free) + $(hugepages_rsvd) - rsvd0)) -eq 16 ]
	expect memory/hugepages-metric "the metrics say 2 MiB pages" [ "$(metric "$SOCK" vmon_guest_memory_page_bytes)" = 2097152 ]
else
	fail memory/hugepages-start "vmon with hugepages=on did not come up: $(tail -c 400 "$ERR" | tr '\n' ' ')"
fi

# ---- merge=on: two VMs running the same guest share pages once ksmd runs ----
echo 0 >$KSM/run
if start merge1 --memory 32M,merge=on && S1=$SOCK && grep -q "KSM is off on this host.*echo 1 > /sys/kernel/mm/ksm/run" "$ERR" &&
	start merge2 --memory 32M,merge=on && S2=$SOCK; then
	pass memory/merge-log
	echo 10000 >$KSM/pages_to_scan; echo 10 >$KSM/sleep_millisecs; echo 1 >$KSM/run
	for _ in $(seq 150); do
		[ "${m1:-0}" -gt 0 ] && [ "${m2:-0}" -gt 0 ] && break
		sleep 0.2
		m1=$(vm_field "$S1" 'd["ksm"]["merging_pages"]') m2=$(vm_field "$S2" 'd["ksm"]["merging_pages"]')
	done
	expect memory/merge-shares "both VMs report merged pages in GET /vm (got ${m1:-none} and ${m2:-none})" \
		[ "${m1:-0}" -gt 0 -a "${m2:-0}" -gt 0 ]
	expect memory/merge-metric "vmon_ksm_merging_pages is in the metrics" [ -n "$(metric "$S1" vmon_ksm_merging_pages)" ]
else
	fail memory/merge-start "two VMs with merge=on did not come up, or the log did not say KSM is off: $(tail -c 400 "$ERR" | tr '\n' ' ')"
fi
