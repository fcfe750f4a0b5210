#include "virtio/virtio_balloon.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/util.h"
#include "memory/hugepage_ledger.h"

#define COMP "virtio-balloon"
#define MAX_SEGMENTS (VIRTIO_BALLOON_QUEUE_SIZE + 1024) /* a ring chain, or an indirect table */
#define PCI_CLASS_OTHER 0xff0000
#define CONFIG_SIZE 8      /* num_pages, actual: the fields of the features we offer */
#define PFN_BATCH 256      /* PFNs read from a chain at a time (what Linux puts in one buffer) */
#define STAT_ENTRY_SIZE 10 /* le16 tag, le64 value, packed */
#define STATS_MAX 64       /* entries read from one statistics buffer; more are ignored */

enum queue_role { ROLE_NONE, ROLE_INFLATE, ROLE_DEFLATE, ROLE_STATS, ROLE_REPORTING };
#define MAX_QUEUES 4

struct virtio_balloon {
	struct virtio_device *vdev;
	struct virtio_device_ops ops; /* features and queue count depend on the configuration */
	struct balloon_config cfg;
	uint64_t ram_bytes;
	struct event_timer *stats_timer;

	_Atomic uint32_t num_pages; /* pages the host wants in the balloon */
	_Atomic uint32_t actual;    /* pages the driver says it holds */

	/* Loop thread. */
	enum queue_role role[MAX_QUEUES];
	bool stats_held;     /* the driver's statistics buffer is ours until the next tick */
	uint16_t stats_head;
	struct iovec iov[MAX_SEGMENTS];

	struct hugepage_ledger ledger; /* with hugepages=on: the 4 KiB pages given of each 2 MiB page */

	pthread_mutex_t lock; /* the figures below, read by the API thread */
	struct virtio_balloon_info info;
};

static const char *const stat_names[VIRTIO_BALLOON_S_NR] = {
	"swap_in_bytes", "swap_out_bytes", "majflt", "minflt", "memfree_bytes", "memtot_bytes", "avail_bytes",
	"caches_bytes", "htlb_pgalloc", "htlb_pgfail", "oom_kill", "alloc_stall", "async_scan", "direct_scan",
	"async_reclaim", "direct_reclaim",
};

const char *virtio_balloon_stat_name(enum virtio_balloon_stat s)
{
	return (unsigned int)s < VIRTIO_BALLOON_S_NR ? stat_names[s] : "unknown";
}

static void count(struct virtio_balloon *b, uint64_t *field, uint64_t n)
{
	pthread_mutex_lock(&b->lock);
	*field += n;
	pthread_mutex_unlock(&b->lock);
}

/*
 * Gives [gpa, gpa+len) back to the host; given: pages put in the balloon, which with hugepages go
 * back once their whole 2 MiB page is given. Counts the bytes the host really got back.
 */
static void discard(struct virtio_balloon *b, uint64_t gpa, uint64_t len, bool given)
{
	const struct guest_mem *mem = virtio_pci_mem(b->vdev);
	int64_t freed;
	if (given && b->ledger.given) {
		freed = hugepage_ledger_give(&b->ledger, mem, gpa, len);
	} else {
		int rc = guest_mem_discard(mem, gpa, len);
		freed = rc ? rc : (int64_t)guest_mem_discardable(mem, gpa, len);
	}
	if (freed < 0) {
		static struct log_ratelimit rl;
		log_warn_ratelimited(&rl, COMP, "cannot return guest memory 0x%llx+0x%llx to the host: %s",
				     (unsigned long long)gpa, (unsigned long long)len, strerror((int)-freed));
		return;
	}
	count(b, &b->info.discarded_bytes, (uint64_t)freed);
}

static void invalid(struct virtio_balloon *b, const char *what, uint64_t gpa)
{
	static struct log_ratelimit rl;
	log_warn_ratelimited(&rl, COMP, "the guest gave %s 0x%llx outside its RAM: ignored", what,
			     (unsigned long long)gpa);
	count(b, &b->info.invalid_pfns, 1);
}

