/*
 * virtio-balloon (virtio 1.2 section 5.5): lets the host take memory back from the guest.
 *
 * Target: the API sets how much memory the guest is left with (QEMU's convention: a target of
 * 128 MiB on a 256 MiB guest puts 128 MiB in the balloon). The device shows it to the driver as
 * num_pages, the 4 KiB pages it wants in the balloon; the driver inflates (gives pages, inflateq)
 * or deflates (takes them back, deflateq) and writes how many it holds to `actual`.
 *
 * Queues, in the order the driver numbers them (an absent queue takes no index, so the
 * reporting queue is 2 without statistics): inflateq, deflateq, statsq (when stats_interval > 0),
 * reporting_vq (when free page reporting is on). Inflated pages and reported ranges are
 * discarded at once (guest_mem_discard); with hugetlb RAM an inflated 2 MiB page goes back once
 * all its 4 KiB pages are in the balloon (memory/hugepage_ledger.h). Every PFN and range is
 * checked against guest RAM; one outside it is skipped and counted, never acted on. Deflated
 * pages need nothing: the guest's next touch faults a zero page in.
 *
 * Statistics: the driver keeps one buffer on statsq; every stats_interval seconds the device
 * gives it back, the driver refills it and makes it available again, and the device reads it.
 */
#ifndef VMON_VIRTIO_VIRTIO_BALLOON_H
#define VMON_VIRTIO_VIRTIO_BALLOON_H

#include <stdint.h>

#include "config/config_balloon.h"
#include "virtio/virtio_pci.h"

/* Feature bits (virtio 1.2 5.5.3). */
#define VIRTIO_BALLOON_F_MUST_TELL_HOST 0
#define VIRTIO_BALLOON_F_STATS_VQ 1
#define VIRTIO_BALLOON_F_DEFLATE_ON_OOM 2
#define VIRTIO_BALLOON_F_FREE_PAGE_HINT 3
#define VIRTIO_BALLOON_F_PAGE_POISON 4
#define VIRTIO_BALLOON_F_REPORTING 5

#define VIRTIO_BALLOON_PAGE_SIZE 4096u
#define VIRTIO_BALLOON_QUEUE_SIZE 128

/* Statistics tags (virtio 1.2 5.5.6.3, and the later reclaim counters Linux sends). */
enum virtio_balloon_stat {
	VIRTIO_BALLOON_S_SWAP_IN = 0,
	VIRTIO_BALLOON_S_SWAP_OUT,
	VIRTIO_BALLOON_S_MAJFLT,
	VIRTIO_BALLOON_S_MINFLT,
	VIRTIO_BALLOON_S_MEMFREE,
	VIRTIO_BALLOON_S_MEMTOT,
	VIRTIO_BALLOON_S_AVAIL,
	VIRTIO_BALLOON_S_CACHES,
	VIRTIO_BALLOON_S_HTLB_PGALLOC,
	VIRTIO_BALLOON_S_HTLB_PGFAIL,
	VIRTIO_BALLOON_S_OOM_KILL,
	VIRTIO_BALLOON_S_ALLOC_STALL,
	VIRTIO_BALLOON_S_ASYNC_SCAN,
	VIRTIO_BALLOON_S_DIRECT_SCAN,
	VIRTIO_BALLOON_S_ASYNC_RECLAIM,
	VIRTIO_BALLOON_S_DIRECT_RECLAIM,
	VIRTIO_BALLOON_S_NR
};

/* The name of a statistic with its unit ("memfree_bytes", "majflt"), as the API and metrics show it. */
const char *virtio_balloon_stat_name(enum virtio_balloon_stat s);

struct virtio_balloon_info {
	uint64_t ram_bytes;
	uint64_t target_bytes;      /* memory the guest should be left with */
	uint64_t actual_bytes;      /* memory the guest is left with, as the driver reports it */
	uint64_t inflated_pages;    /* pages the guest gave (inflateq), valid ones */
	uint64_t deflated_pages;    /* pages the guest took back (deflateq) */
	uint64_t discarded_bytes;   /* bytes returned to the host: inflated pages and reported ranges */
	uint64_t reported_bytes;    /* bytes the guest reported free (reporting_vq) */
	uint64_t invalid_pfns;      /* PFNs or ranges outside guest RAM, skipped */
	uint64_t stats[VIRTIO_BALLOON_S_NR];
	uint32_t stats_valid;       /* bit s set: stats[s] was reported by the guest */
	uint64_t stats_updates;     /* statistics buffers read */
};

struct virtio_balloon;

/* Creates the device and plugs it into deps->pci. Returns 0 or a negative errno (logged). */
int virtio_balloon_create(const struct virtio_pci_deps *deps, const struct balloon_config *cfg,
			  struct virtio_balloon **out);
void virtio_balloon_destroy(struct virtio_balloon *b);

/*
 * Sets the memory the guest is left with; a multiple of 4 KiB, at most the guest's RAM.
 * Returns 0 or -EINVAL. Any thread.
 */
int virtio_balloon_set_target(struct virtio_balloon *b, uint64_t target_bytes);
/* A consistent copy of the device's figures. Any thread. */
void virtio_balloon_get_info(struct virtio_balloon *b, struct virtio_balloon_info *out);

#endif
