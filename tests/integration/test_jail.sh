#!/usr/bin/env bash
# vmon jail as a user sees it (root only): bad input refused with one line and exit status 2;
# the jail's layout (the kernel linked in, device nodes and /run for the jail's user); vmon run
# started inside the jail, as the jail's user, as pid 1 of its own PID namespace, writing its
# log at the in-jail path; cgroups, the host's registry entry and mounts gone afterwards. With
# KVM: a guest runs as the jail's user in namespaces other than the host's, under the cgroup
# limits, and vmon ps / vmon ctl reach it through the jail's API socket.
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

if [ "$(id -u)" != 0 ]; then
	skip jail/all "vmon jail needs root"
	exit 0
fi

export VMON_RUNTIME_DIR=$TEST_TMP/run
JAILER_PID=
trap '[ "$BASHPID" = "$TEST_MAIN_PID" ] && { [ -n "$JAILER_PID" ] && kill -KILL $JAILER_PID 2>/dev/null; rm -rf "$TEST_TMP"; }' EXIT
BASE=$TEST_TMP/base
mkdir -m 0755 "$BASE"
KERNEL=$GUESTS/idle.elf
NOBODY=65534

# refused NAME WHAT PATTERN ARGS...: vmon jail ARGS exits 2 with one line matching PATTERN.
refused() {
	local name=$1 what=$2 pattern=$3
	shift 3
	run_vmon "$name" 30 jail "$@"
	expect "jail/refused/$name" "$what: exit 2 and one line matching '$pattern'" \
		eval '[ $RC = 2 ] && [ "$(wc -l <"$ERR")" = 1 ] && grep -q -- "$pattern" "$ERR"'
}

J="--uid $NOBODY --gid $NOBODY --base $BASE"
refused bad-id "an id with a slash" "a jail id is 1 to 64 letters" --id a/b $J -- run --kernel "$KERNEL"
refused unknown-uid "an unknown user" "no such user on this host" \
	--id u --uid no-such-user-vmon --gid $NOBODY --base "$BASE" -- run --kernel "$KERNEL"
refused root-uid "uid 0" "root's rights" --id u --uid 0 --gid $NOBODY --base "$BASE" -- run --kernel "$KERNEL"
refused no-base "a missing base directory" "the base directory $TEST_TMP/nonexistent does not exist" \
	--id u --uid $NOBODY --gid $NOBODY --base "$TEST_TMP/nonexistent" -- run --kernel "$KERNEL"
refused no-kernel "a kernel that does not exist" "--kernel $TEST_TMP/no-kernel: No such file or directory" \
	--id u $J -- run --kernel "$TEST_TMP/no-kernel"
refused escape "a socket path that escapes the jail" "is not a path inside the jail" \
	--id u $J -- run --kernel "$KERNEL" --api-sock /run/../../../etc/evil.sock
refused config "--config" "--config is not supported under vmon jail" \
	--id u $J -- run --kernel "$KERNEL" --config /etc/vm.json
refused bad-cgroup "a cgroup controller the host lacks" "no cgroup controller 'nosuch'" \
	--id u $J --cgroup nosuch.max=1 -- run --kernel "$KERNEL"
expect jail/refused/nothing-left "refused commands leave no jail directory" eval '[ -z "$(ls -A "$BASE")" ]'
run_vmon not-root 30 jail --id u $J -- run --kernel "$KERNEL"
mv "$ERR" "$TEST_TMP/unused.err"
OUT=$TEST_TMP/not-root.out ERR=$TEST_TMP/not-root.err
setpriv --reuid $NOBODY --regid $NOBODY --clear-groups "$VMON" jail --id u $J -- run --kernel "$KERNEL" \
	</dev/null >"$OUT" 2>"$ERR"
RC=$?
expect jail/refused/not-root "a caller that is not root: exit 2, 'must run as root'" \
	eval '[ $RC = 2 ] && grep -q "vmon jail must run as root" "$ERR"'

# cgroup files this host has: a v1 controller directory, else the v2 hierarchy.
CGROUP_ARGS=() PIDS_DIR=
if [ -e /sys/fs/cgroup/pids/tasks ]; then
	CGROUP_ARGS=(--cgroup pids.max=200) PIDS_DIR=/sys/fs/cgroup/pids/vmon
elif grep -qw pids /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null; then
	CGROUP_ARGS=(--cgroup pids.max=200) PIDS_DIR=/sys/fs/cgroup/unified/vmon
elif grep -qw pids /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
	CGROUP_ARGS=(--cgroup pids.max=200) PIDS_DIR=/sys/fs/cgroup/vmon
fi

