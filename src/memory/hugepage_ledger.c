#include "memory/hugepage_ledger.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"

#define SMALL (4 * KiB)
#define WORDS_PER_HUGE (GUEST_MEM_HUGE_PAGE / SMALL / 64) /* 8 words of 64 bits: 512 pages */

int hugepage_ledger_init(struct hugepage_ledger *l, const struct guest_mem *mem)
{
	memset(l, 0, sizeof(*l));
	if (mem->backing != GUEST_MEM_HUGETLB || mem->file_backed)
		return 0;
	l->pages = mem->ram_size / SMALL;
	l->given = calloc(l->pages / 64, sizeof(uint64_t)); /* RAM is whole 2 MiB pages: whole words */
	l->returned = calloc(l->pages / 512 / 64 + 1, sizeof(uint64_t));
	if (l->given && l->returned)
		return 0;
	hugepage_ledger_free(l);
	return -ENOMEM;
}

void hugepage_ledger_free(struct hugepage_ledger *l)
{
	free(l->given);
	free(l->returned);
	memset(l, 0, sizeof(*l));
}

void hugepage_ledger_clear(struct hugepage_ledger *l)
{
	if (!l->given)
		return;
	memset(l->given, 0, l->pages / 64 * sizeof(uint64_t));
	memset(l->returned, 0, (l->pages / 512 / 64 + 1) * sizeof(uint64_t));
}

/* The 4 KiB page number in RAM of gpa (its offset in the memfd), or UINT64_MAX outside RAM. */
static uint64_t page_of(const struct guest_mem *mem, uint64_t gpa)
{
	for (int i = 0; i < mem->nregions; i++) {
		const struct guest_mem_region *r = &mem->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size)
			return (r->fd_offset + (gpa - r->gpa)) / SMALL;
	}
	return UINT64_MAX;
}

/* Sets or clears the bits of the whole 4 KiB pages in [gpa, gpa+len); false if not all in RAM. */
static bool mark(struct hugepage_ledger *l, const struct guest_mem *mem, uint64_t gpa, uint64_t len, bool given)
{
	uint64_t start = ALIGN_UP(gpa, SMALL), end = ALIGN_DOWN(gpa + len, SMALL);
	if (!l->given || len == 0 || gpa + len < gpa || !gpa_to_host(mem, gpa, len))
		return false;
	for (uint64_t a = start; a < end; a += SMALL) {
		uint64_t p = page_of(mem, a), h = p / 512;
		if (given) {
			l->given[p / 64] |= 1ULL << (p % 64);
		} else {
			l->given[p / 64] &= ~(1ULL << (p % 64));
			l->returned[h / 64] &= ~(1ULL << (h % 64)); /* the guest uses that 2 MiB page again */
		}
	}
	return true;
}

static bool all_given(const struct hugepage_ledger *l, uint64_t first_page)
{
	for (uint64_t w = first_page / 64; w < first_page / 64 + WORDS_PER_HUGE; w++)
		if (l->given[w] != UINT64_MAX)
			return false;
	return true;
}

int64_t hugepage_ledger_give(struct hugepage_ledger *l, const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	if (!mark(l, mem, gpa, len, true))
		return -EFAULT;
	int64_t freed = 0;
	/* Regions start on 2 MiB boundaries: the 2 MiB pages around the range lie in its region. */
	for (uint64_t h = ALIGN_DOWN(gpa, GUEST_MEM_HUGE_PAGE); h < gpa + len; h += GUEST_MEM_HUGE_PAGE) {
		uint64_t first = page_of(mem, h), n = first / 512;
		if ((l->returned[n / 64] >> (n % 64)) & 1 || !all_given(l, first))
			continue; /* back with the host already (a page given twice), or still partly the guest's */
		int rc = guest_mem_discard(mem, h, GUEST_MEM_HUGE_PAGE);
		if (rc)
			return rc;
		l->returned[n / 64] |= 1ULL << (n % 64);
		freed += (int64_t)GUEST_MEM_HUGE_PAGE;
	}
	return freed;
}

void hugepage_ledger_take(struct hugepage_ledger *l, const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	mark(l, mem, gpa, len, false);
}
