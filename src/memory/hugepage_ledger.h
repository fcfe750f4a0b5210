/*
 * The balloon's account of hugetlb guest RAM (--memory SIZE,hugepages=on): the guest gives up
 * 4 KiB pages one by one (Linux's driver at most 1 MiB per request), but the host can only take
 * back whole 2 MiB pages. The ledger remembers which 4 KiB pages of each 2 MiB page the guest
 * has given and not taken back, and gives the 2 MiB page back once all 512 are given.
 * It is host-side bookkeeping, not device state: a VM restored from a snapshot runs on 4 KiB
 * pages, where every page given goes back at once.
 */
#ifndef VMON_MEMORY_HUGEPAGE_LEDGER_H
#define VMON_MEMORY_HUGEPAGE_LEDGER_H

#include <stdint.h>

#include "memory/guest_mem.h"

struct hugepage_ledger {
	uint64_t *given;    /* one bit per 4 KiB page of RAM, by its offset in RAM; NULL: RAM is not hugetlb */
	uint64_t *returned; /* one bit per 2 MiB page: given back to the host and not touched since */
	uint64_t pages;
};

/* For hugetlb RAM allocates the ledger (0 or -ENOMEM); for any other RAM leaves it empty (0). */
int hugepage_ledger_init(struct hugepage_ledger *l, const struct guest_mem *mem);
void hugepage_ledger_free(struct hugepage_ledger *l);
/* A new driver starts with an empty balloon: nothing is given any more. */
void hugepage_ledger_clear(struct hugepage_ledger *l);

/*
 * The guest gave up [gpa, gpa+len), which lies in one RAM region: gives back to the host each
 * 2 MiB page all of whose 4 KiB pages are now given. Returns the bytes given back, or the
 * negative errno of guest_mem_discard.
 */
int64_t hugepage_ledger_give(struct hugepage_ledger *l, const struct guest_mem *mem, uint64_t gpa, uint64_t len);
/* The guest took [gpa, gpa+len) back (deflate): those pages are its own again. */
void hugepage_ledger_take(struct hugepage_ledger *l, const struct guest_mem *mem, uint64_t gpa, uint64_t len);

#endif
