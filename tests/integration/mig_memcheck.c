/*
 * Runs inside the Linux guest of tests/integration/test_migrate_linux.sh while it migrates:
 * keeps rewriting a buffer (64 MiB by default) with a pattern that changes every pass, and
 * before each pass checks that the whole buffer still holds the previous pass's pattern. A page
 * the migration lost, sent stale or sent to the wrong place shows up as a wrong word. Once a
 * second it prints the pass and the guest's wall-clock time, so the host can check that the
 * clock is right after the migration.
 *
 *   MEMCHECK pass N ok time=SECONDS.MILLISECONDS
 *   MEMCHECK CORRUPT pass N word W: got X, expected Y      (exit status 1)
 *   MEMCHECK stopped after N passes, no corruption          (on SIGTERM or SIGINT, exit 0)
 *
 * Built static by the test (the guest's initramfs has no C library).
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

/* The word at index i in pass gen: every word of every pass differs from the last pass's. */
static uint64_t pattern(uint64_t gen, uint64_t i)
{
	uint64_t z = gen * 0x9e3779b97f4a7c15ull + i;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double wall_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
	size_t words = mib * 1024 * 1024 / sizeof(uint64_t);
	uint64_t *buf = mmap(NULL, words * sizeof(uint64_t), PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (buf == MAP_FAILED || words == 0) {
		printf("MEMCHECK cannot map %zu MiB\n", mib);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGTERM, on_stop);
	signal(SIGINT, on_stop);
	double last = 0;
	uint64_t gen;
	for (gen = 1; !stop; gen++) {
		if (gen > 1)
			for (size_t i = 0; i < words; i++)
				if (buf[i] != pattern(gen - 1, i)) {
					printf("MEMCHECK CORRUPT pass %llu word %zu: got %016llx, expected %016llx\n",
					       (unsigned long long)gen, i, (unsigned long long)buf[i],
					       (unsigned long long)pattern(gen - 1, i));
					return 1;
				}
		for (size_t i = 0; i < words; i++)
			buf[i] = pattern(gen, i);
		double now = wall_now();
		if (now - last >= 1.0) {
			printf("MEMCHECK pass %llu ok time=%.3f\n", (unsigned long long)gen, now);
			last = now;
		}
	}
	printf("MEMCHECK stopped after %llu passes, no corruption\n", (unsigned long long)(gen - 1));
	return 0;
}
