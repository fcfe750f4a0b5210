#!/usr/bin/env bash
# vmon clone and vmon restore --clone/--clock on the command line: every mistake is refused with
# exit status 2 and a sentence naming it, before anything is started. None of this needs KVM;
# clones of a running Linux guest are checked in test_snapshot.sh.
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

# refused NAME PATTERN ARGS...: vmon ARGS exits 2 and says PATTERN on stderr.
refused() {
	local name=$1 pattern=$2
	shift 2
	run_vmon "$name" 30 "$@"
	expect "clone/$name" "vmon $* exits 2 and says '$pattern'" \
		sh -c "[ $RC -eq 2 ] && grep -q -- '$pattern' '$ERR' && ! grep -qE 'Sanitizer|runtime error' '$ERR'"
}

mkdir -p "$TEST_TMP/notsnap"
refused no-dir 'no snapshot directory given' clone --count 2
refused no-count 'say how many clones' clone "$TEST_TMP/notsnap"
refused count-zero '--count takes a whole number from 1 to 256' clone "$TEST_TMP/notsnap" --count 0
refused count-big '--count takes a whole number from 1 to 256' clone "$TEST_TMP/notsnap" --count 257
refused count-word '--count takes a whole number' clone "$TEST_TMP/notsnap" --count many
refused count-negative '--count takes a whole number' clone "$TEST_TMP/notsnap" --count -3
refused bad-prefix 'does not make valid VM names' clone "$TEST_TMP/notsnap" --count 2 --name-prefix 'a b'
refused long-prefix 'does not make valid VM names' clone "$TEST_TMP/notsnap" --count 10 \
	--name-prefix "$(printf 'p%.0s' $(seq 63))"
refused bad-clock '--clock takes realtime or continue' clone "$TEST_TMP/notsnap" --count 2 --clock sometimes
refused bad-timeout '--timeout takes a whole number' clone "$TEST_TMP/notsnap" --count 2 --timeout 0
refused unknown-option 'unknown option .--colour' clone "$TEST_TMP/notsnap" --count 2 --colour
refused two-dirs "unexpected argument" clone "$TEST_TMP/notsnap" "$TEST_TMP/other" --count 2
refused missing-snapshot 'cannot open the snapshot directory' clone "$TEST_TMP/nothing-here" --count 2
refused not-a-snapshot "$TEST_TMP/notsnap/state" clone "$TEST_TMP/notsnap" --count 2
expect clone/nothing-started "a refused vmon clone creates no run directory" \
	sh -c "[ ! -e '$TEST_TMP/notsnap/clones' ] && [ ! -e '$TEST_TMP/nothing-here' ]"
refused restore-bad-clock '--clock takes realtime or continue' restore "$TEST_TMP/notsnap" --clone --clock=later
refused restore-clone-value 'option .--clone. takes no value' restore "$TEST_TMP/notsnap" --clone=yes
run_vmon help 10 clone --help
expect clone/help "vmon clone --help describes --count and --name-prefix" \
	sh -c "[ $RC -eq 0 ] && grep -q -- '--count N' '$OUT' && grep -q -- '--name-prefix' '$OUT'"
run_vmon restore-help 10 restore --help
expect clone/restore-help "vmon restore --help describes --clone and --clock" \
	sh -c "[ $RC -eq 0 ] && grep -q -- '--clone' '$OUT' && grep -q -- '--clock MODE' '$OUT'"

# ---- a snapshot whose files pass every check but that cannot run: every clone fails, reported ----
python3 tests/integration/snapshot_sections.py minimal "$TEST_TMP/mini"
run_vmon clone-fails 120 clone "$TEST_TMP/mini" --count 3 --name-prefix mini --run-dir "$TEST_TMP/mini-run" --timeout 30
reports_each_failure() {
	[ $RC -eq 1 ] && grep -q "0 of 3 clones of $TEST_TMP/mini running" "$ERR" || return 1
	local i
	for i in 1 2 3; do
		grep -q "clone mini-$i failed: it exited with status [1-9]*; see $TEST_TMP/mini-run/mini-$i.log" "$ERR" &&
			[ -s "$TEST_TMP/mini-run/mini-$i.log" ] || return 1
	done
	! grep -qE 'Sanitizer|runtime error' "$ERR" "$TEST_TMP"/mini-run/*.log
}
expect clone/failures-reported "vmon clone exits 1, names each failed clone, why and its log, and counts 0 of 3 running" \
	reports_each_failure
expect clone/failed-not-listed "failed clones leave no entry for vmon ps" \
	sh -c "! '$VMON' ps 2>/dev/null | grep -q 'mini-'"

# A name a running VM already has is refused before anything starts.
export VMON_RUNTIME_DIR=$TEST_TMP/runtime
mkdir -p "$VMON_RUNTIME_DIR" && chmod 700 "$VMON_RUNTIME_DIR"
start=$(awk '{ print $22 }' /proc/$$/stat)
printf '{"pid": %d, "proc_start": %s, "started_at": 0, "config": {"name": "mini-2", "cpus": 1, "memory": 16777216}}\n' \
	$$ "$start" >"$VMON_RUNTIME_DIR/$$.json"
run_vmon clone-name-taken 30 clone "$TEST_TMP/mini" --count 3 --name-prefix mini --run-dir "$TEST_TMP/taken-run"
expect clone/name-taken "a clone name a running VM has is refused (exit 2), nothing created" \
	sh -c "[ $RC -eq 2 ] && grep -q 'a VM named mini-2 is already running (pid $$)' '$ERR' && [ ! -e '$TEST_TMP/taken-run' ]"
unset VMON_RUNTIME_DIR
