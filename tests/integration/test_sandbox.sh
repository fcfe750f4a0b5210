#!/usr/bin/env bash
# vmon's confinement as seen from outside: every thread of a running `vmon run` has a seccomp
# filter, no_new_privs and no effective capabilities; the guest and the API (info, pause,
# resume, snapshot, stop) work under the filters without a violation; --seccomp off warns and
# a bad --seccomp value is refused. Run for build/vmon and build/vmon-san.
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

export VMON_RUNTIME_DIR=$TEST_TMP/run
VM_PID=
trap '[ "$BASHPID" = "$TEST_MAIN_PID" ] && { [ -n "$VM_PID" ] && kill -KILL $VM_PID 2>/dev/null; rm -rf "$TEST_TMP"; }' EXIT

# Every task of PID: "name Seccomp NoNewPrivs CapEff", one line each.
task_lines() {
	local t
	for t in /proc/$1/task/*; do
		printf '%s %s %s %s\n' "$(cat "$t/comm")" "$(awk '/^Seccomp:/ {print $2}' "$t/status")" \
			"$(awk '/^NoNewPrivs:/ {print $2}' "$t/status")" "$(awk '/^CapEff:/ {print $2}' "$t/status")"
	done
}

for bin in build/vmon build/vmon-san; do
	b=$(basename "$bin")
	[ -x "$bin" ] || { fail sandbox/$b/build "$bin is missing: make $bin"; continue; }
	VMON=$bin

	run_vmon bogus-$b 30 run --kernel $GUESTS/idle.elf --seccomp bogus
	expect sandbox/$b/bad-value "--seccomp bogus refused with a clear line and exit status 2" \
		eval '[ $RC = 2 ] && grep -q "^vmon: --seccomp takes on, log or off, not '"'"'bogus'"'"'" "$ERR"'

	run_vmon off-$b 30 run --kernel /nonexistent --seccomp off
	expect sandbox/$b/off-warns "--seccomp off prints a warning" grep -q "seccomp off: no system call filter" "$ERR"

	if ! have_kvm; then
		skip sandbox/$b/running "no usable /dev/kvm on this machine"
		continue
	fi
	SOCK=$TEST_TMP/$b.sock OUT=$TEST_TMP/$b.out ERR=$TEST_TMP/$b.err
	"$bin" run --kernel $GUESTS/idle.elf --memory 32M --api-sock "$SOCK" </dev/null >"$OUT" 2>"$ERR" &
	VM_PID=$!
	if ! wait_for "$OUT" 'idle guest sleeping' 60 || [ ! -S "$SOCK" ]; then
		fail sandbox/$b/running "the idle guest did not start: $(tail -c 400 "$ERR")"
		kill -KILL $VM_PID 2>/dev/null
		wait $VM_PID 2>/dev/null
		VM_PID=
		continue
	fi
	# The API's threads come and go with connections: one request makes sure a connection thread exists too.
	build/vmon ctl --sock "$SOCK" info >/dev/null 2>&1
	tasks=$(task_lines $VM_PID)
	expect sandbox/$b/seccomp-every-thread "Seccomp: 2 in every /proc/PID/task/*/status: $tasks" \
		eval '! grep -qv "^[^ ]* 2 " <<<"$tasks"'
	expect sandbox/$b/no-new-privs "NoNewPrivs: 1 in every thread: $tasks" eval '! grep -qv "^[^ ]* [0-9]* 1 " <<<"$tasks"'
	expect sandbox/$b/no-capabilities "CapEff 0 in every thread: $tasks" \
		eval '! grep -qv " 0000000000000000$" <<<"$tasks"'
	expect sandbox/$b/thread-roles "the vCPU, event-loop and signal threads are named after their role: $tasks" \
		eval 'grep -q "^vcpu " <<<"$tasks" && grep -q "^event-loop " <<<"$tasks" && grep -q "^signal " <<<"$tasks"'

	ok=1
	for cmd in info pause "snapshot $TEST_TMP/snap-$b" resume; do
		# shellcheck disable=SC2086
		if ! build/vmon ctl --sock "$SOCK" $cmd >"$TEST_TMP/ctl.out" 2>&1; then
			fail sandbox/$b/api "vmon ctl $cmd failed: $(tail -c 300 "$TEST_TMP/ctl.out"); vmon: $(tail -c 400 "$ERR")"
			ok=0
			break
		fi
	done
	[ $ok = 1 ] && pass sandbox/$b/api
	kill -0 $VM_PID 2>/dev/null && expect sandbox/$b/snapshot-files "the snapshot directory has its files" \
		test -s "$TEST_TMP/snap-$b/state"
	build/vmon ctl --sock "$SOCK" stop >/dev/null 2>&1
	for _ in $(seq 100); do kill -0 $VM_PID 2>/dev/null || break; sleep 0.2; done
	kill -KILL $VM_PID 2>/dev/null
	wait $VM_PID
	RC=$?
	VM_PID=
	# 159 = 128 + SIGSYS: a filter killed vmon.
	expect sandbox/$b/clean-exit "vmon ended with status 0 after ctl stop (159 would be a seccomp kill)" \
		eval '[ $RC = 0 ] && ! grep -qi "seccomp\]" "$ERR"'
done