/* Inflate: discards each valid page, runs of consecutive PFNs in one call. */
static void inflate_chain(struct virtio_balloon *b, const struct vq_chain *c)
{
	const struct guest_mem *mem = virtio_pci_mem(b->vdev);
	uint64_t run_start = 0, run_pages = 0, valid = 0;
	uint32_t pfns[PFN_BATCH];
	size_t off = 0, n;
	while ((n = vq_chain_read(c, off, pfns, sizeof(pfns))) >= sizeof(uint32_t)) {
		off += n;
		for (size_t i = 0; i < n / sizeof(uint32_t); i++) {
			uint64_t gpa = (uint64_t)le32toh(pfns[i]) * VIRTIO_BALLOON_PAGE_SIZE;
			if (!gpa_to_host(mem, gpa, VIRTIO_BALLOON_PAGE_SIZE)) {
				invalid(b, "balloon page", gpa);
				continue;
			}
			valid++;
			if (run_pages && gpa == run_start + run_pages * VIRTIO_BALLOON_PAGE_SIZE &&
			    gpa_to_host(mem, run_start, (run_pages + 1) * VIRTIO_BALLOON_PAGE_SIZE)) {
				run_pages++;
				continue;
			}
			if (run_pages)
				discard(b, run_start, run_pages * VIRTIO_BALLOON_PAGE_SIZE, true);
			run_start = gpa;
			run_pages = 1;
		}
	}
	if (run_pages)
		discard(b, run_start, run_pages * VIRTIO_BALLOON_PAGE_SIZE, true);
	count(b, &b->info.inflated_pages, valid);
}

static uint64_t chain_pfns(const struct vq_chain *c)
{
	return c->out_len / sizeof(uint32_t);
}

/* Deflate: the guest takes pages back; with hugepages the ledger no longer counts them as given. */
static void deflate_chain(struct virtio_balloon *b, const struct vq_chain *c)
{
	count(b, &b->info.deflated_pages, chain_pfns(c));
	if (!b->ledger.given)
		return;
	uint32_t pfns[PFN_BATCH];
	size_t off = 0, n;
	while ((n = vq_chain_read(c, off, pfns, sizeof(pfns))) >= sizeof(uint32_t)) {
		off += n;
		for (size_t i = 0; i < n / sizeof(uint32_t); i++)
			hugepage_ledger_take(&b->ledger, virtio_pci_mem(b->vdev),
					     (uint64_t)le32toh(pfns[i]) * VIRTIO_BALLOON_PAGE_SIZE, VIRTIO_BALLOON_PAGE_SIZE);
	}
}

/* The segments came from gpa_to_host(), so each lies in one region: map it back to its address. */
static bool host_to_gpa(const struct guest_mem *mem, const void *p, uint64_t *gpa)
{
	for (int i = 0; i < mem->nregions; i++) {
		const struct guest_mem_region *r = &mem->regions[i];
		if ((const uint8_t *)p >= r->host && (const uint8_t *)p < r->host + r->size) {
			*gpa = r->gpa + (uint64_t)((const uint8_t *)p - r->host);
			return true;
		}
	}
	return false;
}

/* Free page reporting: each segment of the chain is a free range of guest RAM. */
static void report_chain(struct virtio_balloon *b, const struct vq_chain *c)
{
	const struct guest_mem *mem = virtio_pci_mem(b->vdev);
	for (unsigned int i = 0; i < (unsigned int)c->n_out + c->n_in; i++) {
		uint64_t gpa;
		if (!host_to_gpa(mem, c->iov[i].iov_base, &gpa)) {
			invalid(b, "free range at host address", (uint64_t)(uintptr_t)c->iov[i].iov_base);
			continue;
		}
		count(b, &b->info.reported_bytes, c->iov[i].iov_len);
		discard(b, gpa, c->iov[i].iov_len, false);
	}
}

/* Reads the statistics in the driver's buffer; a trailing partial entry is ignored. */
static void read_stats(struct virtio_balloon *b, const struct vq_chain *c)
{
	uint8_t buf[STATS_MAX * STAT_ENTRY_SIZE];
	size_t n = vq_chain_read(c, 0, buf, sizeof(buf)) / STAT_ENTRY_SIZE;
	pthread_mutex_lock(&b->lock);
	for (size_t i = 0; i < n; i++) {
		uint16_t tag;
		uint64_t val;
		memcpy(&tag, buf + i * STAT_ENTRY_SIZE, sizeof(tag));
		memcpy(&val, buf + i * STAT_ENTRY_SIZE + 2, sizeof(val));
		tag = le16toh(tag);
		if (tag >= VIRTIO_BALLOON_S_NR)
			continue; /* a newer driver's statistic: not ours to show */
		b->info.stats[tag] = le64toh(val);
		b->info.stats_valid |= 1u << tag;
	}
	b->info.stats_updates++;
	pthread_mutex_unlock(&b->lock);
}

