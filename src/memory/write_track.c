#include "memory/write_track.h"

#include <errno.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lib/util.h"

#define PAGE 4096ull
#define DIV_ROUND_UP(n, d) (((n) + (d)-1) / (d))

uint64_t write_track_pages(const struct guest_mem_region *r)
{
	return DIV_ROUND_UP(r->size, PAGE);
}

uint64_t write_track_words(const struct guest_mem_region *r)
{
	return DIV_ROUND_UP(write_track_pages(r), 64);
}

static int membarrier_registered = -ENOSYS;
static pthread_once_t membarrier_once = PTHREAD_ONCE_INIT;

static void register_membarrier(void)
{
	membarrier_registered =
		syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) < 0 ? -errno : 0;
}

/*
 * Makes every thread of vmon execute a full memory barrier before this returns. A writer stores
 * its bytes, then reads the switch with no fence of its own (guest_mem_wrote()); with this
 * barrier after the switch is turned on, either the writer reads it on and marks the page, or
 * its bytes are visible to whatever the migration reads next: the write is never missed.
 */
static int barrier_all_threads(void)
{
	pthread_once(&membarrier_once, register_membarrier);
	if (membarrier_registered)
		return membarrier_registered;
	return syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) < 0 ? -errno : 0;
}

int write_track_start(struct guest_mem *mem)
{
	for (int i = 0; i < mem->nregions; i++) {
		struct guest_mem_region *r = &mem->regions[i];
		uint64_t words = write_track_words(r);
		if (!r->written) {
			r->written = calloc(words, sizeof(uint64_t));
			if (!r->written)
				return -ENOMEM;
		} else {
			for (uint64_t w = 0; w < words; w++)
				__atomic_store_n(&r->written[w], 0, __ATOMIC_RELAXED);
		}
	}
	/* Release: a writer that reads the switch on also sees the bitmaps. */
	__atomic_store_n(&mem->tracking_writes, true, __ATOMIC_SEQ_CST);
	int rc = barrier_all_threads();
	if (rc)
		__atomic_store_n(&mem->tracking_writes, false, __ATOMIC_SEQ_CST);
	return rc;
}

void write_track_stop(struct guest_mem *mem)
{
	__atomic_store_n(&mem->tracking_writes, false, __ATOMIC_SEQ_CST);
}

void write_track_mark(const struct guest_mem *mem, const void *host, uint64_t len)
{
	const uint8_t *p = host;
	for (int i = 0; i < mem->nregions && len; i++) {
		const struct guest_mem_region *r = &mem->regions[i];
		if (p < r->host || p >= r->host + r->size || !r->written)
			continue;
		uint64_t off = (uint64_t)(p - r->host);
		uint64_t first = off / PAGE, last = (off + MIN(len, r->size - off) - 1) / PAGE;
		for (uint64_t page = first; page <= last;) {
			uint64_t word = page / 64, bit = page % 64;
			uint64_t n = MIN(64 - bit, last - page + 1);
			uint64_t mask = (n == 64 ? ~0ull : ((1ull << n) - 1)) << bit;
			/*
			 * Always the read-modify-write, even when the bits look set: a take may clear them
			 * now, and only this release makes the bytes visible to the one that takes the bit.
			 */
			__atomic_fetch_or(&r->written[word], mask, __ATOMIC_RELEASE);
			page += n;
		}
		return;
	}
}

uint64_t write_track_take(const struct guest_mem *mem, int region, uint64_t *bits)
{
	const struct guest_mem_region *r = &mem->regions[region];
	if (!r->written)
		return 0;
	uint64_t count = 0, words = write_track_words(r);
	for (uint64_t w = 0; w < words; w++) {
		if (!__atomic_load_n(&r->written[w], __ATOMIC_RELAXED))
			continue;
		/* Acquire: pairs with the writer's release, so the bytes behind each bit are visible. */
		uint64_t v = __atomic_exchange_n(&r->written[w], 0, __ATOMIC_ACQUIRE);
		bits[w] |= v;
		count += (uint64_t)__builtin_popcountll(v);
	}
	return count;
}

void write_track_release(struct guest_mem *mem)
{
	for (int i = 0; i < GUEST_MEM_MAX_REGIONS; i++) {
		free(mem->regions[i].written);
		mem->regions[i].written = NULL;
	}
	mem->tracking_writes = false;
}
