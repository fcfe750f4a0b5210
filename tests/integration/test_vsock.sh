#!/usr/bin/env bash
# virtio-vsock and the second console (virtio-console) seen from a real Linux guest, in one
# boot of the default guest with --vsock cid=3,uds=SOCK and --console2 socket=CSOCK. The guest
# runs tests/integration/vsock_echo.c (built here with gcc -static into an appended initramfs):
#   host -> guest  this script connects to SOCK, writes "CONNECT 5000", gets "OK <port>", and
#                  the guest's echo server sends its lines back;
#   guest -> host  this script listens on SOCK_6000; the guest connects to CID 2 port 6000,
#                  sends a line and prints the reply it got;
#   console        the guest writes a line to /dev/hvc0, this script reads it from CSOCK and
#                  writes a line back, which the guest reads from /dev/hvc0.
# Then --console2 file=PATH and bad option values, which need no boot.
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

# Option errors come before anything is booted: one clear sentence each.
run_vmon vsock-badcid 30 run --kernel /nonexistent --vsock cid=2,uds=/tmp/x.sock
expect vsock/bad-cid "--vsock cid=2 is refused with a sentence naming the option" \
	sh -c "[ $RC -ne 0 ] && grep -q 'cid=2 is not a guest CID' $ERR"
run_vmon vsock-baduds 30 run --kernel /nonexistent --vsock cid=3
expect vsock/missing-uds "--vsock without uds= is refused" sh -c "[ $RC -ne 0 ] && grep -q 'needs both parts' $ERR"
run_vmon vsock-badconsole 30 run --kernel /nonexistent --console2 tcp=1234
expect vsock/bad-console2 "--console2 tcp=... is refused" sh -c "[ $RC -ne 0 ] && grep -q 'console2' $ERR"

if ! have_kvm; then
	skip vsock "no usable /dev/kvm on this machine"
	exit 0
fi
if ! command -v python3 >/dev/null; then
	skip vsock "python3 is needed for the host side of the test (scripts/install-deps.sh)"
	exit 0
fi
if ! scripts/build-guest.sh >"$TEST_TMP/build-guest.log" 2>&1; then
	fail vsock/build-guest "scripts/build-guest.sh failed: $(tail -5 "$TEST_TMP/build-guest.log" | tr '\n' ' ')"
	exit 0
fi
eval "$(scripts/guest-paths.sh)"
BOOT_TIMEOUT=${VMON_LINUX_BOOT_TIMEOUT:-1800}
CMDLINE="$(cat guest/cmdline 2>/dev/null || echo console=ttyS0)"

mkdir -p "$TEST_TMP/probe"
if ! gcc -static -O2 -o "$TEST_TMP/probe/vsock_echo" tests/integration/vsock_echo.c 2>"$TEST_TMP/gcc.log"; then
	fail vsock/build-echo "gcc -static could not build the guest program: $(head -3 "$TEST_TMP/gcc.log" | tr '\n' ' ')"
	exit 0
fi
cat >"$TEST_TMP/probe/init" <<'INIT'
#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t devtmpfs devtmpfs /dev
$B mount -t sysfs sysfs /sys
/vsock_echo server 5000 &
server=$!
/vsock_echo client 2 6000 hello-from-guest
/vsock_echo console /dev/hvc0 hvc-hello-from-guest
wait $server
echo "VSOCK-TEST done"
$B poweroff -f
INIT
chmod +x "$TEST_TMP/probe/init"
(cd "$TEST_TMP/probe" && printf 'init\nvsock_echo\n' | cpio -o -H newc >../probe.cpio 2>/dev/null)
cat "$GUEST_INITRD" "$TEST_TMP/probe.cpio" >"$TEST_TMP/initrd.cpio"

# The host side, in Python: sockets, with a deadline on every wait.
cat >"$TEST_TMP/host.py" <<'PY'
import os, socket, subprocess, sys, threading, time

vmon, kernel, initrd, cmdline, tmp, timeout = sys.argv[1:7]
timeout = float(timeout)
uds, csock = tmp + "/v.sock", tmp + "/c.sock"
out_path, err_path = tmp + "/vsock-boot.out", tmp + "/vsock-boot.err"
results = {}
deadline = time.time() + timeout

def report(k, v):
    results[k] = v
    print("RESULT %s=%s" % (k, v), flush=True)

def read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        s.settimeout(max(1.0, deadline - time.time()))
        c = s.recv(1)
        if not c:
            break
        buf += c
    return buf.decode(errors="replace").strip()

