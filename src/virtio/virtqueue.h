/*
 * The device side of a split virtqueue (virtio 1.x, section 2.7): popping descriptor chains
 * the driver made available, pushing them back as used, and deciding when to notify.
 *
 * The rings live in guest memory the guest keeps writing, so every value read from them is
 * hostile: each is read once, then checked (indices, descriptor addresses and lengths through
 * gpa_to_host(), chain length against the queue size, indirect tables (at most 1024
 * entries, no nesting), flags, total length below 4 GiB). A malformed
 * ring or chain makes vq_pop() fail with -EINVAL; the transport then marks the device
 * NEEDS_RESET and stops using the queue. No input makes the walker read or write outside
 * guest RAM, loop more than queue-size times, or allocate.
 *
 * A virtqueue is used by one thread at a time (the event loop, for virtio devices).
 */
#ifndef VMON_VIRTIO_VIRTQUEUE_H
#define VMON_VIRTIO_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "memory/guest_mem.h"

#define VQ_MAX_SIZE 32768 /* the split-ring limit */

/* Descriptor flags and ring flags (virtio 1.x 2.7.5, 2.7.6, 2.7.8). */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

/* Ring feature bits, offered by the transport on behalf of every device. */
#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX 29

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtqueue {
	/* Set by the driver through the transport while the queue is disabled. */
	uint16_t size;        /* number of descriptors: a power of two, <= max_size */
	uint16_t max_size;    /* what the device offers */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint16_t msix_vector; /* VIRTIO_MSI_NO_VECTOR (0xffff): no interrupt */
	bool enabled;

	/* Negotiated ring features, set at activation. */
	bool event_idx;
	bool indirect;

	/* Device-side progress: part of the device state saved in snapshots. */
	uint16_t last_avail;  /* next available-ring entry to consume */
	uint16_t used_idx;    /* next used-ring entry to fill (the used ring's idx, as published) */
	uint16_t signalled_used;  /* used_idx when the guest was last notified */
	bool signalled_valid;     /* false until the first notification decision */

	/*
	 * Host pointers to the validated rings, set by vq_start(): the driver's two only read,
	 * the used ring written (and each write marked with guest_mem_wrote()).
	 */
	const struct guest_mem *mem;
	const struct virtq_desc *desc;
	const uint16_t *avail; /* flags, idx, ring[size], used_event */
	uint8_t *used;        /* flags, idx, {id, len}[size], avail_event */
	bool broken;          /* a malformed ring was seen: nothing more is popped until reset */
};

/*
 * One popped chain: readable segments iov[0..n_out), then writable iov[n_out..n_out+n_in).
 * A device that writes into the writable part other than with vq_chain_write() (readv(),
 * getrandom(), a disk read) calls vq_chain_wrote() or guest_mem_wrote_iov() after it, so the
 * pages are seen by migration's dirty tracking.
 */
struct vq_chain {
	const struct guest_mem *mem; /* set by vq_pop() */
	uint16_t head;        /* id to give back to vq_push() */
	uint16_t n_out, n_in;
	uint32_t out_len, in_len; /* total bytes of each kind */
	struct iovec *iov;    /* caller's array ... */
	uint16_t iov_cap;     /* ... and its capacity */
};

/* Device side initial state: everything zero, queue size max_size. */
void vq_init(struct virtqueue *vq, uint16_t max_size);
/* Back to the state after vq_init() (the driver's addresses and progress forgotten). */
void vq_reset(struct virtqueue *vq);

/*
 * Validates the driver's ring addresses (sizes, alignment, inside guest RAM) and resolves
 * them to host pointers; event_idx and indirect are the negotiated features. Called when the
 * driver enables the queue or the device activates. Returns 0 or -EINVAL (the queue stays off).
 */
int vq_start(struct virtqueue *vq, const struct guest_mem *mem, bool event_idx, bool indirect);

/* True once vq_start() succeeded and the ring has not been found broken. */
bool vq_ready(const struct virtqueue *vq);

/*
 * Pops the next available chain into c (c->iov and c->iov_cap set by the caller).
 * Returns 1 when a chain was popped, 0 when the ring is empty, -EINVAL when the ring or the
 * chain is malformed (the queue is then broken: the caller reports NEEDS_RESET), or -ENOBUFS
 * when the chain is valid but has more segments than c->iov_cap (also broken: a device must
 * size iov_cap for the longest chain it advertises, e.g. seg_max + 2 for block).
 */
int vq_pop(struct virtqueue *vq, struct vq_chain *c);

/*
 * Puts the n most recently popped chains back (none of them pushed), so the next vq_pop()
 * returns them again: for a device that popped before knowing it has work, e.g. net receive.
 */
void vq_unpop(struct virtqueue *vq, uint16_t n);

/* Gives a popped chain back to the driver with len bytes written into its writable part. */
void vq_push(struct virtqueue *vq, uint16_t head, uint32_t len);

/*
 * After one or more vq_push(): true when the driver wants an interrupt now (event index or
 * the NO_INTERRUPT flag decide). Each call consumes the decision.
 */
bool vq_should_notify(struct virtqueue *vq);

/*
 * Notification suppression for a device draining the queue: disable before a burst, enable
 * after it. vq_enable_notify() returns true if buffers arrived in the meantime, in which case
 * the caller must pop again (otherwise a notification could be lost).
 */
void vq_disable_notify(struct virtqueue *vq);
bool vq_enable_notify(struct virtqueue *vq);

/*
 * Copy helpers over a chain's segments: copies out of the readable part (skipping `skip`
 * bytes) or into the writable part (marking what it wrote). Return the bytes copied.
 */
size_t vq_chain_read(const struct vq_chain *c, size_t skip, void *dst, size_t len);
size_t vq_chain_write(const struct vq_chain *c, size_t skip, const void *src, size_t len);
/* The device wrote the first len bytes of the chain's writable part itself: marks them. */
void vq_chain_wrote(const struct vq_chain *c, size_t len);

#endif
