#!/usr/bin/env bash
# Builds the libFuzzer targets (make fuzz, needs clang) and runs each for a bounded time,
# starting from its seed corpus. Prints "PASS: fuzz/NAME", "FAIL: fuzz/NAME: why" or "SKIP: ...".
#   VMON_FUZZ_SECONDS   time per target (default 8: the suite takes about 3 minutes)
cd "$(dirname "$0")/../.."
seconds=${VMON_FUZZ_SECONDS:-8}
log_dir=build/test-logs
mkdir -p "$log_dir"

if ! command -v "${FUZZ_CC:-clang}" >/dev/null 2>&1; then
	echo "SKIP: fuzz: clang is not installed (apt-get install clang)"
	exit 0
fi
if ! make -s -j2 fuzz >"$log_dir/fuzz-build.log" 2>&1; then
	echo "FAIL: fuzz/build: make fuzz failed: $(tail -5 "$log_dir/fuzz-build.log" | tr '\n' ' ')"
	exit 0
fi

for bin in build/fuzz/fuzz_*; do
	[ -x "$bin" ] || continue
	name=$(basename "$bin")
	seeds=tests/fuzz/corpus_${name#fuzz_}
	work=$(mktemp -d /tmp/vmon-fuzz.XXXXXX)
	log="$log_dir/$name.log"
	# New inputs go to the scratch corpus, so the checked-in seeds stay as they are.
	"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$log_dir/$name-" "$work" $([ -d "$seeds" ] && echo "$seeds") >"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rm -rf "$work"
	if [ $rc -eq 0 ]; then
		echo "PASS: fuzz/$name (${runs:-?} inputs in ${seconds}s)"
	else
		echo "FAIL: fuzz/$name: libFuzzer found a crash, leak or hang (exit $rc); reproducer and log in $log_dir/$name-* and $log"
	fi
done
