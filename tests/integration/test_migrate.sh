#!/usr/bin/env bash
# Live migration between two vmon processes on this host: vmon receive's command-line mistakes
# (no KVM needed); a counting test guest moved with vmon ctl migrate, pre-copy and post-copy,
# from one network namespace to another over a veth pair (loopback where namespaces cannot be
# made), counts on at the destination without a gap and the source exits 0; a destination that
# is not vmon, one killed mid-transfer, a cancelled migration and a link that goes down each
# leave the guest counting on the source with the reason in GET /vm/migration.
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh
. tests/integration/netns.sh

PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	netns_remove
	rm -rf "$TEST_TMP"
}
trap cleanup EXIT

# refused NAME PATTERN ARGS...: vmon ARGS exits 2 and says PATTERN on stderr.
refused() {
	local name=$1 pattern=$2
	shift 2
	run_vmon "$name" 30 "$@"
	expect "migrate/$name" "vmon $* exits 2 and says '$pattern'" \
		sh -c "[ $RC -eq 2 ] && grep -q -- '$pattern' '$ERR' && ! grep -qE 'Sanitizer|runtime error' '$ERR'"
}

refused no-listen 'receive needs --listen' receive
refused no-port 'the port is missing' receive --listen tcp:127.0.0.1
refused bad-scheme 'udp' receive --listen udp:127.0.0.1:4444
refused bad-timeout '--timeout takes whole seconds' receive --listen tcp:127.0.0.1:4444 --timeout 0
refused unknown-option 'unknown option .--colour' receive --listen tcp:127.0.0.1:4444 --colour
refused extra-operand "unexpected argument" receive --listen tcp:127.0.0.1:4444 extra
run_vmon receive-help 10 receive --help
expect migrate/receive-help "vmon receive --help describes --listen, --timeout and --disk" \
	sh -c "[ $RC -eq 0 ] && grep -q -- '--listen ADDR' '$OUT' && grep -q -- '--timeout' '$OUT' && grep -q -- '--disk SPEC' '$OUT'"

if ! have_kvm; then
	refused no-kvm '/dev/kvm' receive --listen tcp:127.0.0.1:4444
	skip migrate "no usable /dev/kvm on this machine"
	exit 0
fi

ctl() { "$VMON" ctl --sock "$@"; }
G=$GUESTS/snapcount.elf

# Sources run in NS_A, destinations listen at ADDR_B in NS_B: two namespaces joined by a veth
# pair, or both here on loopback where they cannot be made.
netns_pair_or_loopback

# ---- a counting guest moves and counts on ----
start_in "$NS_A" src run --kernel $G --memory 128M --api-sock $TEST_TMP/src.sock
SRC_PID=$PID SRC_OUT=$OUT SRC_ERR=$ERR
wait_for $SRC_OUT '^count: 3$' 120
PORT=$(free_port)
start_in "$NS_B" dst receive --listen tcp:$ADDR_B:$PORT --api-sock $TEST_TMP/dst.sock
DST_PID=$PID DST_OUT=$OUT DST_ERR=$ERR
wait_for $DST_ERR 'waiting for a migration' 60
ctl $TEST_TMP/src.sock migrate tcp:$ADDR_B:$PORT --max-downtime 300 >$TEST_TMP/migrate.out 2>$TEST_TMP/migrate.err
RC=$?
OUT=$TEST_TMP/migrate.out ERR=$TEST_TMP/migrate.err
expect migrate/ctl-reports "vmon ctl migrate $LINK exits 0 with the downtime and total time" \
	sh -c "[ $RC -eq 0 ] && grep -q 'downtime [0-9]* ms, total [0-9]* ms' $TEST_TMP/migrate.out"
wait_exit $SRC_PID 30
RC=$?
OUT=$SRC_OUT ERR=$SRC_ERR
expect migrate/source-exits "the source vmon exits 0 after the switch, saying where the guest runs" \
	sh -c "[ $RC -eq 0 ] && grep -q 'migrated to tcp:$ADDR_B:$PORT' $SRC_ERR"
n=$(last_count $SRC_OUT)
wait_for $DST_OUT "^count: $((n + 3))\$" 60
OUT=$DST_OUT ERR=$DST_ERR
expect migrate/counts-on "the destination's guest counts on from ${n:-?} without a gap or a repeat" \
	counts_consecutive $SRC_OUT $DST_OUT
