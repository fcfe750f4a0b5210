#!/usr/bin/env bash
# The control plane end to end: the real vmon binary running test guests, driven through its API
# on a real Unix socket with curl, through vmon ctl and vmon ps, and configured from a JSON file.
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

if ! have_kvm; then
	skip api "no usable /dev/kvm on this machine"
	exit 0
fi
if ! command -v curl >/dev/null; then
	skip api "curl is not installed (scripts/install-deps.sh installs it)"
	exit 0
fi

export VMON_RUNTIME_DIR=$TEST_TMP/run
VM_PID=

# start_vm NAME ARGS...: starts vmon in the background; sets VM_PID, OUT, ERR, SOCK.
start_vm() {
	local name=$1
	shift
	OUT=$TEST_TMP/$name.out ERR=$TEST_TMP/$name.err SOCK=$TEST_TMP/$name.sock
	"$VMON" run --api-sock "$SOCK" --name "$name" "$@" </dev/null >"$OUT" 2>"$ERR" &
	VM_PID=$!
	for _ in $(seq 150); do
		[ -S "$SOCK" ] && grep -q "$READY" "$OUT" 2>/dev/null && return 0
		kill -0 $VM_PID 2>/dev/null || return 1
		sleep 0.2
	done
	return 1
}

# wait_vm TIMEOUT: waits for vmon to exit (killing it after TIMEOUT seconds); sets RC.
# (Polls rather than arming a background subshell: a killed subshell may run the EXIT trap.)
wait_vm() {
	local i
	for ((i = 0; i < $1 * 5; i++)); do
		kill -0 $VM_PID 2>/dev/null || break
		sleep 0.2
	done
	kill -KILL $VM_PID 2>/dev/null
	wait $VM_PID
	RC=$?
	VM_PID=
}

cleanup_vm() { [ -n "$VM_PID" ] && kill -KILL $VM_PID 2>/dev/null; VM_PID=; }
MAIN_PID=$BASHPID
trap '[ $BASHPID = $MAIN_PID ] && { cleanup_vm; rm -rf "$TEST_TMP"; }' EXIT

