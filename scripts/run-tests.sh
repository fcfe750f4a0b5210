#!/usr/bin/env bash
# Runs vmon's whole test suite and prints one closing line: "N passed, N failed, N skipped".
#   unit         cmocka unit tests, built with AddressSanitizer and UBSan
#   guests       the vmon binary (ASan/UBSan build) booting tiny test guests
#   api          the control API, vmon ctl/ps and the config file, against running test guests
#   sandbox      seccomp, no_new_privs and capabilities of a running vmon (build/vmon and vmon-san)
#   linux        the vmon binary booting the default Linux guest (builds it first if needed)
#   virtio       the default Linux guest using vmon's virtio devices (PCI enumeration, /dev/hwrng)
#   blk          virtio-blk disks in the default Linux guest: ext4 written and checked on the host,
#                read-only disks, serial, durability after sync and SIGKILL, an ext4 root; dd/fio figures
#   vsock        virtio-vsock (host<->guest over Unix sockets) and the second console (hvc0) in the
#                default Linux guest, with a static vsock echo program built into its initramfs
#   net          virtio-net in the default Linux guest: DHCP, HTTP from the host and a port forward
#                through user-mode networking (libslirp); a tap in a namespace of its own (root only)
#   balloon      virtio-balloon in the default Linux guest: inflate/deflate (host RssShmem drops),
#                free page reporting, deflate on OOM, statistics
#   memory       --memory SIZE,merge=on (two test guests share pages once ksmd runs) and
#                SIZE,hugepages=on (RAM from the hugepage pool; the too-few message); root for most
#   snapshot     vmon ctl snapshot / vmon restore: test guest round trip, damaged snapshots,
#                restore latency, and the default Linux guest restored and cloned 8 times
#                (VMON_SNAPSHOT_LINUX=0 skips it)
#   clone        vmon clone and vmon restore --clone/--clock: every command-line mistake refused (no KVM needed)
#   migrate      vmon receive's command-line mistakes (no KVM needed); a counting test guest migrated
#                (pre-copy, post-copy) between two network namespaces over a veth pair (loopback when
#                not root); a destination that is not vmon, killed, a cancel or the link going down
#                keep it on the source; auto-converge throttles a guest that dirties too fast; the
#                default Linux guest, checking 64 MiB and writing to its disk, moved there and back
#                (pre-copy, post-copy): no wrong word, clock kept, disk clean (VMON_MIGRATE_LINUX=0 skips it)
#   fuzz         libFuzzer targets (clang), each for VMON_FUZZ_SECONDS (default 8)
#   jail         vmon jail (root only): bad input, the jail's layout, vmon run started inside it as
#                the jail's user and pid 1 of its PID namespace; with KVM a guest in the jail, its
#                namespaces and cgroup, vmon ps/ctl through the jail's API socket
#   unprivileged an ordinary user with access to /dev/kvm runs, lists, controls, snapshots and
#                restores a test guest
#   fresh        the README's first command on a minimal Debian root made with debootstrap, until
#                the default guest's shell greets (root only; in the default list when
#                VMON_FRESH_CHECK=1, as .ci/run sets it, because it downloads ~400 MB of packages)
# Usage: scripts/run-tests.sh [unit|guests|api|sandbox|jail|unprivileged|snapshot|clone|migrate|linux|virtio|blk|vsock|net|balloon|memory|fuzz|fresh ...]
#        (default: all)
set -u
cd "$(dirname "$0")/.."

suites=("$@")
if [ ${#suites[@]} -eq 0 ]; then
	suites=(unit guests api sandbox jail unprivileged fuzz linux snapshot clone migrate virtio blk vsock net balloon memory)
	[ "${VMON_FRESH_CHECK:-0}" = 1 ] && suites+=(fresh)
fi

passed=0 failed=0 skipped=0
failures=()
log_dir=build/test-logs
mkdir -p "$log_dir"

record() { # record STATUS NAME
	case "$1" in
	PASS) passed=$((passed + 1)) ;;
	FAIL) failed=$((failed + 1)); failures+=("$2") ;;
	SKIP) skipped=$((skipped + 1)) ;;
	esac
}