# Listen on SOCK_6000 before the guest can dial it.
lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
lsock.bind(uds + "_6000")
lsock.listen(1)

def guest_to_host():
    try:
        lsock.settimeout(timeout)
        c, _ = lsock.accept()
        report("g2h_line", read_line(c))
        c.sendall(b"reply-from-host\n")
        time.sleep(0.5)
        c.close()
    except Exception as e:
        report("g2h_error", repr(e))

proc = subprocess.Popen([vmon, "run", "--kernel", kernel, "--initrd", initrd, "--memory", "128M",
                         "--cmdline", cmdline, "--vsock", "cid=3,uds=" + uds, "--console2", "socket=" + csock],
                        stdin=subprocess.DEVNULL, stdout=open(out_path, "wb"), stderr=open(err_path, "wb"))

def console():
    try:
        for _ in range(200):
            if os.path.exists(csock):
                break
            time.sleep(0.05)
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(csock)
        report("hvc_line", read_line(c))
        c.sendall(b"host-to-hvc\n")
        time.sleep(2)
        c.close()
    except Exception as e:
        report("hvc_error", repr(e))

def host_to_guest():
    try:
        # Wait for the guest's echo server, announced on the serial console.
        while time.time() < deadline and proc.poll() is None:
            if b"VSOCK-SERVER-READY" in open(out_path, "rb").read():
                break
            time.sleep(0.2)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(uds)
        s.sendall(b"CONNECT 5000\n")
        report("h2g_ok", read_line(s).replace(" ", "_"))
        s.sendall(b"ping-from-host\n")
        report("h2g_echo", read_line(s))
        big = b"x" * 200000
        sender = threading.Thread(target=s.sendall, args=(big,), daemon=True)
        sender.start()
        got = 0
        while got < len(big):
            s.settimeout(max(1.0, deadline - time.time()))
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk.count(b"x")
        report("h2g_big", got)
        s.close()
    except Exception as e:
        report("h2g_error", repr(e))

threads = [threading.Thread(target=f, daemon=True) for f in (guest_to_host, console, host_to_guest)]
for t in threads:
    t.start()
try:
    rc = proc.wait(timeout=timeout)
except subprocess.TimeoutExpired:
    proc.kill()
    rc = "timeout"
for t in threads:
    t.join(timeout=5)
report("rc", rc)
PY

start=$(date +%s)
python3 "$TEST_TMP/host.py" "$VMON" "$GUEST_KERNEL" "$TEST_TMP/initrd.cpio" "$CMDLINE" "$TEST_TMP" "$BOOT_TIMEOUT" \
	>"$TEST_TMP/host.log" 2>&1
OUT=$TEST_TMP/vsock-boot.out
ERR=$TEST_TMP/vsock-boot.err
RC=$(sed -n 's/^RESULT rc=//p' "$TEST_TMP/host.log")
echo "    vsock guest: boot to poweroff took $(($(date +%s) - start))s (exit $RC)"
mkdir -p build/test-logs
cp "$OUT" build/test-logs/vsock-boot.console 2>/dev/null
cp "$ERR" build/test-logs/vsock-boot.stderr 2>/dev/null
cp "$TEST_TMP/host.log" build/test-logs/vsock-host.log 2>/dev/null
result() { sed -n "s/^RESULT $1=//p" "$TEST_TMP/host.log" | head -1; }
guest() { tr -d '\r' <"$OUT" | sed -n "s/^$1//p" | head -1; }

expect vsock/host-to-guest-connect "CONNECT 5000 on the vsock socket answered with OK <port> ($(result h2g_ok)$(result h2g_error))" \
	sh -c "case '$(result h2g_ok)' in OK_[0-9]*) true ;; *) false ;; esac"
expect vsock/host-to-guest-echo "the guest's echo server sent the host's line back ($(result h2g_echo))" \
	sh -c "[ '$(result h2g_echo)' = ping-from-host ]"
expect vsock/host-to-guest-bulk "200 kB went to the guest and back, across credit updates ($(result h2g_big) bytes)" \
	sh -c "[ '$(result h2g_big)' = 200000 ]"
expect vsock/guest-to-host-line "the guest's line reached the host listener on SOCK_6000 ($(result g2h_line)$(result g2h_error))" \
	sh -c "[ '$(result g2h_line)' = hello-from-guest ]"
expect vsock/guest-to-host-reply "the host's reply reached the guest ($(guest 'VSOCK-CLIENT-GOT: '))" \
	sh -c "[ '$(guest 'VSOCK-CLIENT-GOT: ')' = reply-from-host ]"