static void serve(void *dev, uint16_t q)
{
	struct virtio_balloon *b = dev;
	enum queue_role role = q < MAX_QUEUES ? b->role[q] : ROLE_NONE;
	struct vq_chain c = { .iov = b->iov, .iov_cap = MAX_SEGMENTS };
	bool pushed = false;
	while (role != ROLE_NONE && virtio_pci_pop(b->vdev, q, &c) > 0) {
		switch (role) {
		case ROLE_INFLATE: inflate_chain(b, &c); break;
		case ROLE_DEFLATE: deflate_chain(b, &c); break;
		case ROLE_REPORTING: report_chain(b, &c); break;
		case ROLE_STATS:
			read_stats(b, &c);
			if (b->stats_held) /* a second buffer: give the older one back */
				virtio_pci_push(b->vdev, q, b->stats_head, 0);
			b->stats_held = true;
			b->stats_head = c.head;
			pushed = true;
			continue; /* held until the next tick */
		case ROLE_NONE: break;
		}
		virtio_pci_push(b->vdev, q, c.head, 0);
		pushed = true;
	}
	if (pushed)
		virtio_pci_notify(b->vdev, q);
}

static int stats_queue(const struct virtio_balloon *b)
{
	for (int q = 0; q < MAX_QUEUES; q++)
		if (b->role[q] == ROLE_STATS)
			return q;
	return -1;
}

/* Asks for fresh statistics: the held buffer goes back to the driver, which refills it. */
static void on_stats_tick(void *opaque)
{
	struct virtio_balloon *b = opaque;
	int q = stats_queue(b);
	if (q < 0 || !b->stats_held || !virtio_pci_running(b->vdev))
		return;
	b->stats_held = false;
	virtio_pci_push(b->vdev, (uint16_t)q, b->stats_head, 0);
	virtio_pci_notify(b->vdev, (uint16_t)q);
}

/* Queues are numbered in order, skipping the ones whose feature was not negotiated. */
static void assign_roles(struct virtio_balloon *b)
{
	memset(b->role, 0, sizeof(b->role));
	int q = 0;
	b->role[q++] = ROLE_INFLATE;
	b->role[q++] = ROLE_DEFLATE;
	if (virtio_pci_has_feature(b->vdev, VIRTIO_BALLOON_F_STATS_VQ))
		b->role[q++] = ROLE_STATS;
	if (virtio_pci_has_feature(b->vdev, VIRTIO_BALLOON_F_REPORTING))
		b->role[q++] = ROLE_REPORTING;
}

static int balloon_activate(void *dev)
{
	assign_roles(dev);
	return 0;
}

static void balloon_reset(void *dev)
{
	struct virtio_balloon *b = dev;
	memset(b->role, 0, sizeof(b->role));
	b->stats_held = false;
	/* A new driver starts with an empty balloon; the target stays. */
	atomic_store(&b->actual, 0);
	hugepage_ledger_clear(&b->ledger);
}

static void balloon_config_read(void *dev, uint32_t off, void *data, uint32_t len)
{
	struct virtio_balloon *b = dev;
	uint32_t image[2] = { htole32(atomic_load(&b->num_pages)), htole32(atomic_load(&b->actual)) };
	memcpy(data, (uint8_t *)image + off, len);
}

/* Only `actual` is the driver's to write; num_pages is read-only for it. */
static void balloon_config_write(void *dev, uint32_t off, const void *data, uint32_t len)
{
	struct virtio_balloon *b = dev;
	uint32_t image[2] = { htole32(atomic_load(&b->num_pages)), htole32(atomic_load(&b->actual)) };
	if (off + len <= sizeof(uint32_t))
		return;
	uint32_t from = MAX(off, (uint32_t)sizeof(uint32_t));
	memcpy((uint8_t *)image + from, (const uint8_t *)data + (from - off), off + len - from);
	atomic_store(&b->actual, le32toh(image[1]));
}

/* ---- snapshots ---- */

#define SAVE_MAGIC 0x424c4e31u /* "BLN1" */

struct saved_balloon {
	uint32_t magic;
	uint32_t num_pages;
	uint32_t actual;
	uint16_t stats_head;
	uint8_t stats_held;
	uint8_t pad;
	struct virtio_balloon_info info;
};

static long balloon_save(void *dev, void *buf, size_t cap)
{
	struct virtio_balloon *b = dev;
	struct saved_balloon s = {
		.magic = SAVE_MAGIC,
		.num_pages = atomic_load(&b->num_pages),
		.actual = atomic_load(&b->actual),
		.stats_head = b->stats_head,
		.stats_held = b->stats_held,
	};
	if (cap < sizeof(s))
		return -ENOSPC;
	virtio_balloon_get_info(b, &s.info);
	memcpy(buf, &s, sizeof(s));
	return (long)sizeof(s);
}