# ASan's leak checker needs to see a clean shutdown; abort on the first UBSan report.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_unit() {
	# build/release/tests/unit: the few tests that must see the release build's own system calls.
	for bin in build/san/tests/unit/test_* build/release/tests/unit/test_*; do
		[ -x "$bin" ] || continue
		name=$(basename "$bin")
		case "$bin" in build/release/*) name=release-$name ;; esac
		out="$log_dir/$name.log"
		start=$(date +%s)
		"$bin" >"$out" 2>&1
		rc=$?
		ok=$(grep -c '^\[       OK \]' "$out")
		bad=$(grep -c '^\[  FAILED  \] [a-z_]' "$out")
		skip=$(grep -c '^\[  SKIPPED \] [a-z_]' "$out")
		passed=$((passed + ok))
		skipped=$((skipped + skip))
		if [ "$bad" -gt 0 ] || [ $rc -ne 0 ]; then
			failed=$((failed + (bad > 0 ? bad : 1)))
			failures+=("$name (see $out)")
			echo "FAIL: unit/$name ($ok ok, $bad failed, exit $rc, $(($(date +%s) - start))s)"
			grep -E '^\[  FAILED  \]|ERROR|error:|runtime error' "$out" | head -20 | sed 's/^/    /'
		else
			echo "PASS: unit/$name ($ok tests, $skip skipped, $(($(date +%s) - start))s)"
		fi
	done
}

run_script_suite() { # run_script_suite SCRIPT
	local script=$1 line
	while IFS= read -r line; do
		echo "$line"
		case "$line" in
		PASS:*) record PASS "${line#PASS: }" ;;
		FAIL:*) record FAIL "${line#FAIL: }" ;;
		SKIP:*) record SKIP "${line#SKIP: }" ;;
		esac
	done < <(bash "$script" 2>&1)
}

t0=$(date +%s)
for s in "${suites[@]}"; do
	echo "== $s tests"
	ts=$(date +%s)
	case "$s" in
	unit) run_unit ;;
	guests) run_script_suite tests/integration/test_guests.sh ;;
	api) run_script_suite tests/integration/test_api.sh ;;
	sandbox) run_script_suite tests/integration/test_sandbox.sh ;;
	jail) run_script_suite tests/integration/test_jail.sh ;;
	linux) run_script_suite tests/integration/test_linux.sh ;;
	virtio) run_script_suite tests/integration/test_virtio.sh ;;
	net) run_script_suite tests/integration/test_net.sh ;;
	blk) run_script_suite tests/integration/test_blk.sh ;;
	vsock) run_script_suite tests/integration/test_vsock.sh ;;
	balloon) run_script_suite tests/integration/test_balloon.sh ;;
	memory) run_script_suite tests/integration/test_memory.sh ;;
	snapshot) run_script_suite tests/integration/test_snapshot.sh ;;
	clone) run_script_suite tests/integration/test_clone.sh ;;
	migrate)
		run_script_suite tests/integration/test_migrate.sh
		run_script_suite tests/integration/test_migrate_linux.sh
		;;
	unprivileged) run_script_suite tests/integration/test_unprivileged.sh ;;
	fuzz) run_script_suite tests/fuzz/run-fuzz.sh ;;
	fresh) run_script_suite tests/fresh/check-fresh-machine.sh ;;
	*) echo "unknown suite '$s' (unit, guests, api, sandbox, jail, unprivileged, snapshot, clone, migrate, linux, virtio, blk, vsock, net, balloon, memory, fuzz, fresh)"; exit 2 ;;
	esac
	echo "== $s tests took $(($(date +%s) - ts))s"
done

echo "== test suite took $(($(date +%s) - t0))s"
if [ ${#failures[@]} -gt 0 ]; then
	echo "failed:"
	printf '  %s\n' "${failures[@]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
