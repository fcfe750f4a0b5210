# Helpers for the integration tests: each check prints "PASS: name", "FAIL: name: why" or "SKIP: name: why".
VMON=${VMON:-build/vmon-san}
GUESTS=build/guests
TEST_TMP=$(mktemp -d /tmp/vmon-test.XXXXXX)
# Only the main shell cleans up: background watchdog subshells must not delete TEST_TMP.
TEST_MAIN_PID=$BASHPID
trap '[ "$BASHPID" = "$TEST_MAIN_PID" ] && rm -rf "$TEST_TMP"' EXIT

pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1: $2"; }
skip() { echo "SKIP: $1: $2"; }

# run_vmon NAME TIMEOUT ARGS...: runs vmon with stdin closed; sets OUT (stdout), ERR (stderr), RC.
run_vmon() {
	local name=$1 timeout_s=$2
	shift 2
	OUT=$TEST_TMP/$name.out
	ERR=$TEST_TMP/$name.err
	timeout --signal=KILL "$timeout_s" "$VMON" "$@" </dev/null >"$OUT" 2>"$ERR"
	RC=$?
}

# expect NAME CONDITION-DESCRIPTION COMMAND...: PASS if COMMAND succeeds, else FAIL with context.
expect() {
	local name=$1 what=$2
	shift 2
	if "$@"; then
		pass "$name"
	else
		fail "$name" "$what (exit $RC); stdout: $(tail -c 400 "$OUT" | tr '\r\n' '  '); stderr: $(tail -c 600 "$ERR" | tr '\n' ' ')"
	fi
}

# wait_for FILE PATTERN SECONDS: true once FILE has a line matching PATTERN (carriage returns
# from the guest's console ignored).
wait_for() {
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		tr -d '\r' 2>/dev/null <"$1" | grep -qE "$2" && return 0
		sleep 0.1
	done
	return 1
}

have_kvm() { [ -r /dev/kvm ] && [ -w /dev/kvm ]; }

# wait_exit PID SECONDS: the exit status of the caller's child PID, or 124 (and killed) if it was
# still running after SECONDS.
wait_exit() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$1" 2>/dev/null || { wait "$1"; return $?; }
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 124
}

# free_port: a TCP port nothing listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start NAME ARGS...: runs vmon in the background (stdin closed); sets PID, OUT, ERR and adds
# PID to the caller's PIDS array (killed by its cleanup).
start() {
	local name=$1
	shift
	OUT=$TEST_TMP/$name.out
	ERR=$TEST_TMP/$name.err
	"$VMON" "$@" </dev/null >"$OUT" 2>"$ERR" &
	PID=$!
	PIDS+=("$PID")
}

# Counts printed across the files given, in order, must be 1, 2, 3, ... without a gap or repeat.
counts_consecutive() {
	cat "$@" | tr -d '\r' | grep -a '^count: ' | awk '
		{ if ($2 != NR) { print "count " $2 " where " NR " was expected"; bad = 1; exit } }
		END { exit bad || NR < 2 }'
}
last_count() { tr -d '\r' <"$1" | grep -a '^count: [0-9]*$' | tail -1 | cut -d' ' -f2; }
