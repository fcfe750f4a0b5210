/*
 * A fake guest driver for the virtio device tests: guest RAM, the buses and the event loop a
 * device is created on, and what a driver does through BAR0 (status handshake, features,
 * queues, rings). A test file puts struct vrig in its own struct rig, next to the device
 * under test, and creates that device between vrig_init() and vrig_attach(). Include it after
 * cmocka.h.
 */
#ifndef VMON_TESTS_UNIT_VIRTIO_RIG_H
#define VMON_TESTS_UNIT_VIRTIO_RIG_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "backends/net_backend.h"
#include "memory/write_track.h"
#include "virtio/virtio_pci.h"

/* A network backend that drops what the guest sends, for tests that need a card but no traffic. */
static inline int vrig_null_send(struct net_backend *be, const void *pkt, size_t len)
{
	(void)be, (void)pkt, (void)len;
	return 0;
}
static inline void vrig_null_destroy(struct net_backend *be) { (void)be; }
static const struct net_backend_ops vrig_null_net_ops = { .kind = "null", .send = vrig_null_send,
							  .destroy = vrig_null_destroy };

/* Queue q's rings, clear of each other for any queue size up to 256. */
#define VRIG_QUEUE_BYTES 0x4000u
#define VRIG_DESC(q) (0x1000u + VRIG_QUEUE_BYTES * (q))
#define VRIG_AVAIL(q) (VRIG_DESC(q) + 0x1000u)
#define VRIG_USED(q) (VRIG_DESC(q) + 0x2000u)
#define VRIG_MAX_QUEUES 4
#define VRIG_DATA 0x100000u /* alloc_data() starts above every queue's rings */
#define VRIG_WAIT_MS 5000   /* only a failing test waits this long */

/* The common configuration at the start of BAR0 (virtio 1.x section 4.1.4.3). */
enum { DFSEL = 0x00, DF = 0x04, GFSEL = 0x08, GF = 0x0c, MSIXCFG = 0x10, NUMQ = 0x12, STATUS = 0x14,
       QSEL = 0x16, QSIZE = 0x18, QMSIX = 0x1a, QENABLE = 0x1c, QDESC = 0x20, QDRIVER = 0x28, QDEVICE = 0x30 };
#define DRIVER_RUNNING                                                                                         \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK)

struct vrig_spec {
	uint32_t ram;       /* bytes of guest RAM */
	uint16_t device_id; /* VIRTIO_ID_* of the device under test */
	uint16_t queues;    /* how many start_driver() sets up */
	uint16_t qsize;     /* the size the driver picks */
	uint16_t max_qsize; /* the size the device must offer; 0: not checked */
};

struct vrig {
	struct vrig_spec spec;
	struct bus pio, mmio;
	struct pci_bus pci;
	struct event_loop *loop;
	struct guest_mem mem;
	struct virtio_pci_deps deps; /* what the test creates its device with */
	uint8_t *ram;
	struct pci_device *fn;
	uint64_t bar0;
	uint64_t data_next;
	uint64_t *marked; /* pages vmon marked written since vrig_track_writes(), all takes together */
	struct {
		uint16_t avail_idx, desc_next;
		uint16_t used_seen; /* used elements next_used() has handed out */
	} q[VRIG_MAX_QUEUES];
};

static inline void vrig_init(struct vrig *v, const struct vrig_spec *spec)
{
	assert_true(spec->queues <= VRIG_MAX_QUEUES);
	memset(v, 0, sizeof(*v));
	v->spec = *spec;
	bus_init(&v->pio, "pio");
	bus_init(&v->mmio, "mmio");
	assert_int_equal(pci_bus_init(&v->pci, &v->pio, &v->mmio, LAYOUT_PCI_MMIO_START, LAYOUT_IOAPIC), 0);
	assert_int_equal(event_loop_create(&v->loop), 0);
	v->ram = calloc(1, spec->ram);
	v->mem.nregions = 1;
	v->mem.regions[0] = (struct guest_mem_region){ .gpa = 0, .size = spec->ram, .host = v->ram };
	v->mem.ram_size = spec->ram;
	v->mem.fd = -1;
	v->deps = (struct virtio_pci_deps){ .pci = &v->pci, .loop = v->loop, .mem = &v->mem, .vm_fd = -1 };
	v->data_next = VRIG_DATA;
}

