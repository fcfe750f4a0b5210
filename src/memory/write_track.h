/*
 * Pages of guest RAM that vmon itself writes (virtio rings and buffers, disk reads, received
 * packets, the instruction emulator, discarded balloon pages): KVM's dirty log sees only the
 * vCPUs' writes, so migration needs this second log or a migrated guest silently loses what a
 * device wrote. One bit per 4 KiB page of each RAM region, set by guest_mem_wrote() (any
 * thread, atomically) while tracking is on, taken by the one thread that runs the migration.
 */
#ifndef VMON_MEMORY_WRITE_TRACK_H
#define VMON_MEMORY_WRITE_TRACK_H

#include <stdint.h>

#include "memory/guest_mem.h"

/* Pages in region r, and the 64-bit words of a bitmap that covers them. */
uint64_t write_track_pages(const struct guest_mem_region *r);
uint64_t write_track_words(const struct guest_mem_region *r);

/*
 * Starts marking with every bit clear. Returns 0, -ENOMEM, or the -errno of membarrier() when
 * the kernel cannot make the switch visible to writers (Linux before 4.14).
 */
int write_track_start(struct guest_mem *mem);
/* Stops marking; the bitmaps stay allocated (a writer may still be finishing a mark). */
void write_track_stop(struct guest_mem *mem);
/*
 * ORs into bits (write_track_words() words) the pages of region i written since the last
 * take, and clears them in the same atomic exchange: a page written during the take is
 * reported by this take or the next, never by neither. Returns the pages it reported.
 */
uint64_t write_track_take(const struct guest_mem *mem, int region, uint64_t *bits);
/* Frees the bitmaps (guest_mem_destroy(), or a test that built its struct guest_mem itself). */
void write_track_release(struct guest_mem *mem);

#endif
