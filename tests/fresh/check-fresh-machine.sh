#!/usr/bin/env bash
# The README's first command on a fresh machine: a minimal Debian root (debootstrap
# --variant=minbase, from the apt sources this machine uses), a clone of this repository
# copied in, and the first command of the README's first code block run inside it
# (chroot, with /dev/kvm, /proc, /sys and /dev/pts bound) until the default guest's shell
# greets and runs a command. Everything happens inside the root: package installation, the
# build of vmon, the command itself. Only the default guest's kernel comes from this
# machine's cache (keyed by its sources, so a hit is the same kernel the root would build).
#
# Root only. Prints PASS/FAIL/SKIP lines like the other suites. VMON_FRESH_KEEP=1 keeps the
# root for inspection (its mounts are still removed).
cd "$(dirname "$0")/../.."
repo=$(pwd)
start=$SECONDS

pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1: $2"; }
skip() { echo "SKIP: $1: $2"; }
say() { printf '    fresh [%4ds] %s\n' "$((SECONDS - start))" "$*"; }

if [ "$(id -u)" -ne 0 ]; then
	skip fresh/first-command "needs root (debootstrap, chroot, mounts)"
	exit 0
fi
for tool in debootstrap chroot findmnt python3 git; do
	if ! command -v "$tool" >/dev/null; then
		fail fresh/first-command "$tool is not installed; run scripts/install-deps.sh test"
		exit 0
	fi
done
# Without /dev/kvm the guest cannot boot, but everything before the boot is still checked:
# the packages the README's first command installs are enough to build vmon.
have_kvm=1
[ -c /dev/kvm ] || have_kvm=0

# The README's first command: the first line of its first code block, comment removed.
first_command=$(awk '/^```/ { if (inblock) exit; inblock = 1; next } inblock { print; exit }' README.md |
	sed 's/[[:space:]]*#.*$//')
if [ -z "$first_command" ]; then
	fail fresh/first-command "README.md has no code block with a command"
	exit 0
fi

. /etc/os-release
codename=${VERSION_CODENAME:?/etc/os-release names no release}
if ! mirror=$(python3 tests/fresh/apt_sources.py "$codename" --mirror); then
	fail fresh/first-command "no apt source on this machine serves Debian $codename"
	exit 0
fi

ROOT=$(mktemp -d /var/tmp/vmon-fresh.XXXXXX)
CONSOLE=$ROOT.console
LOG=$ROOT.log
runner=

# Processes whose root directory is inside ROOT: what the chroot started.
root_pids() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ] && echo "${p#/proc/}"
	done
}

mounts_under_root() { findmnt -rn -o TARGET | grep -E "^$ROOT(/|$)"; }

