#include "virtio/virtio_rng.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "lib/log.h"
#include "lib/util.h"

#define COMP "virtio-rng"
#define QUEUE_SIZE 64
#define MAX_SEGMENTS (QUEUE_SIZE + 1024) /* a ring chain, or an indirect table */
#define PCI_CLASS_OTHER 0xff0000

struct virtio_rng {
	struct virtio_device *vdev;
	struct event_timer *retry;
	bool retry_armed;
	uint64_t tokens;        /* bytes the bucket holds */
	uint64_t refilled_ns;   /* when tokens were last topped up */
	_Atomic uint64_t served;
	struct iovec iov[MAX_SEGMENTS];
};

static void refill(struct virtio_rng *rng)
{
	uint64_t now = monotonic_ns();
	uint64_t add = (now - rng->refilled_ns) * VIRTIO_RNG_RATE / 1000000000ull;
	if (add == 0)
		return;
	rng->tokens = MIN(rng->tokens + add, (uint64_t)VIRTIO_RNG_BURST);
	rng->refilled_ns = now;
}

/* Fills len bytes of the chain's writable part with random bytes; returns the bytes written. */
static uint32_t fill(const struct vq_chain *c, uint32_t len)
{
	uint32_t done = 0;
	for (unsigned int i = c->n_out; i < (unsigned int)c->n_out + c->n_in && done < len; i++) {
		uint8_t *p = c->iov[i].iov_base;
		size_t want = MIN(c->iov[i].iov_len, (size_t)(len - done));
		size_t got = 0;
		while (got < want) {
			ssize_t n = getrandom(p + got, want - got, 0);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				static struct log_ratelimit rl;
				log_warn_ratelimited(&rl, COMP, "getrandom failed: %s", strerror(errno));
				return done + (uint32_t)got;
			}
			got += (size_t)n;
		}
		done += (uint32_t)want;
	}
	return done;
}

static void serve(void *dev, uint16_t q)
{
	struct virtio_rng *rng = dev;
	struct vq_chain c = { .iov = rng->iov, .iov_cap = MAX_SEGMENTS };
	bool pushed = false;
	refill(rng);
	while (rng->tokens > 0) {
		int rc = virtio_pci_pop(rng->vdev, q, &c);
		if (rc <= 0)
			break;
		uint32_t n = fill(&c, (uint32_t)MIN((uint64_t)c.in_len, rng->tokens));
		vq_chain_wrote(&c, n);
		rng->tokens -= n;
		atomic_fetch_add(&rng->served, n);
		virtio_pci_push(rng->vdev, q, c.head, n);
		pushed = true;
	}
	if (pushed)
		virtio_pci_notify(rng->vdev, q);
	/* Out of tokens with requests waiting: come back when the bucket has refilled a little. */
	struct virtqueue *vq = virtio_pci_queue(rng->vdev, q);
	if (rng->tokens == 0 && vq && vq_enable_notify(vq) && !rng->retry_armed) {
		rng->retry_armed = event_timer_set(rng->retry, VIRTIO_RNG_RETRY_MS * 1000000ull, 0) == 0;
	}
}

static void on_retry(void *opaque)
{
	struct virtio_rng *rng = opaque;
	rng->retry_armed = false;
	if (virtio_pci_running(rng->vdev))
		serve(rng, 0);
}

/*
 * The bucket limits what the host gives, not what the driver negotiated: it survives a reset,
 * or a guest could reset and re-activate the device in a loop to refill it.
 */
static void rng_reset(void *dev)
{
	struct virtio_rng *rng = dev;
	event_timer_set(rng->retry, 0, 0);
	rng->retry_armed = false;
}

static const struct virtio_device_ops rng_ops = {
	.name = "rng",
	.device_id = VIRTIO_ID_RNG,
	.pci_class = PCI_CLASS_OTHER,
	.num_queues = 1,
	.queue_max_size = QUEUE_SIZE,
	.features = 0,
	.config_size = 0,
	.queue_notify = serve,
	.reset = rng_reset,
};

int virtio_rng_create(const struct virtio_pci_deps *deps, struct virtio_rng **out)
{
	struct virtio_rng *rng = calloc(1, sizeof(*rng));
	if (!rng)
		return -ENOMEM;
	rng->tokens = VIRTIO_RNG_BURST;
	rng->refilled_ns = monotonic_ns();
	int rc = event_loop_add_timer(deps->loop, 0, 0, on_retry, rng, &rng->retry);
	if (!rc)
		rc = virtio_pci_create(deps, &rng_ops, rng, &rng->vdev);
	if (rc) {
		event_timer_free(rng->retry);
		free(rng);
		return rc;
	}
	*out = rng;
	return 0;
}

void virtio_rng_destroy(struct virtio_rng *rng)
{
	if (!rng)
		return;
	virtio_pci_destroy(rng->vdev);
	event_timer_free(rng->retry);
	free(rng);
}

uint64_t virtio_rng_bytes_served(const struct virtio_rng *rng)
{
	return atomic_load(&rng->served);
}
