/*
 * Dirty-page tracking for live migration's pre-copy: which pages of guest RAM changed since the
 * last look, from both writers a guest has: its vCPUs (KVM's dirty log, behind struct
 * dirty_log_ops so the logic runs against a fake in tests) and vmon itself (write_track.h).
 *
 * Used by one thread, the one running the migration; the guest and vmon's devices keep writing
 * while it runs.
 */
#ifndef VMON_MEMORY_DIRTY_LOG_H
#define VMON_MEMORY_DIRTY_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memory/guest_mem.h"

/* KVM's side; slot i is RAM region i (as vm.c registers it). */
struct dirty_log_ops {
	/* Turns KVM's dirty logging of slot i on or off (KVM_MEM_LOG_DIRTY_PAGES). 0 or -errno. */
	int (*set_logging)(void *ctx, const struct guest_mem *mem, int slot, bool on);
	/*
	 * Writes into bits (write_track_words() words, overwriting them) the pages of slot i the
	 * vCPUs wrote since logging started or the last fetch, and re-arms logging for them: when
	 * this returns, a later vCPU write to such a page is reported by the next fetch. 0 or -errno.
	 */
	int (*fetch)(void *ctx, const struct guest_mem *mem, int slot, uint64_t *bits);
};

/* One round's dirty pages: bit p of bits[i] is page p of RAM region i. */
struct dirty_pages {
	uint64_t *bits[GUEST_MEM_MAX_REGIONS];
	uint64_t count; /* pages set, all regions */
};

struct dirty_log {
	struct guest_mem *mem;
	const struct dirty_log_ops *ops;
	void *ctx;
	struct dirty_pages pages; /* the last fetch's result, owned here */
	int logging;              /* slots whose KVM logging is on */
	bool first;               /* the next fetch is the first since start */
};

/*
 * Starts both logs: KVM's for every slot, and vmon's own. The first fetch then reports every
 * page of RAM that may hold data (nothing has been sent yet; present_pages.h: pages never
 * touched, or given back by the balloon, are holes that read as zeros, and reading them would
 * make the host back them); each later one, the pages written since the one before. Returns 0
 * or -errno with one sentence in err; nothing is left on after a failure.
 */
int dirty_log_start(struct dirty_log *dl, struct guest_mem *mem, const struct dirty_log_ops *ops, void *ctx,
		    char *err, size_t errlen);

/*
 * The pages written since the last fetch (every page that may hold data, the first time), from
 * the vCPUs and from vmon, in one bitmap per region; both logs are reset for them. Copy a page
 * only after this returns: a page written at any moment during or after the fetch is then either
 * in this result with the write included in the copy, or in the next result. *out points into dl and
 * stays valid until the next fetch or dirty_log_stop(). 0 or -errno with a sentence in err.
 */
int dirty_log_fetch(struct dirty_log *dl, const struct dirty_pages **out, char *err, size_t errlen);

/* Turns both logs off and frees the result; safe after a failed start, and twice. */
void dirty_log_stop(struct dirty_log *dl);

/*
 * acc |= add, for pages of mem (acc zeroed by the caller the first time; its bitmaps are
 * allocated then): a set that outlives the next fetch. 0 or -ENOMEM. Free with dirty_pages_free.
 */
int dirty_pages_merge(struct dirty_pages *acc, const struct guest_mem *mem, const struct dirty_pages *add);
void dirty_pages_free(struct dirty_pages *p);

/*
 * Walks the runs of consecutive dirty pages: *cursor starts at 0; each call gives the next run
 * as a guest-physical address and a page count and returns true, or false when there is none.
 */
bool dirty_pages_next_run(const struct guest_mem *mem, const struct dirty_pages *p, uint64_t *cursor,
			  uint64_t *gpa, uint64_t *count);

#endif