/* Runs the loop and finds the device the test created: the first slot after the host bridge. */
static inline void vrig_attach(struct vrig *v)
{
	assert_int_equal(event_loop_start(v->loop), 0);
	v->fn = v->pci.devices[1];
	assert_non_null(v->fn);
	assert_int_equal(pci_config_read(v->fn, PCI_DEVICE_ID, 2), 0x1040 + v->spec.device_id);
	pci_config_write(v->fn, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	v->bar0 = pci_config_read(v->fn, PCI_BAR0, 4);
}

/* The test stops the loop and destroys its device first: a device must not outlive its loop. */
static inline void vrig_free(struct vrig *v)
{
	write_track_release(&v->mem);
	free(v->marked);
	event_loop_destroy(v->loop);
	pci_bus_destroy(&v->pci);
	bus_destroy(&v->pio);
	bus_destroy(&v->mmio);
	free(v->ram);
}

/* Turns on migration's tracking of what vmon writes into the rig's RAM (write_track.h). */
static inline void vrig_track_writes(struct vrig *v)
{
	assert_int_equal(write_track_start(&v->mem), 0);
	v->marked = calloc(write_track_words(&v->mem.regions[0]), sizeof(uint64_t));
}

/* How many pages of [gpa, gpa+len) vmon has marked written since vrig_track_writes(). */
static inline uint64_t vrig_marked_pages(struct vrig *v, uint64_t gpa, uint64_t len)
{
	write_track_take(&v->mem, 0, v->marked);
	uint64_t n = 0;
	for (uint64_t page = gpa / 4096; page <= (gpa + len - 1) / 4096; page++)
		n += v->marked[page / 64] >> (page % 64) & 1;
	return n;
}

/*
 * True once every page of [gpa, gpa+len) is marked. A device marks its buffers before it puts
 * them in the used ring, but the used ring itself just after: wait a little for those.
 */
static inline bool vrig_marked(struct vrig *v, uint64_t gpa, uint64_t len)
{
	uint64_t pages = (gpa + len - 1) / 4096 - gpa / 4096 + 1;
	for (int i = 0; i < VRIG_WAIT_MS && vrig_marked_pages(v, gpa, len) != pages; i++)
		usleep(1000);
	return vrig_marked_pages(v, gpa, len) == pages;
}

static inline uint32_t rd(struct vrig *v, uint64_t off, uint32_t len)
{
	uint32_t val = 0;
	assert_true(bus_read(&v->mmio, v->bar0 + off, &val, len));
	return val;
}

static inline void wr(struct vrig *v, uint64_t off, uint32_t val, uint32_t len)
{
	assert_true(bus_write(&v->mmio, v->bar0 + off, &val, len));
}

static inline uint64_t device_features(struct vrig *v)
{
	wr(v, DFSEL, 0, 4);
	uint64_t lo = rd(v, DF, 4);
	wr(v, DFSEL, 1, 4);
	return lo | (uint64_t)rd(v, DF, 4) << 32;
}

/*
 * Resets the device and accepts exactly `features`, without adding VERSION_1, so a test can
 * be a legacy driver; the status read back after FEATURES_OK says whether the device agreed.
 */
static inline uint8_t negotiate(struct vrig *v, uint64_t features)
{
	wr(v, STATUS, 0, 1);
	/* The reset made the device forget its rings: the driver starts over on clean ones. */
	for (uint16_t q = 0; q < v->spec.queues; q++)
		memset(v->ram + VRIG_DESC(q), 0, VRIG_QUEUE_BYTES);
	memset(v->q, 0, sizeof(v->q));
	wr(v, STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
	wr(v, GFSEL, 0, 4);
	wr(v, GF, (uint32_t)features, 4);
	wr(v, GFSEL, 1, 4);
	wr(v, GF, (uint32_t)(features >> 32), 4);
	wr(v, STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK, 1);
	return (uint8_t)rd(v, STATUS, 1);
}

/* Selects queue q and gives it its size and rings; not enabled, so a test can set more first. */
static inline void setup_queue(struct vrig *v, uint16_t q)
{
	wr(v, QSEL, q, 2);
	if (v->spec.max_qsize)
		assert_int_equal(rd(v, QSIZE, 2), v->spec.max_qsize);
	wr(v, QSIZE, v->spec.qsize, 2);
	wr(v, QDESC, VRIG_DESC(q), 4);
	wr(v, QDRIVER, VRIG_AVAIL(q), 4);
	wr(v, QDEVICE, VRIG_USED(q), 4);
}

/* Brings the device up as a driver does, accepting VERSION_1 and `features`. */
static inline void start_driver(struct vrig *v, uint64_t features)
{
	assert_true(negotiate(v, features | VIRTIO_F_BIT(VIRTIO_F_VERSION_1)) & VIRTIO_STATUS_FEATURES_OK);
	for (uint16_t q = 0; q < v->spec.queues; q++) {
		setup_queue(v, q);
		wr(v, QENABLE, 1, 2);
	}
	wr(v, STATUS, DRIVER_RUNNING, 1);
}

/* Guest memory for buffers, never handed out twice, so a test can look at old buffers. */
static inline uint64_t alloc_data(struct vrig *v, uint32_t len)
{
	uint64_t gpa = v->data_next;
	v->data_next += (len + 63) & ~63u;
	assert_true(v->data_next < v->spec.ram);
	return gpa;
}

struct seg {
	uint64_t addr;
	uint32_t len;
	bool writable;
};

/* Puts the chain at head in q's available ring; kick: notify the device. Returns head. */
static inline uint16_t publish(struct vrig *v, uint16_t q, uint16_t head, bool kick)
{
	uint16_t *avail = (uint16_t *)(v->ram + VRIG_AVAIL(q));
	avail[2 + v->q[q].avail_idx % v->spec.qsize] = head;
	v->q[q].avail_idx++;
	__atomic_store_n(&avail[1], v->q[q].avail_idx, __ATOMIC_RELEASE);
	if (kick)
		wr(v, VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULTIPLIER * q, q, 2);
	return head;
}

/* Makes a chain of n segments available on queue q; kick: notify the device. Returns its head. */
static inline uint16_t add_chain(struct vrig *v, uint16_t q, const struct seg *s, int n, bool kick)
{
	uint16_t qsz = v->spec.qsize;
	uint16_t head = v->q[q].desc_next % qsz;
	for (int i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)((v->q[q].desc_next + i) % qsz);
		struct virtq_desc d = { .addr = s[i].addr, .len = s[i].len,
					.flags = (uint16_t)((s[i].writable ? VIRTQ_DESC_F_WRITE : 0) |
							    (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
					.next = (uint16_t)((idx + 1) % qsz) };
		memcpy(v->ram + VRIG_DESC(q) + 16u * idx, &d, sizeof(d));
	}
	v->q[q].desc_next = (uint16_t)(v->q[q].desc_next + n);
	return publish(v, q, head, kick);
}

/*
 * Makes a chain available on q: n_ring segments in ring descriptors, then an indirect table
 * (in guest memory from alloc_data()) holding the n_table segments of table. Needs
 * VIRTIO_RING_F_INDIRECT_DESC negotiated. Returns its head.
 */
static inline uint16_t add_indirect_chain(struct vrig *v, uint16_t q, const struct seg *ring, int n_ring,
					  const struct seg *table, int n_table, bool kick)
{
	uint64_t t = alloc_data(v, 16u * (uint32_t)n_table);
	for (int i = 0; i < n_table; i++) {
		struct virtq_desc d = { .addr = table[i].addr, .len = table[i].len,
					.flags = (uint16_t)((table[i].writable ? VIRTQ_DESC_F_WRITE : 0) |
							    (i + 1 < n_table ? VIRTQ_DESC_F_NEXT : 0)),
					.next = (uint16_t)(i + 1) };
		memcpy(v->ram + t + 16u * (uint32_t)i, &d, sizeof(d));
	}
	uint16_t qsz = v->spec.qsize;
	uint16_t head = v->q[q].desc_next % qsz;
	for (int i = 0; i <= n_ring; i++) {
		uint16_t idx = (uint16_t)((v->q[q].desc_next + i) % qsz);
		struct virtq_desc d = { .addr = t, .len = 16u * (uint32_t)n_table, .flags = VIRTQ_DESC_F_INDIRECT };
		if (i < n_ring)
			d = (struct virtq_desc){ .addr = ring[i].addr, .len = ring[i].len,
						 .flags = (uint16_t)((ring[i].writable ? VIRTQ_DESC_F_WRITE : 0) |
								     VIRTQ_DESC_F_NEXT),
						 .next = (uint16_t)((idx + 1) % qsz) };
		memcpy(v->ram + VRIG_DESC(q) + 16u * idx, &d, sizeof(d));
	}
	v->q[q].desc_next = (uint16_t)(v->q[q].desc_next + n_ring + 1);
	return publish(v, q, head, kick);
}

static inline uint16_t add_buf(struct vrig *v, uint16_t q, uint64_t addr, uint32_t len, bool writable)
{
	struct seg s = { addr, len, writable };
	return add_chain(v, q, &s, 1, true);
}

static inline uint16_t used_idx(struct vrig *v, uint16_t q)
{
	return __atomic_load_n((uint16_t *)(v->ram + VRIG_USED(q) + 2), __ATOMIC_ACQUIRE);
}

/* The i-th element the device put in q's used ring. */
static inline void used_elem(struct vrig *v, uint16_t q, uint16_t i, uint32_t *id, uint32_t *len)
{
	const uint8_t *e = v->ram + VRIG_USED(q) + 4 + 8u * (i % v->spec.qsize);
	memcpy(id, e, 4);
	memcpy(len, e + 4, 4);
}

/* Waits for q's used index to be exactly want: also catches a device that uses too many. */
static inline bool wait_used(struct vrig *v, uint16_t q, uint16_t want)
{
	for (int i = 0; i < VRIG_WAIT_MS && used_idx(v, q) != want; i++)
		usleep(1000);
	return used_idx(v, q) == want;
}

/* The next used element of q not handed out yet; false if none came. */
static inline bool next_used(struct vrig *v, uint16_t q, uint32_t *id, uint32_t *len)
{
	/* The device may have used several at once: wait for any, not for exactly one more. */
	for (int i = 0; i < VRIG_WAIT_MS && used_idx(v, q) == v->q[q].used_seen; i++)
		usleep(1000);
	if (used_idx(v, q) == v->q[q].used_seen)
		return false;
	used_elem(v, q, v->q[q].used_seen++, id, len);
	return true;
}

/* The device finds bad rings on its loop thread: wait for it to say so. */
static inline bool wait_needs_reset(struct vrig *v)
{
	for (int i = 0; i < VRIG_WAIT_MS && !(rd(v, STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET); i++)
		usleep(1000);
	return rd(v, STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET;
}

/* Reads what a device's host-side socket has, waiting up to 2 s; -1 if nothing came. */
static inline ssize_t read_wait(int fd, void *buf, size_t len)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 2000) != 1)
		return -1;
	return recv(fd, buf, len, MSG_DONTWAIT);
}

#endif