for bin in build/vmon build/vmon-san; do
	b=$(basename "$bin")
	VMON=$bin
	ROOT=$BASE/$b/root
	# Up to the exec of vmon run: on a host without KVM, vmon run's own message ends it.
	run_vmon layout-$b 60 jail --id "$b" --uid $NOBODY --gid $NOBODY --base "$BASE" "${CGROUP_ARGS[@]}" -- \
		run --kernel "$KERNEL" --memory 32M --api-sock /run/api.sock --log-file /run/vmon.log --name "jailed-$b"
	if ! have_kvm; then
		expect jail/$b/run-inside "vmon run reports the missing /dev/kvm itself, as pid 1, in its in-jail log" \
			eval '[ $RC = 2 ] && grep -q "/dev/kvm does not exist" "$ERR" && grep -q "\"pid\":1," "$ROOT/run/vmon.log"'
		expect jail/$b/log-owner "the in-jail log belongs to the jail's user" \
			eval '[ "$(stat -c %u "$ROOT/run/vmon.log")" = $NOBODY ]'
		expect jail/$b/no-kvm-node "no /dev/kvm node where the host has none" test ! -e "$ROOT/dev/kvm"
	fi
	expect jail/$b/kernel "the kernel is in the jail under its own name, same contents" cmp -s "$KERNEL" "$ROOT/idle.elf"
	expect jail/$b/root-owner "the jail root belongs to root, mode 755" \
		eval '[ "$(stat -c %u:%a "$ROOT")" = 0:755 ]'
	expect jail/$b/run-dir "/run in the jail belongs to the jail's user" \
		eval '[ "$(stat -c %u:%g "$ROOT/run")" = $NOBODY:$NOBODY ]'
	expect jail/$b/urandom "/dev/urandom in the jail: the host's device number, the jail's user" \
		eval '[ "$(stat -c %F:%t:%T:%u "$ROOT/dev/urandom")" = "character special file:1:9:$NOBODY" ]'
	if [ -c /dev/net/tun ]; then
		expect jail/$b/tun "/dev/net/tun in the jail" eval '[ "$(stat -c %t:%T "$ROOT/dev/net/tun")" = a:c8 ]'
	fi
	expect jail/$b/no-mounts-left "the jail's mounts stayed in its mount namespace" \
		eval '! grep -q " $BASE/" /proc/self/mountinfo'
	expect jail/$b/registry-cleared "the host's registry entry is gone once the VM ended" \
		eval '[ -z "$(ls "$VMON_RUNTIME_DIR"/*.json 2>/dev/null)" ]'
	[ -n "$PIDS_DIR" ] && expect jail/$b/cgroup-removed "the jail's cgroup is removed once the VM ended" \
		test ! -e "$PIDS_DIR/$b"
	refused reuse-$b "an existing jail" "already exists" --id "$b" $J -- run --kernel "$KERNEL"

	if ! have_kvm; then
		skip jail/$b/guest "no usable /dev/kvm on this machine"
		continue
	fi
	# A guest in a fresh jail: its process, namespaces, cgroup, and the API from the host.
	ROOT=$BASE/$b-vm/root
	OUT=$TEST_TMP/$b-vm.out ERR=$TEST_TMP/$b-vm.err
	"$bin" jail --id "$b-vm" --uid $NOBODY --gid $NOBODY --base "$BASE" "${CGROUP_ARGS[@]}" -- \
		run --kernel "$KERNEL" --memory 32M --api-sock /run/api.sock --name "jailed-$b" </dev/null >"$OUT" 2>"$ERR" &
	JAILER_PID=$!
	if ! wait_for "$OUT" 'idle guest sleeping' 60; then
		fail jail/$b/guest "the idle guest did not start in the jail: $(tail -c 400 "$ERR")"
		kill -KILL $JAILER_PID 2>/dev/null
		wait $JAILER_PID 2>/dev/null
		JAILER_PID=
		continue
	fi
	pass jail/$b/guest
	VM=$(pgrep -P $JAILER_PID | head -1)
	expect jail/$b/vm-uid "the VM's process runs as the jail's user" \
		eval '[ "$(awk "/^Uid:/ {print \$2}" /proc/$VM/status)" = $NOBODY ]'
	for ns in mnt pid ipc uts; do
		expect jail/$b/ns-$ns "the VM's $ns namespace is not the host's" \
			eval '[ "$(readlink /proc/$VM/ns/'$ns')" != "$(readlink /proc/self/ns/'$ns')" ]'
	done
	expect jail/$b/rooted "the VM's root directory is the jail" test -e "/proc/$VM/root/idle.elf"
	[ -n "$PIDS_DIR" ] && expect jail/$b/cgroup "the VM is in its cgroup, with pids.max 200" \
		eval 'grep -qx "$VM" "$PIDS_DIR/$b-vm/cgroup.procs" && [ "$(cat "$PIDS_DIR/$b-vm/pids.max")" = 200 ]'
	expect jail/$b/socket "the API socket appears in the jail directory" test -S "$ROOT/run/api.sock"
	PS_OUT=$(build/vmon ps 2>&1)
	expect jail/$b/ps "vmon ps lists the jailed VM with its API socket as the host sees it: $PS_OUT" \
		eval 'grep -qE "^$JAILER_PID +jailed-$b +running .*$ROOT/run/api.sock" <<<"$PS_OUT"'
	expect jail/$b/ctl "vmon ctl --vm reaches the jailed VM" eval 'build/vmon ctl --vm "jailed-$b" info >/dev/null 2>&1'
	build/vmon ctl --vm "jailed-$b" stop >/dev/null 2>&1
	for _ in $(seq 100); do kill -0 $JAILER_PID 2>/dev/null || break; sleep 0.2; done
	kill -KILL $JAILER_PID 2>/dev/null
	wait $JAILER_PID
	RC=$?
	JAILER_PID=
	expect jail/$b/exit "the jailer exits 0 after ctl stop, its registry entry gone" \
		eval '[ $RC = 0 ] && [ -z "$(ls "$VMON_RUNTIME_DIR"/*.json 2>/dev/null)" ]'
done