expect migrate/dest-api "the destination's API answers and shows the guest running" \
	sh -c "$VMON ctl --sock $TEST_TMP/dst.sock info | grep -q '\"running\"'"
kill -TERM $DST_PID; wait_exit $DST_PID 30

# ---- post-copy: the guest starts on the destination while the rest of its RAM follows ----
start_in "$NS_A" pcsrc run --kernel $G --memory 128M --api-sock $TEST_TMP/pcsrc.sock
PS_PID=$PID PS_OUT=$OUT PS_ERR=$ERR
wait_for $PS_OUT '^count: 3$' 120
PORT=$(free_port)
start_in "$NS_B" pcdst receive --listen tcp:$ADDR_B:$PORT
PD_PID=$PID PD_OUT=$OUT PD_ERR=$ERR
wait_for $PD_ERR 'waiting for a migration' 60
ctl $TEST_TMP/pcsrc.sock migrate tcp:$ADDR_B:$PORT --postcopy --max-downtime 1 >$TEST_TMP/pc.out 2>$TEST_TMP/pc.err
RC=$?
wait_exit $PS_PID 30
n=$(last_count $PS_OUT)
wait_for $PD_OUT "^count: $((n + 3))\$" 60
OUT=$PD_OUT ERR=$PD_ERR
expect migrate/postcopy-counts-on "with --postcopy the destination's guest counts on without a gap ($(grep -c 'switching to post-copy' $PS_ERR) switch to post-copy)" \
	sh -c "[ $RC -eq 0 ] && grep -q 'migrated to' $PS_ERR"
expect migrate/postcopy-consecutive "the counts across the two hosts have no gap or repeat" counts_consecutive $PS_OUT $PD_OUT
kill -TERM $PD_PID; wait_exit $PD_PID 30

# ---- failures leave the guest counting on the source ----
start_in "$NS_A" src2 run --kernel $G --memory 128M --api-sock $TEST_TMP/src2.sock
S2_PID=$PID S2_OUT=$OUT S2_ERR=$ERR
wait_for $S2_OUT '^count: 3$' 120

# counting_on: the source's guest still counts.
counting_on() {
	local n
	n=$(last_count $S2_OUT)
	wait_for $S2_OUT "^count: $((n + 2))\$" 30
}

NOTVMON_PORT=$(free_port)
${NS_B:+ip netns exec $NS_B} python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)
c, _ = s.accept(); c.close()' $ADDR_B $NOTVMON_PORT &
PIDS+=($!)
sleep 0.5
ctl $TEST_TMP/src2.sock migrate tcp:$ADDR_B:$NOTVMON_PORT >$TEST_TMP/notvmon.out 2>$TEST_TMP/notvmon.err
RC=$?
OUT=$TEST_TMP/notvmon.out ERR=$TEST_TMP/notvmon.err
expect migrate/not-vmon "a destination that is not vmon fails the migration with a reason and the guest counts on" \
	sh -c "[ $RC -ne 0 ] && grep -qE 'is not vmon|not a vmon' $TEST_TMP/notvmon.err && curl -s --unix-socket $TEST_TMP/src2.sock http://vmon/vm/migration | grep -q '\"failed\"'"
expect migrate/not-vmon-runs "after it the source's guest still counts" counting_on

# interrupted NAME HOW: a paced migration to a new vmon receive, stopped by HOW once the
# destination receives (kill: SIGKILL the destination; cancel: DELETE /vm/migration; cut: the
# destination's end of the veth pair goes down); sets RC and the destination's DPID and DERR.
interrupted() {
	local port ctl_pid
	port=$(free_port)
	start_in "$NS_B" "$1-dst" receive --listen tcp:$ADDR_B:$port
	DPID=$PID DERR=$ERR
	wait_for $DERR 'waiting for a migration' 60
	ctl $TEST_TMP/src2.sock migrate tcp:$ADDR_B:$port --bandwidth 1 >$TEST_TMP/$1.out 2>$TEST_TMP/$1.err &
	ctl_pid=$!
	wait_for $DERR 'receiving a guest' 30
	sleep 1
	case $2 in
	kill) kill -KILL $DPID ;;
	cancel) curl -s -X DELETE --unix-socket $TEST_TMP/src2.sock http://vmon/vm/migration >/dev/null ;;
	cut) ip -n "$NS_B" link set "$VETH_B" down ;;
	esac
	wait_exit $ctl_pid 60
	RC=$?
	OUT=$TEST_TMP/$1.out ERR=$TEST_TMP/$1.err
}

