#!/usr/bin/env bash
# virtio-net seen from a real Linux guest. One boot of the default guest with user-mode
# networking (libslirp) covers: a DHCP lease from the kernel's ip=dhcp, a page and a bulk file
# fetched with busybox wget from an HTTP server this script runs on the host's loopback (the
# guest reaches it at 10.0.2.2, with host-loopback=on), and a hostfwd port reaching a server in the guest. A second
# boot, only where this script may create network namespaces (root), attaches a tap device in a
# namespace of its own and talks to the host end of it. All traffic stays on this machine.
#   VMON_NET_BULK_MIB   size of the bulk download (default 2; 0 skips it; the guest kernel is
#                       emulated on nested hosts, ~0.1 MiB/s there)
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

if ! have_kvm; then
	skip net "no usable /dev/kvm on this machine"
	exit 0
fi
if ! scripts/build-guest.sh >"$TEST_TMP/build-guest.log" 2>&1; then
	fail net/build-guest "scripts/build-guest.sh failed: $(tail -5 "$TEST_TMP/build-guest.log" | tr '\n' ' ')"
	exit 0
fi
eval "$(scripts/guest-paths.sh)"
BOOT_TIMEOUT=${VMON_LINUX_BOOT_TIMEOUT:-1800}
BULK_MIB=${VMON_NET_BULK_MIB:-2}
CMDLINE="$(cat guest/cmdline 2>/dev/null || echo console=ttyS0)"