# Bind mounts into ROOT lead to the host's /dev and /sys: nothing is removed while any is
# still mounted, and the removal never crosses into another file system.
cleanup() {
	local pids m
	[ -n "$runner" ] && kill -KILL "$runner" 2>/dev/null
	pids=$(root_pids)
	[ -n "$pids" ] && kill -KILL $pids 2>/dev/null
	sleep 0.5
	for m in dev/pts dev/kvm sys proc; do
		if mountpoint -q "$ROOT/$m" 2>/dev/null; then
			umount "$ROOT/$m" 2>/dev/null || { sleep 2; umount "$ROOT/$m"; }
		fi
	done
	if m=$(mounts_under_root) && [ -n "$m" ]; then
		echo "    fresh: still mounted under $ROOT, so it is left in place: $m" >&2
		return
	fi
	if [ "${VMON_FRESH_KEEP:-0}" = 1 ]; then
		echo "    fresh: root kept at $ROOT (VMON_FRESH_KEEP=1)"
	else
		rm -rf --one-file-system "$ROOT"
	fi
	rm -f "$CONSOLE" "$LOG" "$LOG.fifo"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

show_tail() { tail -n "${2:-25}" "$1" 2>/dev/null | tr -d '\r' | sed 's/^/      | /'; }

# ---- a minimal Debian root ----
say "debootstrap --variant=minbase $codename from $mirror into $ROOT"
if ! debootstrap --variant=minbase "$codename" "$ROOT" "$mirror" >"$LOG" 2>&1; then
	show_tail "$LOG"
	fail fresh/debootstrap "debootstrap failed (log above)"
	exit 0
fi
for tool in make gcc cc git pkg-config; do
	if chroot "$ROOT" /bin/sh -c "command -v $tool" >/dev/null 2>&1; then
		fail fresh/debootstrap "the minimal root already has $tool, so it proves nothing about a fresh machine"
		exit 0
	fi
done
pass fresh/debootstrap
say "minimal root ready: $(du -sm --one-file-system "$ROOT" | cut -f1) MiB"

rm -f "$ROOT/etc/apt/sources.list"
python3 tests/fresh/apt_sources.py "$codename" >"$ROOT/etc/apt/sources.list.d/debian.sources"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"

# The clone, as a newcomer has it after `git clone`. Uncommitted changes are not in it.
git clone -q "$repo" "$ROOT/root/vmon"
say "cloned $(git -C "$ROOT/root/vmon" log -1 --format='%h %s' | cut -c1-60)"

if [ "$have_kvm" = 0 ]; then
	mount -t proc proc "$ROOT/proc"
	say "no /dev/kvm here: checking the first command's refusal, then its install and build steps"
	out=$(chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		/bin/bash -c "cd /root/vmon && $first_command" 2>&1)
	if [ $? -eq 0 ] || ! grep -q '/dev/kvm does not exist' <<<"$out"; then
		echo "$out" | tail -n 5 | sed 's/^/      | /'
		fail fresh/no-kvm-message "'$first_command' without /dev/kvm did not stop with the /dev/kvm message"
	else
		pass fresh/no-kvm-message
	fi
	build_start=$SECONDS
	if ! chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		/bin/bash -c "cd /root/vmon && scripts/install-deps.sh run && make -j$(nproc) build/vmon &&
			build/vmon --version" >"$LOG" 2>&1; then
		show_tail "$LOG"
		fail fresh/build "the first command's package set does not build vmon on a minimal root (log above)"
		exit 0
	fi
	pass fresh/build
	say "packages and build took $((SECONDS - build_start)) s: $(tail -n 1 "$LOG")"
	skip fresh/first-command "no /dev/kvm on this machine: the boot itself was not checked"
	exit 0
fi

# The default guest's kernel from this machine's cache, built here first if the cache has none
# for these sources (a build already running is waited for).
if ! scripts/build-guest.sh >"$LOG" 2>&1 || ! guest_dir=$(scripts/guest-paths.sh --dir); then
	show_tail "$LOG"
	fail fresh/first-command "the default guest could not be built on this machine (log above)"
	exit 0
fi
mkdir -p "$ROOT/root/.cache/vmon"
cp -a "$guest_dir" "$ROOT/root/.cache/vmon/"
say "default guest copied from this machine's cache ($(basename "$guest_dir"))"

mount -t proc proc "$ROOT/proc"
mount --bind /sys "$ROOT/sys"
touch "$ROOT/dev/kvm"
mount --bind /dev/kvm "$ROOT/dev/kvm"
mkdir -p "$ROOT/dev/pts"
mount --bind /dev/pts "$ROOT/dev/pts"

# ---- the first command, with a console we can type into ----
mkfifo "$LOG.fifo"
say "running '$first_command' in the root"
chroot "$ROOT" /usr/bin/env -i HOME=/root TERM=dumb \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	/bin/bash -c "cd /root/vmon && $first_command" <"$LOG.fifo" >"$CONSOLE" 2>&1 &
runner=$!
exec 3>"$LOG.fifo"
first_start=$SECONDS

# wait_console PATTERN SECONDS: true once the console shows PATTERN; false if it times out
# or the command ended.
wait_console() {
	local deadline=$((SECONDS + $2)) last=$SECONDS
	while [ $SECONDS -lt $deadline ]; do
		tr -d '\r' <"$CONSOLE" | grep -q -- "$1" && return 0
		kill -0 "$runner" 2>/dev/null || return 1
		if [ $((SECONDS - last)) -ge 120 ]; then
			last=$SECONDS
			say "  ... $(tr -d '\r' <"$CONSOLE" | grep -v '^[[:space:]]*$' | tail -1 | cut -c1-100)"
		fi
		sleep 1
	done
	return 1
}

if ! wait_console 'Welcome to the vmon default guest' 2400; then
	show_tail "$CONSOLE" 40
	fail fresh/first-command "'$first_command' did not boot the default guest to its shell (console above)"
	exit 0
fi
say "the guest's shell greets"
greet=$SECONDS
marker="fresh-machine-$$"
sleep 2
printf 'echo %s-$((6*7)); poweroff\n' "$marker" >&3
if ! wait_console "$marker-42" 300; then
	show_tail "$CONSOLE" 20
	fail fresh/first-command "the guest's shell did not run a typed command (console above)"
	exit 0
fi
( sleep 300; kill -KILL "$runner" 2>/dev/null ) &
dog=$!
wait "$runner"
rc=$?
runner=
kill "$dog" 2>/dev/null
wait "$dog" 2>/dev/null
if [ "$rc" -ne 0 ]; then
	show_tail "$CONSOLE" 20
	fail fresh/first-command "'$first_command' ended with exit $rc after poweroff (console above)"
	exit 0
fi
pass fresh/first-command
say "'$first_command' took $((greet - first_start)) s from a minimal root to the guest's shell (packages, build, boot); the whole check $((SECONDS - start)) s"