expect vsock/console-out "the guest's /dev/hvc0 line arrived on the console socket ($(result hvc_line)$(result hvc_error))" \
	sh -c "[ '$(result hvc_line)' = hvc-hello-from-guest ]"
expect vsock/console-in "the line written into the console socket was read from /dev/hvc0 ($(guest 'HVC-GOT: '))" \
	sh -c "[ '$(guest 'HVC-GOT: ')' = host-to-hvc ]"
expect vsock/poweroff "the guest ran its /init to the end and powered off (exit 0)" \
	sh -c "[ '$RC' = 0 ] && grep -q 'VSOCK-TEST done' $OUT"
expect vsock/no-sanitizer-report "no AddressSanitizer/UBSan report" sh -c "! grep -qE 'Sanitizer|runtime error' $ERR"
expect vsock/sockets-removed "vmon removed its listening sockets on exit" \
	sh -c "[ ! -e $TEST_TMP/v.sock ] && [ ! -e $TEST_TMP/c.sock ]"

# --console2 file=PATH: the guest's output lands in the file (the guest reads nothing back, so
# the probe's console step ends with EOF). A short boot: only the console line is checked.
cat >"$TEST_TMP/probe/init" <<'INIT'
#!/bin/busybox sh
B=/bin/busybox
$B mount -t devtmpfs devtmpfs /dev
echo "hvc-to-file" >/dev/hvc0
$B poweroff -f
INIT
(cd "$TEST_TMP/probe" && printf 'init\n' | cpio -o -H newc >../probe.cpio 2>/dev/null)
cat "$GUEST_INITRD" "$TEST_TMP/probe.cpio" >"$TEST_TMP/initrd.cpio"
if [ "${VMON_VSOCK_FILE_BOOT:-1}" = 1 ]; then
	run_vmon vsock-console-file "$BOOT_TIMEOUT" run --kernel "$GUEST_KERNEL" --initrd "$TEST_TMP/initrd.cpio" \
		--memory 128M --cmdline "$CMDLINE" --console2 "file=$TEST_TMP/hvc.log"
	expect vsock/console-file "the guest's /dev/hvc0 output was appended to the --console2 file" \
		sh -c "[ $RC -eq 0 ] && tr -d '\r' <$TEST_TMP/hvc.log | grep -qx hvc-to-file"
else
	skip vsock/console-file "VMON_VSOCK_FILE_BOOT=0"
fi

# Snapshot and restore with vsock: a guest connection open when the snapshot is taken is reset in
# the restored guest (VIRTIO_VSOCK_EVENT_TRANSPORT_RESET), and its listening socket serves a new
# host connection through the restored VM's socket.
if [ "${VMON_VSOCK_SNAPSHOT:-1}" != 1 ]; then
	skip vsock/snapshot "VMON_VSOCK_SNAPSHOT=0"
	exit 0
fi
cat >"$TEST_TMP/probe/init" <<'INIT'
#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t devtmpfs devtmpfs /dev
/vsock_echo server 5000 2 &
server=$!
/vsock_echo hold 2 6001 &
held=$!
wait $server
wait $held
echo "VSOCK-SNAP done"
$B poweroff -f
INIT
(cd "$TEST_TMP/probe" && printf 'init\nvsock_echo\n' | cpio -o -H newc >../probe.cpio 2>/dev/null)
cat "$GUEST_INITRD" "$TEST_TMP/probe.cpio" >"$TEST_TMP/initrd.cpio"
cat >"$TEST_TMP/snap.py" <<'PY'
import os, socket, subprocess, sys, time

vmon, kernel, initrd, cmdline, tmp, timeout = sys.argv[1:7]
timeout = float(timeout)
uds, api, api2, snap = tmp + "/s.vsock", tmp + "/s-api.sock", tmp + "/s-api2.sock", tmp + "/snap"
out1, out2 = tmp + "/snap-src.out", tmp + "/snap-restored.out"
deadline = time.time() + timeout

def report(k, v):
    print("RESULT %s=%s" % (k, v), flush=True)

def read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        s.settimeout(max(1.0, deadline - time.time()))
        c = s.recv(1)
        if not c:
            break
        buf += c
    return buf.decode(errors="replace").strip()

def wait_for(path, marker, proc):
    # The console is written a few bytes at a time: wait for the whole line holding the marker.
    while time.time() < deadline and proc.poll() is None:
        data = open(path, "rb").read()
        at = data.find(marker)
        if at >= 0 and b"\n" in data[at:]:
            return True
        time.sleep(0.2)
    return False