interrupted killed kill
expect migrate/dest-killed "a destination killed mid-transfer fails the migration and the guest counts on the source" \
	sh -c "[ $RC -ne 0 ] && grep -q 'keeps running here' $TEST_TMP/killed.err"
expect migrate/dest-killed-runs "after it the source's guest still counts" counting_on

interrupted cancel cancel
expect migrate/cancelled "a cancelled migration says so and the guest counts on the source" \
	sh -c "[ $RC -ne 0 ] && grep -q 'cancelled' $TEST_TMP/cancel.err"
expect migrate/cancelled-runs "after it the source's guest still counts" counting_on
expect migrate/dest-waits-again "the destination forgets the cancelled source and waits for the next" \
	wait_for $DERR 'waiting for the source to try again' 30
kill -TERM $DPID

# The network between the hosts fails: nothing arrives any more, and the step's deadline (10 s)
# ends the migration on the source, whose guest counts on.
if [ -n "$NS_B" ]; then
	interrupted cut cut
	expect migrate/link-down "a link that goes down mid-transfer fails the migration within its deadline and the guest counts on the source" \
		sh -c "[ $RC -ne 0 ] && [ $RC -ne 124 ] && grep -q 'keeps running here' $TEST_TMP/cut.err"
	expect migrate/link-down-runs "after it the source's guest still counts" counting_on
	kill -KILL $DPID
	ip -n "$NS_B" link set "$VETH_B" up
else
	skip migrate/link-down "$NETNS_WHY"
fi

# ---- auto-converge: a guest rewriting 16 MiB faster than the link carries it is throttled ----
# 16 MiB take 1.3 s at 100 Mbit/s and the guest rewrites them all in far less: rounds 2 and 3 do
# not converge and the plan throttles; the migration is then cancelled, as it could not converge.
# (written on a machine without /dev/kvm: never run there)
start dirtier run --kernel $GUESTS/dirtier.elf --memory 128M --api-sock $TEST_TMP/dirtier.sock
DI_PID=$PID DI_OUT=$OUT DI_ERR=$ERR
wait_for $DI_OUT '^count: 3$' 120
metric() { curl -s --unix-socket $TEST_TMP/dirtier.sock http://vmon/metrics | awk -v m="$1" '$1 ~ "^"m { s += $2 } END { print s + 0 }'; }
throttled() {
	local i
	for ((i = 0; i < 600; i++)); do
		curl -s --unix-socket $TEST_TMP/dirtier.sock http://vmon/vm/migration | grep -qE '"throttle_pct": *[1-9]' &&
			return 0
		sleep 0.1
	done
	return 1
}
port=$(free_port)
start dirtier-dst receive --listen tcp:127.0.0.1:$port
DD_PID=$PID DD_ERR=$ERR
wait_for $DD_ERR 'waiting for a migration' 60
ctl $TEST_TMP/dirtier.sock migrate tcp:127.0.0.1:$port --bandwidth 100 --max-downtime 5 \
	>$TEST_TMP/autoconverge.out 2>$TEST_TMP/autoconverge.err &
CTL_PID=$!
OUT=$DI_OUT ERR=$DI_ERR
expect migrate/autoconverge-throttles "GET /vm/migration shows the vCPUs throttled after rounds that do not converge" \
	throttled
sleep 1
positive() { awk -v v="$1" 'BEGIN { exit !(v > 0) }'; }
throttle_shown() { positive "$(metric vmon_vcpu_throttle_percent)" && positive "$(metric vmon_vcpu_throttle_seconds_total)"; }
expect migrate/autoconverge-metrics "the metrics show the throttle and the time the vCPU was held" throttle_shown
curl -s -X DELETE --unix-socket $TEST_TMP/dirtier.sock http://vmon/vm/migration >/dev/null
wait_exit $CTL_PID 60
throttle_lifted() { [ "$(metric vmon_vcpu_throttle_percent)" = 0 ]; }
expect migrate/autoconverge-lifted "a cancelled migration lifts the throttle" throttle_lifted
n=$(last_count $DI_OUT)
expect migrate/autoconverge-runs "after it the guest still runs" wait_for $DI_OUT "^count: $((n + 2))\$" 30
kill -TERM $DD_PID $DI_PID; wait_exit $DD_PID 30; wait_exit $DI_PID 30
