#!/usr/bin/env bash
# Runs every libFuzzer target (build/fuzz/fuzz_*) for SECONDS each, JOBS at a time (default:
# the number of cores), starting from its committed seed corpus, and prints the executions and
# crashes per target and in total. New inputs go to build/fuzz-corpus/NAME (kept between
# campaigns); a crash, leak or timeout leaves its reproducer in build/fuzz-crashes/.
# Usage: scripts/fuzz-campaign.sh SECONDS [JOBS]     (exit status 1 if any target failed)
set -u
cd "$(dirname "$0")/.."
seconds=${1:?usage: scripts/fuzz-campaign.sh SECONDS [JOBS]}
jobs=${2:-$(nproc)}
mkdir -p build
if ! make -s -j"$jobs" fuzz >build/fuzz-build.log 2>&1; then
	echo "make fuzz failed (needs clang: scripts/install-deps.sh test):"
	tail -5 build/fuzz-build.log
	exit 1
fi
mkdir -p build/fuzz-logs build/fuzz-crashes

run_one() { # run_one BIN
	local bin=$1 name
	name=$(basename "$bin")
	local corpus=build/fuzz-corpus/$name seeds=tests/fuzz/corpus_${name#fuzz_}
	mkdir -p "$corpus"
	"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="build/fuzz-crashes/$name-" "$corpus" $([ -d "$seeds" ] && echo "$seeds") \
		>"build/fuzz-logs/$name.log" 2>&1
	echo $? >"build/fuzz-logs/$name.rc"
}

for bin in build/fuzz/fuzz_*; do
	[ -x "$bin" ] && [ -f "$bin" ] || continue
	while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
		wait -n
	done
	run_one "$bin" &
done
wait

total_runs=0 total_crashes=0
printf '%-24s %14s %8s\n' target executions crashes
for bin in build/fuzz/fuzz_*; do
	[ -x "$bin" ] && [ -f "$bin" ] || continue
	name=$(basename "$bin")
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "build/fuzz-logs/$name.log" | tail -1)
	# libFuzzer stops at the first crash: one failed run is one crash, its input in fuzz-crashes.
	crashes=0
	[ "$(cat "build/fuzz-logs/$name.rc")" = 0 ] || crashes=1
	printf '%-24s %14s %8s\n' "$name" "${runs:-0}" "$crashes"
	total_runs=$((total_runs + ${runs:-0}))
	total_crashes=$((total_crashes + crashes))
done
printf '%-24s %14s %8s\n' total "$total_runs" "$total_crashes"
[ "$total_crashes" = 0 ] || { echo "reproducers: build/fuzz-crashes/, logs: build/fuzz-logs/"; exit 1; }
