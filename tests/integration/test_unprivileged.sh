#!/usr/bin/env bash
# vmon without root: an ordinary user (nobody) with read-write access to /dev/kvm, as the kvm
# group gives it on Debian, boots a test guest, finds it with `vmon ps`, controls and snapshots
# it with `vmon ctl`, and restores the snapshot; without access to /dev/kvm the same user gets
# one line that says how to get it.
#
# Run as root, the script re-executes itself in a mount namespace of its own, where a copy of
# the /dev/kvm node owned by that user is bind-mounted over /dev/kvm: the host's node and its
# permissions are never touched. Run as an ordinary user, it tests that user directly.
cd "$(dirname "$0")/../.."

if [ "$(id -u)" -eq 0 ] && [ -z "${VMON_UNPRIV_NS:-}" ]; then
	if ! command -v unshare >/dev/null || ! command -v setpriv >/dev/null; then
		echo "SKIP: unprivileged: needs unshare and setpriv (util-linux)"
		exit 0
	fi
	exec unshare --mount --propagation private env VMON_UNPRIV_NS=1 bash "$0" "$@"
fi

. tests/integration/lib.sh

if ! [ -c /dev/kvm ]; then
	skip unprivileged "no /dev/kvm on this machine"
	exit 0
fi

USER_ID=65534 # nobody, in every Debian system
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	[ -n "${WORK:-}" ] && mountpoint -q "$WORK/dev" && umount "$WORK/dev"
	rm -rf --one-file-system "$TEST_TMP" "${WORK:-}"
}
trap cleanup EXIT

WORK=$(mktemp -d /tmp/vmon-unpriv.XXXXXX)
chmod 0755 "$WORK"
if [ -n "${VMON_UNPRIV_NS:-}" ]; then
	# A private tmpfs for the node (the root file system may be mounted nodev).
	mkdir "$WORK/dev"
	mount -t tmpfs -o mode=0755,size=64k vmon-unpriv "$WORK/dev"
	major_minor=$(stat -c '%t %T' /dev/kvm)
	mknod "$WORK/dev/kvm" c $((16#${major_minor% *})) $((16#${major_minor#* }))
	chmod 0600 "$WORK/dev/kvm"
	# First without access: the node stays root's.
	mount --bind "$WORK/dev/kvm" /dev/kvm
	chown "$USER_ID:$USER_ID" "$WORK"
	as_user() { setpriv --reuid="$USER_ID" --regid="$USER_ID" --clear-groups --inh-caps=-all \
		env -u XDG_RUNTIME_DIR -u VMON_RUNTIME_DIR HOME=/nonexistent "$@"; }
	grant_kvm() { chown "$USER_ID" "$WORK/dev/kvm"; }
else
	as_user() { "$@"; }
	grant_kvm() { :; }
fi

if ! as_user test -x "$VMON" || ! as_user test -r "$GUESTS/hello.elf"; then
	skip unprivileged "uid $USER_ID cannot read $VMON or $GUESTS (a private parent directory?)"
	exit 0
fi

# run_user NAME TIMEOUT ARGS...: run_vmon as the ordinary user; output in $WORK.
run_user() {
	local name=$1 timeout_s=$2
	shift 2
	OUT=$WORK/$name.out ERR=$WORK/$name.err
	as_user timeout --signal=KILL "$timeout_s" "$VMON" "$@" </dev/null >"$OUT" 2>"$ERR"
	RC=$?
}

if [ -n "${VMON_UNPRIV_NS:-}" ]; then
	run_user denied 60 run --kernel "$GUESTS/hello.elf" --memory 32M
	expect unprivileged/no-kvm-access "a non-zero exit and one line that names /dev/kvm and the kvm group" \
		sh -c "[ $RC -ne 0 ] && grep -q 'no permission to open /dev/kvm' $ERR && grep -q \"'kvm' group\" $ERR"
	grant_kvm
fi

run_user hello 120 run --kernel "$GUESTS/hello.elf" --memory 32M
expect unprivileged/run "uid $(as_user id -u) boots the hello guest, exit 0" \
	sh -c "[ $RC -eq 0 ] && grep -q 'hello from the vmon test guest' $OUT"

# A VM with an API socket: ps, ctl, snapshot and restore, all as the same user.
name=unpriv-$$
OUT=$WORK/count.out ERR=$WORK/count.err
as_user "$VMON" run --kernel "$GUESTS/snapcount.elf" --memory 64M --name "$name" \
	--api-sock "$WORK/count.sock" </dev/null >"$OUT" 2>"$ERR" &
PID=$!
PIDS+=("$PID")
wait_for "$OUT" '^count: 2$' 120
as_user "$VMON" ps >"$WORK/ps.out" 2>"$WORK/ps.err"
RC=$?
expect unprivileged/ps "vmon ps lists the user's VM by name" \
	sh -c "[ $RC -eq 0 ] && grep -q '$name' $WORK/ps.out"
as_user "$VMON" ctl --vm "$name" info >"$WORK/info.out" 2>"$WORK/info.err"
RC=$?
expect unprivileged/ctl-info "vmon ctl --vm NAME info answers with the running state" \
	sh -c "[ $RC -eq 0 ] && grep -q '\"running\"' $WORK/info.out"
as_user "$VMON" ctl --vm "$name" snapshot "$WORK/snap" >"$WORK/snap.out" 2>"$WORK/snap.err"
RC=$?
expect unprivileged/snapshot "vmon ctl snapshot writes the snapshot" \
	sh -c "[ $RC -eq 0 ] && [ -f $WORK/snap/state ]"
as_user "$VMON" ctl --vm "$name" stop >/dev/null 2>&1
wait "$PID"
RC=$?
expect unprivileged/stop "vmon ctl stop ends the VM with exit 0" sh -c "[ $RC -eq 0 ]"

OUT=$WORK/restored.out ERR=$WORK/restored.err
as_user "$VMON" restore "$WORK/snap" --api-sock "$WORK/restored.sock" </dev/null >"$OUT" 2>"$ERR" &
PID=$!
PIDS+=("$PID")
last=$(tr -d '\r' <"$WORK/count.out" | grep -a '^count: ' | tail -1 | cut -d' ' -f2)
wait_for "$OUT" "^count: $((last + 2))$" 120
counted=$?
as_user "$VMON" ctl --sock "$WORK/restored.sock" stop >/dev/null 2>&1
wait "$PID"
RC=$?
expect unprivileged/restore "the restored guest counts on from the snapshot and stops with exit 0" \
	sh -c "[ $counted -eq 0 ] && [ $RC -eq 0 ]"

# `make install` with DESTDIR and PREFIX gives a vmon that the same user can run.
if make -s install DESTDIR="$WORK/pkg" PREFIX=/usr >"$WORK/install.out" 2>&1; then
	chmod -R a+rX "$WORK/pkg"
	version=$(as_user "$WORK/pkg/usr/bin/vmon" --version 2>&1)
	VMON=$WORK/pkg/usr/bin/vmon run_user installed 120 run --kernel "$GUESTS/hello.elf" --memory 32M
	expect install/works "the installed vmon prints its version ($version), has its docs and boots a guest" \
		sh -c "echo '$version' | grep -qE '^vmon [0-9]+\.[0-9]+\.[0-9]+' && [ -f $WORK/pkg/usr/share/doc/vmon/docs/usage.md ] && [ $RC -eq 0 ] && grep -q 'hello from the vmon test guest' $OUT"
else
	RC=1 OUT=$WORK/install.out ERR=$WORK/install.out
	fail install/works "make install DESTDIR=... PREFIX=/usr failed: $(tail -c 400 "$WORK/install.out")"
fi