def echo_once(msg):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(uds)
    s.sendall(b"CONNECT 5000\n")
    ok = read_line(s)
    s.sendall(msg + b"\n")
    back = read_line(s)
    s.close()
    return ok.split(" ")[0], back

try:
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(uds + "_6001")
    lsock.listen(1)
    src = subprocess.Popen([vmon, "run", "--kernel", kernel, "--initrd", initrd, "--memory", "128M", "--cmdline",
                            cmdline, "--vsock", "cid=3,uds=" + uds, "--api-sock", api],
                           stdin=subprocess.DEVNULL, stdout=open(out1, "wb"), stderr=open(tmp + "/snap-src.err", "wb"))
    lsock.settimeout(timeout)
    held, _ = lsock.accept()
    report("hold_line", read_line(held))
    wait_for(out1, b"VSOCK-SERVER-READY", src)
    ok, back = echo_once(b"before-snapshot")
    report("before", ok + "_" + back)
    time.sleep(1)  # the guest's server finishes its first connection
    r = subprocess.run([vmon, "ctl", "--sock", api, "snapshot", snap, "--keep-running=false"],
                       capture_output=True, timeout=600)
    report("snapshot_rc", r.returncode)
    subprocess.run([vmon, "ctl", "--sock", api, "stop"], capture_output=True, timeout=120)
    report("source_rc", src.wait(timeout=120))
    restored = subprocess.Popen([vmon, "restore", snap, "--api-sock", api2], stdin=subprocess.DEVNULL,
                                stdout=open(out2, "wb"), stderr=open(tmp + "/snap-restored.err", "wb"))
    wait_for(out2, b"VSOCK-HOLD-END", restored)
    for line in open(out2, "rb").read().decode(errors="replace").splitlines():
        if line.startswith("VSOCK-HOLD-END: "):
            report("hold_end", line[len("VSOCK-HOLD-END: "):].strip().replace(" ", "_"))
    ok, back = echo_once(b"after-restore")
    report("after", ok + "_" + back)
    report("restored_rc", restored.wait(timeout=max(10, deadline - time.time())))
except Exception as e:
    report("error", repr(e).replace(" ", "_"))
PY
start=$(date +%s)
timeout --signal=KILL $((BOOT_TIMEOUT + 300)) python3 "$TEST_TMP/snap.py" "$VMON" "$GUEST_KERNEL" "$TEST_TMP/initrd.cpio" \
	"$CMDLINE" "$TEST_TMP" "$BOOT_TIMEOUT" >"$TEST_TMP/snap.log" 2>&1
echo "    vsock snapshot: boot, snapshot, restore took $(($(date +%s) - start))s"
cp "$TEST_TMP/snap.log" build/test-logs/vsock-snap.log 2>/dev/null
cp "$TEST_TMP/snap-restored.out" build/test-logs/vsock-snap-restored.console 2>/dev/null
cp "$TEST_TMP/snap-restored.err" build/test-logs/vsock-snap-restored.stderr 2>/dev/null
snap() { sed -n "s/^RESULT $1=//p" "$TEST_TMP/snap.log" | head -1; }
OUT=$TEST_TMP/snap-restored.out
ERR=$TEST_TMP/snap-restored.err
RC=$(snap restored_rc)
expect vsock/snapshot-before "before the snapshot, the guest held a connection to the host and echoed ($(snap hold_line) $(snap before) $(snap error))" \
	sh -c "[ '$(snap hold_line)' = hold ] && [ '$(snap before)' = OK_before-snapshot ] && [ '$(snap snapshot_rc)' = 0 ]"
expect vsock/snapshot-transport-reset "the restored guest's open connection was reset ($(snap hold_end))" \
	sh -c "[ '$(snap hold_end)' = Connection_reset_by_peer ]"
expect vsock/snapshot-new-connection "the restored VM's vsock socket reaches the guest's listener ($(snap after))" \
	sh -c "[ '$(snap after)' = OK_after-restore ]"
expect vsock/snapshot-poweroff "the restored guest ran to the end and powered off (exit $RC)" \
	sh -c "[ '$RC' = 0 ] && grep -q 'VSOCK-SNAP done' $OUT"
expect vsock/snapshot-no-sanitizer-report "no AddressSanitizer/UBSan report" \
	sh -c "! grep -qE 'Sanitizer|runtime error' $ERR $TEST_TMP/snap-src.err"