# The probe /init: what it does depends on nettest= on the kernel command line.
mkdir -p "$TEST_TMP/probe"
cat >"$TEST_TMP/probe/init" <<'INIT'
#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
arg() { $B sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
up() { $B cut -d' ' -f1 /proc/uptime; }
mode=$(arg nettest)
port=$(arg nettest.port)
echo "NET-TEST mac=$($B cat /sys/class/net/eth0/address)"
if [ "$mode" = user ]; then
	echo "NET-TEST addr=$($B ip -4 addr show eth0 | $B grep -o 'inet [0-9./]*')"
	echo "NET-TEST page=$($B timeout 300 $B wget -q -O - http://10.0.2.2:$port/page.txt)"
	if [ "$(arg nettest.bulk)" != 0 ]; then
		t0=$(up)
		sum=$($B timeout 300 $B wget -q -O - http://10.0.2.2:$port/bulk.bin | $B md5sum | $B cut -d' ' -f1)
		echo "NET-TEST bulk=$sum seconds=$t0..$(up)"
	fi
	echo "NET-TEST listening"
	echo "hello-from-the-guest" | $B nc -l -p 8000
	echo "NET-TEST served"
elif [ "$mode" = snap ]; then
	echo "NET-TEST snap-ready"
	while :; do
		page=$($B timeout 20 $B wget -q -O - http://10.0.2.2:$port/page.txt)
		[ "$page" = after-restore ] && break
		$B sleep 1
	done
	echo "NET-TEST restored-fetch=$page"
elif [ "$mode" = tap ]; then
	$B ip link set lo up
	$B ip addr add 10.9.0.2/24 dev eth0
	$B ip link set eth0 up
	echo "NET-TEST ping=$($B ping -c 3 -W 5 10.9.0.1 | $B grep -o '[0-9]* packets received')"
	echo "NET-TEST page=$($B timeout 300 $B wget -q -O - http://10.9.0.1:$port/page.txt)"
	sum=$($B timeout 300 $B wget -q -O - http://10.9.0.1:$port/bulk.bin | $B md5sum | $B cut -d' ' -f1)
	echo "NET-TEST bulk=$sum"
fi
echo "NET-TEST done"
$B poweroff -f
INIT
chmod +x "$TEST_TMP/probe/init"
(cd "$TEST_TMP/probe" && echo init | cpio -o -H newc >../probe.cpio 2>/dev/null)
cat "$GUEST_INITRD" "$TEST_TMP/probe.cpio" >"$TEST_TMP/initrd.cpio"

# The host's web server: a page and a bulk file of random bytes.
mkdir -p "$TEST_TMP/www"
echo "vmon-net-page-$$" >"$TEST_TMP/www/page.txt"
head -c $((BULK_MIB * 1024 * 1024)) /dev/urandom >"$TEST_TMP/www/bulk.bin"
BULK_MD5=$(md5sum <"$TEST_TMP/www/bulk.bin" | cut -d' ' -f1)
HTTP_PORT=$(free_port)
python3 -m http.server --bind 127.0.0.1 --directory "$TEST_TMP/www" "$HTTP_PORT" >"$TEST_TMP/http.log" 2>&1 &
HTTP_PID=$!
FWD_PORT=$(free_port)

OUT=$TEST_TMP/user.out
ERR=$TEST_TMP/user.err
start=$(date +%s)
timeout --signal=KILL "$BOOT_TIMEOUT" "$VMON" run --kernel "$GUEST_KERNEL" --initrd "$TEST_TMP/initrd.cpio" \
	--memory 128M --net "user,hostfwd=tcp:$FWD_PORT-:8000,host-loopback=on" \
	--cmdline "$CMDLINE ip=dhcp nettest=user nettest.port=$HTTP_PORT nettest.bulk=$BULK_MIB" \
	</dev/null >"$OUT" 2>"$ERR" &
VMON_PID=$!

# The port forward: once the guest listens, connect to the host port and read its greeting.
FWD_REPLY=""
for _ in $(seq 1 "$BOOT_TIMEOUT"); do
	kill -0 $VMON_PID 2>/dev/null || break
	if grep -q 'NET-TEST listening' "$OUT"; then
		FWD_REPLY=$(python3 - "$FWD_PORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
s.settimeout(20)
data = b""
try:
    while b"\n" not in data:
        chunk = s.recv(100)
        if not chunk:
            break
        data += chunk
except OSError:
    pass
print(data.decode(errors="replace").strip())
PY
)
		[ -n "$FWD_REPLY" ] && break
	fi
	sleep 1
done
wait $VMON_PID
RC=$?
kill $HTTP_PID 2>/dev/null
wait $HTTP_PID 2>/dev/null
echo "    user network guest: boot to poweroff took $(($(date +%s) - start))s (exit $RC)"
cp "$OUT" build/test-logs/net-user.console 2>/dev/null
cp "$ERR" build/test-logs/net-user.stderr 2>/dev/null
value() { tr -d '\r' <"$OUT" | sed -n "s/^NET-TEST $1=//p" | head -1; }

expect net/dhcp "the kernel's ip=dhcp got 10.0.2.15 from libslirp's DHCP server" \
	sh -c "tr -d '\r' <'$OUT' | grep -q 'IP-Config: Complete' && tr -d '\r' <'$OUT' | grep -q 'ipaddr=10.0.2.15,'"
expect net/mac "the NIC has a locally administered 52:54:00 MAC ($(value mac))" \
	sh -c "case '$(value mac)' in 52:54:00:*) true ;; *) false ;; esac"
expect net/http-get "busybox wget fetched the host's page through slirp ($(value page))" \
	sh -c "[ '$(value page)' = 'vmon-net-page-$$' ]"
if [ "$BULK_MIB" != 0 ]; then
	bulk=$(value bulk)
	secs=$(echo "$bulk" | sed -n 's/.*seconds=\([0-9.]*\)\.\.\([0-9.]*\)/\1 \2/p' | awk '{ printf "%.2f", $2 - $1 }')
	expect net/http-bulk "a ${BULK_MIB} MiB download arrived intact (md5 ${bulk%% *}; guest time ${secs}s)" \
		sh -c "[ '${bulk%% *}' = '$BULK_MD5' ]"
	[ -n "$secs" ] && awk -v m="$BULK_MIB" -v s="$secs" 'BEGIN { if (s > 0) printf "    slirp download: %d MiB in %.2f s guest time = %.2f MiB/s\n", m, s, m / s }'
fi
expect net/hostfwd "127.0.0.1:$FWD_PORT reached nc in the guest (got '$FWD_REPLY')" \
	sh -c "[ '$FWD_REPLY' = hello-from-the-guest ]"
expect net/poweroff "the guest ran its probe to the end and powered off" \
	sh -c "[ $RC -eq 0 ] && tr -d '\r' <'$OUT' | grep -q 'NET-TEST done'"
expect net/no-sanitizer-report "no AddressSanitizer/UBSan report" sh -c "! grep -qE 'Sanitizer|runtime error' $ERR"

# Bad --net values are refused before anything starts, with a message naming the option.
run_vmon net-bad 30 run --kernel "$GUEST_KERNEL" --net "user,hostfwd=tcp:99999-:80"
expect net/bad-option "a bad hostfwd is refused with a message naming --net" \
	sh -c "[ $RC -ne 0 ] && grep -q -- '--net' $ERR"

# Snapshot and restore: the restored VM gets its card back and reaches the host again (the server
# changes its page after the snapshot, so only a fetch by the restored VM can print it).
mkdir -p "$TEST_TMP/www2"
echo before >"$TEST_TMP/www2/page.txt"
HTTP_PORT=$(free_port)
python3 -m http.server --bind 127.0.0.1 --directory "$TEST_TMP/www2" "$HTTP_PORT" >"$TEST_TMP/http2.log" 2>&1 &
HTTP_PID=$!
OUT=$TEST_TMP/snap-src.out
ERR=$TEST_TMP/snap-src.err
timeout --signal=KILL "$BOOT_TIMEOUT" "$VMON" run --kernel "$GUEST_KERNEL" --initrd "$TEST_TMP/initrd.cpio" \
	--memory 128M --net user --api-sock "$TEST_TMP/src.sock" \
	--cmdline "$CMDLINE ip=dhcp nettest=snap nettest.port=$HTTP_PORT" </dev/null >"$OUT" 2>"$ERR" &
VMON_PID=$!
for _ in $(seq 1 "$BOOT_TIMEOUT"); do
	kill -0 $VMON_PID 2>/dev/null || break
	grep -q 'NET-TEST snap-ready' "$OUT" && break
	sleep 1
done
sleep 3 # a few fetches of "before"
"$VMON" ctl --sock "$TEST_TMP/src.sock" snapshot "$TEST_TMP/snap" --keep-running=false >/dev/null 2>"$TEST_TMP/snap.err"
SNAP_RC=$?
"$VMON" ctl --sock "$TEST_TMP/src.sock" stop >/dev/null 2>&1
wait $VMON_PID
echo after-restore >"$TEST_TMP/www2/page.txt"
run_vmon net-restored 600 restore "$TEST_TMP/snap"
kill $HTTP_PID 2>/dev/null
wait $HTTP_PID 2>/dev/null
cp "$OUT" build/test-logs/net-restored.console 2>/dev/null
cp "$ERR" build/test-logs/net-restored.stderr 2>/dev/null
expect net/restore "a VM restored from a snapshot reaches the host through its restored user network ($(value restored-fetch))" \
	sh -c "[ $SNAP_RC -eq 0 ] && [ $RC -eq 0 ] && [ '$(value restored-fetch)' = after-restore ]"

# tap: only where we may make a network namespace of our own (root, iproute2).
NS=vmon-net-test-$$
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! ip netns add "$NS" 2>/dev/null; then
	skip net/tap "cannot create a network namespace here (needs root and iproute2)"
	exit 0
fi
trap 'ip netns del "$NS" 2>/dev/null; [ "$BASHPID" = "$TEST_MAIN_PID" ] && rm -rf "$TEST_TMP"' EXIT
if ! ip -n "$NS" tuntap add dev vmtap0 mode tap 2>"$TEST_TMP/tap.err" ||
	! ip -n "$NS" addr add 10.9.0.1/24 dev vmtap0 || ! ip -n "$NS" link set vmtap0 up || ! ip -n "$NS" link set lo up; then
	skip net/tap "cannot create a tap device in a namespace: $(cat "$TEST_TMP/tap.err")"
	exit 0
fi
ip netns exec "$NS" python3 -m http.server --bind 10.9.0.1 --directory "$TEST_TMP/www" 8080 >"$TEST_TMP/http-tap.log" 2>&1 &
HTTP_PID=$!
sleep 1
OUT=$TEST_TMP/tap.out
ERR=$TEST_TMP/tap.err
start=$(date +%s)
timeout --signal=KILL "$BOOT_TIMEOUT" ip netns exec "$NS" "$VMON" run --kernel "$GUEST_KERNEL" \
	--initrd "$TEST_TMP/initrd.cpio" --memory 128M --net "tap=vmtap0,mac=52:54:00:12:34:56" \
	--cmdline "$CMDLINE nettest=tap nettest.port=8080" </dev/null >"$OUT" 2>"$ERR"
RC=$?
kill $HTTP_PID 2>/dev/null
wait $HTTP_PID 2>/dev/null
echo "    tap guest: boot to poweroff took $(($(date +%s) - start))s (exit $RC)"
cp "$OUT" build/test-logs/net-tap.console 2>/dev/null
cp "$ERR" build/test-logs/net-tap.stderr 2>/dev/null
expect net/tap-mac "mac= sets the NIC's address ($(value mac))" sh -c "[ '$(value mac)' = 52:54:00:12:34:56 ]"
expect net/tap-ping "the guest pings the host end of the tap ($(value ping))" \
	sh -c "[ '$(value ping)' = '3 packets received' ]"
expect net/tap-http "the guest fetched a page from the host end over TCP ($(value page))" \
	sh -c "[ '$(value page)' = 'vmon-net-page-$$' ]"
expect net/tap-bulk "a ${BULK_MIB} MiB download through the tap (checksum/TSO offloads) arrived intact" \
	sh -c "[ '$(value bulk)' = '$BULK_MD5' ]"
expect net/tap-no-sanitizer-report "no AddressSanitizer/UBSan report" sh -c "[ $RC -eq 0 ] && ! grep -qE 'Sanitizer|runtime error' $ERR"