static int balloon_load(void *dev, const void *buf, size_t len)
{
	struct virtio_balloon *b = dev;
	struct saved_balloon s;
	if (len != sizeof(s))
		return -EINVAL;
	memcpy(&s, buf, sizeof(s));
	if (s.magic != SAVE_MAGIC || s.stats_head >= VIRTIO_BALLOON_QUEUE_SIZE || s.info.ram_bytes != b->ram_bytes ||
	    (uint64_t)s.num_pages * VIRTIO_BALLOON_PAGE_SIZE > b->ram_bytes)
		return -EINVAL;
	atomic_store(&b->num_pages, s.num_pages);
	atomic_store(&b->actual, s.actual);
	hugepage_ledger_clear(&b->ledger); /* not saved: restored RAM is in 4 KiB pages */
	pthread_mutex_lock(&b->lock);
	b->info = s.info;
	pthread_mutex_unlock(&b->lock);
	assign_roles(b);
	b->stats_held = s.stats_held && stats_queue(b) >= 0;
	b->stats_head = s.stats_head;
	return 0;
}

static const struct virtio_device_ops balloon_ops_template = {
	.name = "balloon",
	.device_id = VIRTIO_ID_BALLOON,
	.pci_class = PCI_CLASS_OTHER,
	.queue_max_size = VIRTIO_BALLOON_QUEUE_SIZE,
	.config_size = CONFIG_SIZE,
	.config_read = balloon_config_read,
	.config_write = balloon_config_write,
	.queue_notify = serve,
	.activate = balloon_activate,
	.reset = balloon_reset,
	.save = balloon_save,
	.load = balloon_load,
};

int virtio_balloon_create(const struct virtio_pci_deps *deps, const struct balloon_config *cfg,
			  struct virtio_balloon **out)
{
	struct virtio_balloon *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->cfg = *cfg;
	b->ram_bytes = deps->mem->ram_size;
	b->info.ram_bytes = b->ram_bytes;
	pthread_mutex_init(&b->lock, NULL);
	b->ops = balloon_ops_template;
	b->ops.num_queues = 2;
	if (cfg->stats_interval_s) {
		b->ops.features |= VIRTIO_F_BIT(VIRTIO_BALLOON_F_STATS_VQ);
		b->ops.num_queues++;
	}
	if (cfg->deflate_on_oom)
		b->ops.features |= VIRTIO_F_BIT(VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
	if (cfg->free_page_reporting) {
		b->ops.features |= VIRTIO_F_BIT(VIRTIO_BALLOON_F_REPORTING);
		b->ops.num_queues++;
	}
	uint64_t period = (uint64_t)cfg->stats_interval_s * 1000000000ull;
	int rc = hugepage_ledger_init(&b->ledger, deps->mem);
	if (!rc && period)
		rc = event_loop_add_timer(deps->loop, period, period, on_stats_tick, b, &b->stats_timer);
	if (!rc)
		rc = virtio_pci_create(deps, &b->ops, b, &b->vdev);
	if (rc) {
		hugepage_ledger_free(&b->ledger);
		event_timer_free(b->stats_timer);
		pthread_mutex_destroy(&b->lock);
		free(b);
		return rc;
	}
	*out = b;
	return 0;
}

void virtio_balloon_destroy(struct virtio_balloon *b)
{
	if (!b)
		return;
	virtio_pci_destroy(b->vdev);
	event_timer_free(b->stats_timer);
	hugepage_ledger_free(&b->ledger);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

int virtio_balloon_set_target(struct virtio_balloon *b, uint64_t target_bytes)
{
	if (target_bytes > b->ram_bytes || target_bytes % VIRTIO_BALLOON_PAGE_SIZE)
		return -EINVAL;
	atomic_store(&b->num_pages, (uint32_t)((b->ram_bytes - target_bytes) / VIRTIO_BALLOON_PAGE_SIZE));
	virtio_pci_config_changed(b->vdev);
	return 0;
}

void virtio_balloon_get_info(struct virtio_balloon *b, struct virtio_balloon_info *out)
{
	pthread_mutex_lock(&b->lock);
	*out = b->info;
	pthread_mutex_unlock(&b->lock);
	uint64_t balloon = (uint64_t)atomic_load(&b->num_pages) * VIRTIO_BALLOON_PAGE_SIZE;
	uint64_t actual = (uint64_t)atomic_load(&b->actual) * VIRTIO_BALLOON_PAGE_SIZE;
	out->ram_bytes = b->ram_bytes;
	out->target_bytes = b->ram_bytes - MIN(balloon, b->ram_bytes);
	out->actual_bytes = b->ram_bytes - MIN(actual, b->ram_bytes);
}
