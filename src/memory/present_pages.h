/*
 * Which pages of guest RAM may hold data, so untouched RAM is neither read nor written: reading
 * a memfd hole or an untouched hugepage through the mapping allocates it, so a scan of all of a
 * 1 GiB guest's RAM would make the host back all 1 GiB (and fill in what the balloon gave back).
 *  - memfd RAM: the memfd's data extents (SEEK_DATA/SEEK_HOLE).
 *  - RAM mapped privately from a snapshot file: pages the guest wrote since (anonymous pages in
 *    /proc/self/pagemap) and the file's own data extents.
 *  - private anonymous RAM (merge=on) and hugetlb RAM: the pages present or swapped out in
 *    /proc/self/pagemap; hugetlbfs answers SEEK_DATA with "all of it is data", which says nothing.
 *  - without the page map: every page.
 * A page that may hold data may still be all zeros: the callers check.
 */
#ifndef VMON_MEMORY_PRESENT_PAGES_H
#define VMON_MEMORY_PRESENT_PAGES_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "memory/guest_mem.h"

/* Pages present_pages_scan() answers for at once: 2 MiB. */
#define PRESENT_PAGES_CHUNK 512u

struct present_pages {
	const struct guest_mem *mem;
	int pagemap_fd;
	off_t data_start, data_end; /* the current data extent of mem->fd, [start, end) */
};

void present_pages_open(struct present_pages *pp, const struct guest_mem *mem);
/*
 * Sets want[i] for each of the n pages (n <= PRESENT_PAGES_CHUNK) from byte offset o of region
 * reg that may hold data. Calls go forward through RAM (the extent cache only moves forward).
 */
void present_pages_scan(struct present_pages *pp, const struct guest_mem_region *reg, uint64_t o, unsigned int n,
			bool *want);
void present_pages_close(struct present_pages *pp);

/*
 * Sets in bits (one bit per 4 KiB page of region r, write_track.h's layout) every page that may
 * hold data, leaving the other bits as they are.
 */
void present_pages_mark(const struct guest_mem *mem, int r, uint64_t *bits);

#endif
