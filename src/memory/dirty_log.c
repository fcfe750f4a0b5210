#include "memory/dirty_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory/present_pages.h"
#include "memory/write_track.h"

int dirty_log_start(struct dirty_log *dl, struct guest_mem *mem, const struct dirty_log_ops *ops, void *ctx,
		    char *err, size_t errlen)
{
	memset(dl, 0, sizeof(*dl));
	dl->mem = mem;
	dl->ops = ops;
	dl->ctx = ctx;
	dl->first = true;
	for (int i = 0; i < mem->nregions; i++) {
		dl->pages.bits[i] = calloc(write_track_words(&mem->regions[i]), sizeof(uint64_t));
		if (!dl->pages.bits[i]) {
			dirty_log_stop(dl);
			snprintf(err, errlen, "not enough memory for the dirty-page bitmaps of %llu MiB of RAM",
				 (unsigned long long)(mem->ram_size >> 20));
			return -ENOMEM;
		}
	}
	/* vmon's log first: a device write made while KVM's logging turns on is then already seen. */
	int rc = write_track_start(mem);
	if (rc) {
		dirty_log_stop(dl);
		snprintf(err, errlen,
			 "cannot track vmon's own writes into guest memory (membarrier: %s): live migration needs "
			 "Linux 4.14 or later",
			 strerror(-rc));
		return rc;
	}
	for (int i = 0; i < mem->nregions; i++) {
		rc = ops->set_logging(ctx, mem, i, true);
		if (rc) {
			dirty_log_stop(dl);
			snprintf(err, errlen, "KVM refused to log the writes to guest memory region %d (%llu MiB): %s", i,
				 (unsigned long long)(mem->regions[i].size >> 20), strerror(-rc));
			return rc;
		}
		dl->logging = i + 1;
	}
	return 0;
}

/*
 * Why no write is lost. For each log, the bit of a page is cleared only by the fetch that
 * reports it, and the caller copies pages only after the fetch returns:
 * - KVM re-arms (write-protects) a page in the same call that reports and clears its bit (or in
 *   KVM_CLEAR_DIRTY_LOG, before ops->fetch returns): a vCPU write after that sets the bit again
 *   for the next fetch; one before it is in memory when the page is copied.
 * - vmon's writers store their bytes, then set the bit with a release; write_track_take()
 *   exchanges each word with zero with an acquire. A bit the exchange takes comes with the bytes
 *   behind it; a bit set after the exchange stays for the next fetch.
 * The two logs are fetched one after the other; a page written between them lands in either
 * this round or the next, which is all pre-copy needs (the last round runs with the guest and
 * the devices stopped, so it reports whatever is left).
 */
int dirty_log_fetch(struct dirty_log *dl, const struct dirty_pages **out, char *err, size_t errlen)
{
	struct guest_mem *mem = dl->mem;
	dl->pages.count = 0;
	for (int i = 0; i < mem->nregions; i++) {
		const struct guest_mem_region *r = &mem->regions[i];
		uint64_t *bits = dl->pages.bits[i], words = write_track_words(r), pages = write_track_pages(r);
		memset(bits, 0, words * sizeof(uint64_t));
		int rc = dl->ops->fetch(dl->ctx, mem, i, bits);
		if (rc) {
			snprintf(err, errlen, "KVM would not give the dirty-page log of guest memory region %d: %s", i,
				 strerror(-rc));
			return rc;
		}
		write_track_take(mem, i, bits);
		/*
		 * The first round: the pages that may hold data, instead of what the logs said (KVM
		 * with KVM_DIRTY_LOG_INITIALLY_SET reports every page, backed or not). Found after the
		 * logs were fetched and re-armed: a page written before is backed by now, one written
		 * after is in a log next time.
		 */
		if (dl->first) {
			memset(bits, 0, words * sizeof(uint64_t));
			present_pages_mark(mem, i, bits);
		}
		if (pages % 64)
			bits[words - 1] &= (1ull << (pages % 64)) - 1;
		for (uint64_t w = 0; w < words; w++)
			dl->pages.count += (uint64_t)__builtin_popcountll(bits[w]);
	}
	dl->first = false;
	*out = &dl->pages;
	return 0;
}

void dirty_log_stop(struct dirty_log *dl)
{
	if (!dl->mem)
		return;
	for (int i = 0; i < dl->logging; i++)
		dl->ops->set_logging(dl->ctx, dl->mem, i, false);
	dl->logging = 0;
	write_track_stop(dl->mem);
	for (int i = 0; i < GUEST_MEM_MAX_REGIONS; i++) {
		free(dl->pages.bits[i]);
		dl->pages.bits[i] = NULL;
	}
	dl->mem = NULL;
}

int dirty_pages_merge(struct dirty_pages *acc, const struct guest_mem *mem, const struct dirty_pages *add)
{
	acc->count = 0;
	for (int i = 0; i < mem->nregions; i++) {
		uint64_t words = write_track_words(&mem->regions[i]);
		if (!acc->bits[i] && !(acc->bits[i] = calloc(words, sizeof(uint64_t))))
			return -ENOMEM;
		for (uint64_t w = 0; w < words; w++) {
			acc->bits[i][w] |= add->bits[i][w];
			acc->count += (uint64_t)__builtin_popcountll(acc->bits[i][w]);
		}
	}
	return 0;
}

void dirty_pages_free(struct dirty_pages *p)
{
	for (int i = 0; i < GUEST_MEM_MAX_REGIONS; i++) {
		free(p->bits[i]);
		p->bits[i] = NULL;
	}
	p->count = 0;
}

bool dirty_pages_next_run(const struct guest_mem *mem, const struct dirty_pages *p, uint64_t *cursor,
			  uint64_t *gpa, uint64_t *count)
{
	uint64_t base = 0; /* pages of the regions before region i */
	for (int i = 0; i < mem->nregions; i++) {
		const struct guest_mem_region *r = &mem->regions[i];
		uint64_t pages = write_track_pages(r);
		const uint64_t *bits = p->bits[i];
		for (uint64_t page = *cursor > base ? *cursor - base : 0; page < pages; page++) {
			if (!(bits[page / 64] >> (page % 64) & 1)) {
				if (!bits[page / 64] && page % 64 == 0)
					page += 63; /* a clear word: skip it */
				continue;
			}
			uint64_t end = page + 1;
			while (end < pages && (bits[end / 64] >> (end % 64) & 1))
				end++;
			*gpa = r->gpa + page * 4096;
			*count = end - page;
			*cursor = base + end;
			return true;
		}
		base += pages;
	}
	*cursor = base;
	return false;
}
