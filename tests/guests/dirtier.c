/*
 * The auto-converge test guest: rewrites one word in every page of 16 MiB over and over, much
 * faster than a slow migration link carries it, so a pre-copy migration cannot converge without
 * throttling it. Prints "count: N" about every 2^28 TSC cycles, so a test sees it run.
 */
#include "guest.h"

#define DIRTY_BASE 0x2000000ULL /* 32 MiB, above the guest image */
#define DIRTY_PAGES 4096u
#define PRINT_CYCLES (1ULL << 28)

void guest_main(void *boot_params)
{
	(void)boot_params;
	uint64_t last = rdtsc(), count = 0;
	for (uint64_t pass = 1;; pass++) {
		for (uint64_t p = 0; p < DIRTY_PAGES; p++)
			*(volatile uint64_t *)(DIRTY_BASE + p * 4096) = pass ^ p;
		if (rdtsc() - last >= PRINT_CYCLES) {
			last = rdtsc();
			puts("count: ");
			put_dec(++count);
			putc('\n');
		}
	}
}
