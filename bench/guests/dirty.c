/* Live-migration guest: keeps a working set of memory dirty at a fixed rate.
 * Command line (all optional):
 *   dirty_mib=N     working set in MiB from 32 MiB up (default 32), clamped to the RAM there
 *   dirty_mib_s=N   MiB of pages dirtied per second (default 64; 0: write once, then idle)
 *   tsc_khz=N       the TSC's rate, which paces the writes (default 2000000: give the host's)
 * It writes one 64-bit word in every page of the working set once at full speed and prints
 * "dirty: ready", then rewrites one word per page, page after page round the set, at the rate
 * asked, and prints "count: N" about once a second (N = seconds since ready), so that the host
 * sees it run on whichever side of a migration it is.
 * Runs the same under vmon (entered at _start) and QEMU (entered through pvh.S). */
#include "cmdline.h"
#include "guest.h"

#define PAGE 4096ull
#define MIB (1024ull * 1024)
#define DIRTY_BASE (32 * MIB) /* above the image (linked at 16 MiB) and its stack */
#define FALLBACK_RAM_END (128 * MIB) /* when no memory map is found: the bench's smallest guest */
#define E820_RAM 1
#define MAX_LAG_MS 10 /* a vCPU held off longer (a pause, a migration's switch) does not catch up */

/* boot_params (Linux boot protocol, vmon) and hvm_start_info (PVH, QEMU) memory maps. */
#define BP_E820_ENTRIES 0x1e8
#define BP_E820_TABLE 0x2d0
#define BP_E820_ENTRY_SIZE 20
#define PVH_VERSION 4
#define PVH_MEMMAP_PADDR 40
#define PVH_MEMMAP_ENTRIES 48
#define PVH_MEMMAP_ENTRY_SIZE 24

/* The end of the RAM range that holds addr, from either boot protocol's map; 0 when unknown. */
static uint64_t ram_end_above(void *boot_params, uint64_t addr)
{
	const uint8_t *table = 0;
	uint32_t n = 0, size = 0;
	if (pvh_start_info) {
		const uint8_t *si = (const uint8_t *)pvh_start_info;
		if (*(const uint32_t *)si == PVH_START_INFO_MAGIC && *(const uint32_t *)(si + PVH_VERSION) >= 1) {
			table = (const uint8_t *)*(const uint64_t *)(si + PVH_MEMMAP_PADDR);
			n = *(const uint32_t *)(si + PVH_MEMMAP_ENTRIES);
			size = PVH_MEMMAP_ENTRY_SIZE;
		}
	} else if (boot_params) {
		table = (const uint8_t *)boot_params + BP_E820_TABLE;
		n = *((const uint8_t *)boot_params + BP_E820_ENTRIES);
		size = BP_E820_ENTRY_SIZE;
	}
	for (uint32_t i = 0; table && i < n && i < 128; i++) {
		const uint8_t *e = table + (uint64_t)i * size;
		uint64_t base = *(const uint64_t *)e, len = *(const uint64_t *)(e + 8);
		if (*(const uint32_t *)(e + 16) == E820_RAM && base <= addr && addr < base + len)
			return base + len;
	}
	return 0;
}

static inline void dirty_page(uint64_t page, uint64_t value)
{
	*(volatile uint64_t *)(DIRTY_BASE + page * PAGE) = value;
}

void guest_main(void *boot_params)
{
	const char *cmdline = bench_cmdline(boot_params);
	uint64_t mib = bench_cmdline_u64(cmdline, "dirty_mib", 32);
	uint64_t rate_mib = bench_cmdline_u64(cmdline, "dirty_mib_s", 64);
	uint64_t khz = bench_cmdline_u64(cmdline, "tsc_khz", 2000000);
	uint64_t end = ram_end_above(boot_params, DIRTY_BASE);
	if (!end)
		end = FALLBACK_RAM_END;
	if (end <= DIRTY_BASE + MIB)
		guest_fail("dirty: no RAM above 32 MiB for the working set");
	if (mib > (end - DIRTY_BASE) / MIB)
		mib = (end - DIRTY_BASE) / MIB;
	if (mib == 0)
		mib = 1;
	if (khz == 0)
		khz = 1;
	uint64_t pages = mib * MIB / PAGE, pages_per_s = rate_mib * MIB / PAGE;

	puts("dirty: ");
	put_dec(mib);
	puts(" MiB from 32 MiB at ");
	put_dec(rate_mib);
	puts(" MiB/s, tsc_khz=");
	put_dec(khz);
	putc('\n');
	for (uint64_t p = 0; p < pages; p++)
		dirty_page(p, p);
	puts("dirty: ready\n");

	/* Every millisecond of TSC time earns pages_per_s thousandths of a page: exact for any rate,
	 * without a division in the loop or a product that could overflow. */
	uint64_t next = rdtsc() + khz, credit = 0, page = 0, pass = 1, ms = 0, count = 0;
	for (;;) {
		uint64_t now = rdtsc();
		if ((int64_t)(now - next) < 0) {
			__asm__ volatile("pause");
			continue;
		}
		if (now - next > MAX_LAG_MS * khz)
			next = now;
		next += khz;
		credit += pages_per_s;
		for (; credit >= 1000; credit -= 1000) {
			dirty_page(page, pass ^ page);
			if (++page == pages)
				page = 0, pass++;
		}
		if (++ms % 1000 == 0) {
			puts("count: ");
			put_dec(++count);
			putc('\n');
		}
	}
}