# api METHOD PATH [BODY]: one request; sets CODE, BODY (and HDRS).
api() {
	local args=(-s --max-time 30 --unix-socket "$SOCK" -X "$1" -o "$TEST_TMP/body" -D "$TEST_TMP/hdrs" -w '%{http_code}')
	[ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
	CODE=$(curl "${args[@]}" "http://vmon$2")
	BODY=$(cat "$TEST_TMP/body" 2>/dev/null)
	HDRS=$(cat "$TEST_TMP/hdrs" 2>/dev/null)
}

json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1" <<<"$BODY" 2>/dev/null; }
metric() { curl -s --max-time 10 --unix-socket "$SOCK" http://vmon/metrics | grep -F "$1 " | awk '{print $2}'; }
io_exits() { metric 'vmon_vcpu_exits_total{vcpu="0",reason="io"}'; }
out_size() { stat -c %s "$OUT"; }

# check NAME WHAT COMMAND...: like expect, but describes the last API reply on failure.
check() {
	local name=$1 what=$2
	shift 2
	if "$@"; then
		pass "$name"
	else
		fail "$name" "$what; last reply: HTTP $CODE $(tr '\n' ' ' <<<"$BODY" | head -c 300); stderr: $(tail -c 300 "$ERR" | tr '\n' ' ')"
	fi
}

READY='count: '
if ! start_vm counter --kernel $GUESTS/counter.elf --memory 32M; then
	fail api/start "vmon with --api-sock did not come up: $(tail -c 500 "$ERR" | tr '\n' ' ')"
	exit 0
fi
pass api/start

# --- GET /vm
api GET /vm
check api/get-vm "GET /vm gives state, vCPUs, memory and the configuration" \
	test "$CODE" = 200 -a "$(json 'd["state"]')" = running -a "$(json 'd["vcpus"]')" = 1 \
	-a "$(json 'd["memory_bytes"]')" = 33554432 -a "$(json 'd["config"]["name"]')" = counter \
	-a "$(json 'd["config"]["kernel"]')" = "$GUESTS/counter.elf"

# --- metrics move while the guest works
m1=$(io_exits); t1=$(metric 'vmon_device_bytes_total{device="serial0",direction="tx"}')
sleep 1
m2=$(io_exits); t2=$(metric 'vmon_device_bytes_total{device="serial0",direction="tx"}')
check api/metrics-move "port-I/O exits and serial bytes grow while the guest counts ($m1 -> $m2, $t1 -> $t2)" \
	test -n "$m1" -a -n "$m2" -a "${m2:-0}" -gt "${m1:-0}" -a "${t2:-0}" -gt "${t1:-0}"
curl -s --unix-socket "$SOCK" http://vmon/metrics >"$TEST_TMP/metrics.txt"
check api/metrics-format "the histogram, run time, memory and device counters are there, +Inf bucket = count" \
	python3 - "$TEST_TMP/metrics.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
need = ['vmon_exit_handling_seconds_bucket{vcpu="0",le="+Inf"}', 'vmon_exit_handling_seconds_count{vcpu="0"}',
        'vmon_vcpu_run_seconds_total{vcpu="0"}', 'vmon_guest_memory_bytes 33554432',
        'vmon_process_resident_memory_bytes', 'vmon_device_requests_total{device="serial0"}',
        'vmon_device_errors_total{device="i8042"}', '# TYPE vmon_exit_handling_seconds histogram']
for n in need:
    assert n in text, n
vals = {}
for line in text.splitlines():
    if line.startswith('#'):
        continue
    name, value = line.rsplit(' ', 1)
    float(value)
    assert re.match(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})?$', name), line
    vals[name] = float(value)
assert vals['vmon_exit_handling_seconds_bucket{vcpu="0",le="+Inf"}'] == vals['vmon_exit_handling_seconds_count{vcpu="0"}']
assert vals['vmon_process_resident_memory_bytes'] > 0
PY

# --- pause really stops the guest, resume continues it
api PUT /vm/state '{"state": "paused"}'
paused_code=$CODE paused_state=$(json 'd["state"]')
s1=$(out_size); e1=$(io_exits)
sleep 2
s2=$(out_size); e2=$(io_exits)
api GET /vm
check api/pause "PUT /vm/state paused: 200, the guest prints nothing and makes no exits for 2 s ($s1 -> $s2 bytes, $e1 -> $e2 exits)" \
	test "$paused_code" = 200 -a "$paused_state" = paused -a "$(json 'd["state"]')" = paused -a "$s1" = "$s2" -a "$e1" = "$e2"
api PUT /vm/state '{"state": "paused"}'
check api/pause-again "pausing a paused VM is not an error" test "$CODE" = 200 -a "$(json 'd["state"]')" = paused
last=$(tr -d '\r' <"$OUT" | grep '^count: ' | tail -1 | cut -d' ' -f2)
api PUT /vm/state '{"state": "running"}'
sleep 1.5
next=$(tr -d '\r' <"$OUT" | grep '^count: ' | tail -1 | cut -d' ' -f2)
check api/resume "PUT /vm/state running: the guest counts on from where it stopped ($last -> $next)" \
	test "$CODE" = 200 -a "${next:-0}" -gt "${last:-0}"
check api/resume-continuous "no count was lost or repeated across the pause" \
	sh -c "tr -d '\r' <'$OUT' | grep '^count: ' | awk '{ if (NR > 1 && \$2 != prev + 2000) exit 1; prev = \$2 }'"

# --- bad input: the right status and a JSON error naming the problem; the VM is unaffected
error_matches() { # error_matches STATUS PATTERN: the last reply had STATUS and {"error": matching PATTERN}
	[ "$CODE" = "$1" ] && python3 -c '
import json, re, sys
sys.exit(0 if re.search(sys.argv[1], json.load(sys.stdin)["error"]) else 1)' "$2" <"$TEST_TMP/body"
}
bad_api() { # bad_api NAME STATUS PATTERN METHOD PATH [BODY]
	local name=$1 status=$2 pattern=$3
	shift 3
	api "$@"
	check "api/bad-input/$name" "expected HTTP $status and an error matching '$pattern'" error_matches "$status" "$pattern"
}
bad_api malformed-json 400 'malformed JSON.*line 1' PUT /vm/state '{"state": "paused"'
bad_api not-an-object 400 'must be a JSON object' PUT /vm/state '["paused"]'
bad_api empty-body 400 'needs a JSON body' PUT /vm/state ''
bad_api unknown-key 400 'unknown key "frobnicate"' PUT /vm/state '{"state": "paused", "frobnicate": 1}'
bad_api missing-key 400 'needs the key "state"' PUT /vm/state '{}'
bad_api wrong-type 400 '"state" must be a string' PUT /vm/state '{"state": 1}'
bad_api impossible-state 400 '"paused" or "running", not "flying"' PUT /vm/state '{"state": "flying"}'
bad_api duplicate-key 400 'malformed JSON' PUT /vm/state '{"state": "paused", "state": "running"}'
bad_api timeout-type 400 '"timeout_s" must be a whole number' PUT /vm/shutdown '{"timeout_s": "soon"}'
bad_api timeout-range 400 '"timeout_s" -5 is out of range' PUT /vm/shutdown '{"timeout_s": -5}'
bad_api stop-with-keys 400 'unknown key "force"' PUT /vm/stop '{"force": true}'
bad_api unknown-route 404 'no such route: GET /vm/nope' GET /vm/nope
bad_api wrong-method 405 'not allowed on /vm/state: use PUT' GET /vm/state
check api/bad-input/allow-header "a 405 carries an Allow header" grep -qi '^Allow: PUT' "$TEST_TMP/hdrs"
python3 -c 'print("{\"state\": \"" + "x" * 70000 + "\"}")' >"$TEST_TMP/big.json"
bad_api too-large 413 'larger than' PUT /vm/state "@$TEST_TMP/big.json"
s1=$(out_size); sleep 1; s2=$(out_size)
api GET /vm
check api/bad-input/vm-unaffected "after all that the VM still runs and counts" \
	test "$CODE" = 200 -a "$(json 'd["state"]')" = running -a "$s2" -gt "$s1"

# --- vmon ctl
ctl() { CTL_OUT=$("$VMON" ctl "$@" 2>"$TEST_TMP/ctl.err"); CTL_RC=$?; CTL_ERR=$(cat "$TEST_TMP/ctl.err"); }
ctl_ok() { [ "$CTL_RC" = "$1" ] && grep -qE "$2" <<<"$3"; } # ctl_ok STATUS PATTERN TEXT
ctl --sock "$SOCK" info
check api/ctl-info "vmon ctl info prints the VM as JSON" ctl_ok 0 '"state": "running"' "$CTL_OUT"
ctl --vm counter pause
api GET /vm
check api/ctl-pause-by-name "vmon ctl --vm NAME pause pauses it" test "$CTL_RC" = 0 -a "$(json 'd["state"]')" = paused
ctl --vm $VM_PID resume
api GET /vm
check api/ctl-resume-by-pid "vmon ctl --vm PID resume resumes it" test "$CTL_RC" = 0 -a "$(json 'd["state"]')" = running
ctl --sock "$SOCK" metrics
check api/ctl-metrics "vmon ctl metrics prints Prometheus text" ctl_ok 0 '^vmon_vcpu_exits_total' "$CTL_OUT"
ctl --sock "$TEST_TMP/nothing.sock" info
check api/ctl-no-socket "a missing socket: exit 1 and a message saying so" ctl_ok 1 'no API socket at' "$CTL_ERR"
ctl --sock "$SOCK" dance
check api/ctl-bad-command "an unknown command: exit 2 naming it" ctl_ok 2 "unknown command 'dance'" "$CTL_ERR"
ctl --vm no-such-vm info
check api/ctl-unknown-vm "an unknown VM name: exit 1 pointing at vmon ps" ctl_ok 1 'vmon ps' "$CTL_ERR"

# vmon ctl against things that are not a vmon API: a plain file, and fake servers that misbehave.
head -c 4096 /dev/zero >"$TEST_TMP/disk.img"
ctl --sock "$TEST_TMP/disk.img" info
check api/ctl-not-a-socket "--sock naming a disk image: 'is not a socket', no advice to remove it" \
	eval 'ctl_ok 1 "disk.img is not a socket" "$CTL_ERR" && ! grep -q stale <<<"$CTL_ERR" && [ -s "$TEST_TMP/disk.img" ]'
# fake_api MODE: a server on $TEST_TMP/fake.sock answering one request as MODE; sets FAKE_PID.
fake_api() {
	rm -f "$TEST_TMP/fake.sock"
	python3 - "$TEST_TMP/fake.sock" "$1" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(1)
c, _ = s.accept(); c.recv(65536)
mode = sys.argv[2]
try:
    if mode == "huge":
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n{"); time.sleep(20)
    elif mode == "endless":
        c.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        while True: c.sendall(b"x" * 65536)
    elif mode == "escapes":
        body = b'{"error": "\\u001b[2J\\u001b]0;pwned\\u0007gone"}'
        c.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
except OSError:
    pass
PY
	FAKE_PID=$!
	for _ in $(seq 50); do [ -S "$TEST_TMP/fake.sock" ] && return; sleep 0.1; done
}
fake_api huge
t0=$SECONDS; ctl --sock "$TEST_TMP/fake.sock" info; t=$((SECONDS - t0))
kill $FAKE_PID 2>/dev/null; wait $FAKE_PID 2>/dev/null
check api/ctl-huge-reply "a reply announcing 100000000 bytes: 'larger than', at once (${t}s)" \
	eval 'ctl_ok 1 "larger than [0-9]+ bytes" "$CTL_ERR" && [ $t -lt 10 ]'
fake_api endless
ctl --sock "$TEST_TMP/fake.sock" info
kill $FAKE_PID 2>/dev/null; wait $FAKE_PID 2>/dev/null
check api/ctl-endless-reply "an endless reply body: 'larger than'" ctl_ok 1 "larger than [0-9]+ bytes" "$CTL_ERR"
fake_api escapes
ctl --sock "$TEST_TMP/fake.sock" info
wait $FAKE_PID 2>/dev/null
escapes_shown() { [ "$CTL_RC" = 1 ] && grep -qF 'HTTP 500): \x1b[2J\x1b]0;pwned\x07gone' "$TEST_TMP/ctl.err" &&
	! grep -q $'\x1b' "$TEST_TMP/ctl.err"; }
check api/ctl-escapes "terminal escape sequences in an error reply are shown escaped, not sent to the terminal" \
	escapes_shown
touch "$TEST_TMP/runtime-file"
PS_ERR=$(VMON_RUNTIME_DIR=$TEST_TMP/runtime-file "$VMON" ps 2>&1 >/dev/null); CTL_RC=$?
check api/ps-runtime-dir-file "VMON_RUNTIME_DIR naming a regular file: 'is not a directory'" \
	ctl_ok 1 "runtime-file is not a directory" "$PS_ERR"

# --- vmon ps, with a stale entry left by a process that is gone
sh -c 'exit 0' & dead=$!; wait $dead
cat >"$VMON_RUNTIME_DIR/$dead.json" <<EOF
{"pid": $dead, "proc_start": 1, "started_at": 1, "config": {"name": "ghost", "cpus": 1, "memory": 33554432, "api_sock": null, "kernel": "x"}}
EOF
PS_OUT=$("$VMON" ps 2>"$TEST_TMP/ps.err"); PS_RC=$?
CTL_RC=$PS_RC
check api/ps "vmon ps lists the VM with its name and state" ctl_ok 0 "^$VM_PID +counter +running +1 +32M" "$PS_OUT"
ps_stale_ok() { grep -q "stale entry of pid $dead" "$TEST_TMP/ps.err" && [ ! -e "$VMON_RUNTIME_DIR/$dead.json" ] && ! grep -q ghost <<<"$PS_OUT"; }
check api/ps-stale "vmon ps removes a stale entry and says so" ps_stale_ok

# --- concurrent clients, a stalled client, a client that disconnects mid-request
for i in 1 2 3 4 5 6; do
	(
		for j in 1 2 3 4 5; do
			curl -s --max-time 30 --unix-socket "$SOCK" -X PUT -d '{"state":"paused"}' http://vmon/vm/state >/dev/null
			curl -s --max-time 30 --unix-socket "$SOCK" http://vmon/metrics >/dev/null
			curl -s --max-time 30 --unix-socket "$SOCK" -X PUT -d '{"state":"running"}' http://vmon/vm/state >/dev/null
		done
	) &
done
wait_concurrent() { local p; for p in $(jobs -p); do [ "$p" = "$VM_PID" ] || wait "$p"; done; }
wait_concurrent
api PUT /vm/state '{"state": "running"}'
s1=$(out_size); sleep 1; s2=$(out_size)
check api/concurrent-clients "after 6 clients pausing and resuming at once the VM is consistent and counts on" \
	test "$CODE" = 200 -a "$(json 'd["state"]')" = running -a "$s2" -gt "$s1"

python3 - "$SOCK" <<'PY' &
import socket, sys, time
stalled = socket.socket(socket.AF_UNIX); stalled.connect(sys.argv[1])
stalled.sendall(b"PUT /vm/state HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"sta")  # and nothing more
gone = socket.socket(socket.AF_UNIX); gone.connect(sys.argv[1])
gone.sendall(b"GET /metr"); gone.close()
time.sleep(4)
PY
slow=$!
sleep 0.5
s1=$(out_size)
t0=$(date +%s%N)
api GET /vm
t1=$(date +%s%N)
sleep 1; s2=$(out_size)
check api/slow-client "a stalled and a vanished client block neither other clients nor the guest ($(( (t1 - t0) / 1000000 )) ms)" \
	test "$CODE" = 200 -a $(( (t1 - t0) / 1000000 )) -lt 2000 -a "$s2" -gt "$s1"
wait $slow

# --- clean shutdown through the keyboard: the guest sees Ctrl-Alt-Del and powers off
api PUT /vm/shutdown '{"timeout_s": 60}'
code=$CODE
wait_vm 60
check api/shutdown-clean "PUT /vm/shutdown: 202, the guest gets Ctrl-Alt-Del and powers off, vmon exits 0" \
	sh -c "[ '$code' = 202 ] && [ $RC = 0 ] && grep -q 'got Ctrl-Alt-Del' '$OUT' && grep -q 'guest powered off' '$ERR'"
check api/cleanup "the socket and the registry entry are gone, no sanitizer report" \
	sh -c "[ ! -e '$SOCK' ] && [ -z \"\$(ls -A '$VMON_RUNTIME_DIR')\" ] && ! grep -qE 'Sanitizer|runtime error' '$ERR'"

# --- a guest that ignores Ctrl-Alt-Del is stopped when the timeout expires
READY='idle guest sleeping'
if start_vm idle --kernel $GUESTS/idle.elf --memory 32M; then
	api PUT /vm/shutdown '{"timeout_s": 1}'
	code=$CODE
	wait_vm 30
	check api/shutdown-timeout "the timeout stops a guest that does not shut down, exit 0" \
		sh -c "[ '$code' = 202 ] && [ $RC = 0 ] && grep -q 'did not shut down within 1 s' '$ERR' && ! grep -qE 'Sanitizer|runtime error' '$ERR'"
else
	fail api/shutdown-timeout "the idle VM did not start: $(tail -c 300 "$ERR")"
	cleanup_vm
fi

# --- stop while paused
READY='count: '
if start_vm counter2 --kernel $GUESTS/counter.elf --memory 32M; then
	api PUT /vm/state '{"state": "paused"}'
	api PUT /vm/stop
	code=$CODE state=$(json 'd["state"]')
	wait_vm 30
	check api/stop-while-paused "PUT /vm/stop on a paused VM: 200 stopped, vmon exits 0 cleanly" \
		sh -c "[ '$code' = 200 ] && [ '$state' = stopped ] && [ $RC = 0 ] && grep -q 'stopped through the API' '$ERR' && ! grep -qE 'Sanitizer|runtime error' '$ERR'"
else
	fail api/stop-while-paused "the VM did not start: $(tail -c 300 "$ERR")"
	cleanup_vm
fi

# --- 40 slow clients (a header every ~4 s, from 4 processes) lock nobody out; each is cut by its deadline
# slow_clients TAG: 4 background processes of 10 connections each; each writes "CUT LATEST_S" to slow.TAG.N.
slow_clients() {
	local p
	rm -f "$TEST_TMP/slow.$1".*
	for p in 1 2 3 4; do
		python3 - "$SOCK" "$TEST_TMP/slow.$1.$p" <<'PY' &
import select, socket, sys, time
conns = []
for _ in range(10):
    c = socket.socket(socket.AF_UNIX); c.connect(sys.argv[1])
    c.sendall(b"PUT /vm/state HTTP/1.1\r\nHost: x\r\n"); conns.append(c)
t0 = time.monotonic(); cut = {}; next_header = t0 + 4
while len(cut) < len(conns) and time.monotonic() - t0 < 16:
    alive = [c for c in conns if c not in cut]
    readable, _, _ = select.select(alive, [], [], max(0, next_header - time.monotonic()))
    for c in readable:
        try:
            if c.recv(4096) == b"":
                cut[c] = time.monotonic() - t0
        except OSError:
            cut[c] = time.monotonic() - t0
    if time.monotonic() >= next_header:
        next_header += 4
        for c in alive:
            try:
                if c not in cut:
                    c.sendall(b"X-Slow: 1\r\n")
            except OSError:
                cut[c] = time.monotonic() - t0
open(sys.argv[2], "w").write("%d %.1f\n" % (len(cut), max(cut.values(), default=99)))
PY
	done
	sleep 1
}
READY='count: '
if start_vm slowpeers --kernel $GUESTS/counter.elf --memory 32M; then
	slow_clients a
	t0=$(date +%s%N)
	ctl --sock "$SOCK" info
	t1=$(date +%s%N)
	check api/slow-peers-info "with 40 slow clients connected, vmon ctl info answers at once ($(( (t1 - t0) / 1000000 )) ms)" \
		sh -c "[ $CTL_RC = 0 ] && grep -q '\"running\"' <<<'$CTL_OUT' && [ $(( (t1 - t0) / 1000000 )) -lt 3000 ]"
	wait_concurrent
	check api/slow-peers-cut "every slow client is cut off by its 5 s deadline while the VM runs ($(cat "$TEST_TMP"/slow.a.* | tr '\n' ' '))" \
		sh -c "cat '$TEST_TMP'/slow.a.* | awk '{ n += \$1; if (\$2 > 7) bad = 1 } END { exit !(n == 40 && !bad) }' && kill -0 $VM_PID"
	slow_clients b
	t0=$(date +%s%N)
	ctl --sock "$SOCK" stop
	wait_vm 10
	t1=$(date +%s%N)
	check api/slow-peers-stop "with 40 slow clients connected, vmon ctl stop stops the VM at once ($(( (t1 - t0) / 1000000 )) ms, exit $RC)" \
		sh -c "[ $CTL_RC = 0 ] && [ $RC = 0 ] && [ $(( (t1 - t0) / 1000000 )) -lt 4000 ] && ! grep -qE 'Sanitizer|runtime error' '$ERR'"
	wait_concurrent
else
	fail api/slow-peers-info "the VM did not start: $(tail -c 300 "$ERR")"
	cleanup_vm
fi

# --- the config file, overridden by the command line; JSON-lines logging
cat >"$TEST_TMP/vm.json" <<EOF
{
  "kernel": "$GUESTS/counter.elf",
  "memory": "32M",
  "cpus": 1,
  "name": "fromfile",
  "log_file": "$TEST_TMP/log.jsonl"
}
EOF
OUT=$TEST_TMP/cfg.out ERR=$TEST_TMP/cfg.err SOCK=$TEST_TMP/cfg.sock
"$VMON" run --config "$TEST_TMP/vm.json" --cpus 2 --api-sock "$SOCK" </dev/null >"$OUT" 2>"$ERR" &
VM_PID=$!
for _ in $(seq 150); do [ -S "$SOCK" ] && break; sleep 0.2; done
api GET /vm
check api/config-file "--config sets the VM up and --cpus overrides the file" \
	test "$CODE" = 200 -a "$(json 'd["vcpus"]')" = 2 -a "$(json 'd["config"]["name"]')" = fromfile \
	-a "$(json 'd["memory_bytes"]')" = 33554432
api PUT /vm/stop
wait_vm 30
check api/log-file "--log-file writes JSON lines with a level and a component" \
	python3 -c '
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert lines and all({"time", "level", "component", "msg", "pid"} <= set(l) for l in lines)
assert any(l["component"] == "api" for l in lines)
' "$TEST_TMP/log.jsonl"

cfg_bad() { # cfg_bad NAME PATTERN JSON
	printf '%s' "$3" >"$TEST_TMP/bad.json"
	run_vmon "cfg-$1" 30 run --config "$TEST_TMP/bad.json"
	expect "api/config-error/$1" "exit 2 and a message matching '$2'" \
		sh -c "[ $RC -eq 2 ] && grep -qE '$2' '$ERR' && ! grep -q Sanitizer '$ERR'"
}
cfg_bad malformed 'not valid JSON: line 1 column' '{"kernel": '
cfg_bad unknown-key 'unknown key "kernal": the keys are kernel' '{"kernal": "x"}'
cfg_bad wrong-type 'key "cpus": expected a whole number.*got a string' '{"kernel": "x", "cpus": "two"}'
cfg_bad impossible 'key "cpus": 0 is out of range' '{"kernel": "x", "cpus": 0}'
cfg_bad bad-memory 'key "memory": "lots" is not a size' '{"kernel": "x", "memory": "lots"}'
cfg_bad not-object 'expected a JSON object' '[1, 2]'
run_vmon cfg-missing 30 run --config "$TEST_TMP/none.json"
expect api/config-error/missing-file "exit 2 and the file named" sh -c "[ $RC -eq 2 ] && grep -q 'cannot read config file' '$ERR'"

# --- a socket already served by another VM is refused before anything runs
READY='count: '
if start_vm holder --kernel $GUESTS/counter.elf --memory 32M; then
	run_vmon sock-in-use 30 run --kernel $GUESTS/counter.elf --memory 32M --api-sock "$SOCK"
	expect api/socket-in-use "a second VM on the same socket: exit 2, 'in use'" \
		sh -c "[ $RC -eq 2 ] && grep -q 'in use by another process' '$ERR'"
	api PUT /vm/stop
	wait_vm 30
else
	fail api/socket-in-use "the first VM did not start"
	cleanup_vm
fi
