/* What every fuzz target shares: a harness check that stops the run with its reason. */
#ifndef VMON_TESTS_FUZZ_FUZZ_COMMON_H
#define VMON_TESTS_FUZZ_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property the code under test broke, or a harness set-up failure: libFuzzer keeps the input. */
static inline void fuzz_check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz check failed: %s\n", what);
		abort();
	}
}

#endif
