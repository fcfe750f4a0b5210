#include "virtio/virtio_net.h"

#include <endian.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/util.h"

#define COMP "virtio-net"
#define PCI_CLASS_ETHERNET 0x020000
#define MAX_SEGMENTS (VIRTIO_NET_QUEUE_SIZE + 1024) /* a ring chain, or an indirect table */
#define CONFIG_SIZE 10 /* mac[6], status, max_virtqueue_pairs */
#define NUM_BUFFERS_OFF 10 /* of the header */

/* Offload bits whose presence depends on the backend. */
#define OFFLOAD_BITS                                                                                            \
	(VIRTIO_F_BIT(VIRTIO_NET_F_CSUM) | VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_CSUM) |                              \
	 VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_TSO4) | VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_TSO6) |                        \
	 VIRTIO_F_BIT(VIRTIO_NET_F_HOST_TSO4) | VIRTIO_F_BIT(VIRTIO_NET_F_HOST_TSO6))

struct pending_frame {
	uint8_t *data; /* header + frame */
	size_t len;
};

struct virtio_net {
	struct virtio_device *vdev;
	struct virtio_device_ops ops; /* per device: the offered features depend on the backend */
	struct net_backend *be;

	/* Guest-visible state (saved in snapshots). status changes on the loop thread while vCPUs read it. */
	uint8_t mac[6];
	uint16_t status;
	struct event_timer *link_timer; /* brings the link back up after virtio_net_set_mac() */
	unsigned int link_down_ms;
	bool link_down_sent;
	uint64_t offloads; /* negotiated offload bits the backend was configured with */

	/* Frames waiting for receive buffers: a bounded ring. */
	struct pending_frame pending[VIRTIO_NET_RX_QUEUE_FRAMES];
	unsigned int pending_head, pending_count;
	size_t pending_bytes;
	bool backend_waiting; /* a deliver() returned 1: call resume() once the queue drains */

	_Atomic uint64_t rx_packets, rx_bytes, rx_dropped, rx_errors;
	_Atomic uint64_t tx_packets, tx_bytes, tx_errors, tx_dropped;

	uint8_t *txbuf; /* header + one frame */
	struct iovec rx_iov[MAX_SEGMENTS];
	struct iovec tx_iov[MAX_SEGMENTS];
	struct log_ratelimit rl;
};

static void count(_Atomic uint64_t *c, uint64_t n) { atomic_fetch_add_explicit(c, n, memory_order_relaxed); }

/* ---- receive ---- */

/* Host address of byte off of a chain's writable part, or NULL past its end. */
static uint8_t *chain_byte(const struct vq_chain *c, size_t off)
{
	for (unsigned int i = c->n_out; i < (unsigned int)c->n_out + c->n_in; i++) {
		if (off < c->iov[i].iov_len)
			return (uint8_t *)c->iov[i].iov_base + off;
		off -= c->iov[i].iov_len;
	}
	return NULL;
}

/*
 * Copies one frame (header + frame, len bytes) into receive buffers: one buffer, or as many as
 * it takes with mergeable buffers. Returns 0 when it reached the guest, -EAGAIN when there are
 * not enough buffers (nothing consumed), -EMSGSIZE when it can never fit the buffers the driver
 * gives (nothing consumed), or -EINVAL when the ring is broken (the device is in NEEDS_RESET).
 */
static int fill_rx(struct virtio_net *net, const uint8_t *pkt, size_t len)
{
	struct virtqueue *vq = virtio_pci_queue(net->vdev, VIRTIO_NET_RXQ);
	bool mergeable = virtio_pci_has_feature(net->vdev, VIRTIO_NET_F_MRG_RXBUF);
	struct vq_chain c = { .iov = net->rx_iov, .iov_cap = MAX_SEGMENTS };
	uint16_t heads[VIRTIO_NET_QUEUE_SIZE];
	uint32_t lens[VIRTIO_NET_QUEUE_SIZE];
	uint8_t *num_buffers[2] = { NULL, NULL }; /* the first buffer's header field, byte by byte */
	uint16_t used = 0;
	size_t done = 0;
	/* At most the whole ring: a frame that would need more buffers than that can never fit. */
	while (done < len && used < vq->size && used < ARRAY_SIZE(heads) && (mergeable || used == 0)) {
		int rc = virtio_pci_pop(net->vdev, VIRTIO_NET_RXQ, &c);
		if (rc < 0) {
			count(&net->rx_errors, 1);
			return -EINVAL;
		}
		if (rc == 0) {
			vq_unpop(vq, used);
			return -EAGAIN;
		}
		if (c.n_out) {
			count(&net->rx_errors, 1);
			virtio_pci_set_needs_reset(net->vdev, "receive queue: a buffer has driver-readable parts");
			return -EINVAL;
		}
		if (used == 0) {
			if (c.in_len < VIRTIO_NET_HDR_LEN) { /* the header must fit the first buffer */
				vq_unpop(vq, 1);
				return -EMSGSIZE;
			}
			num_buffers[0] = chain_byte(&c, NUM_BUFFERS_OFF);
			num_buffers[1] = chain_byte(&c, NUM_BUFFERS_OFF + 1);
		}
		size_t n = vq_chain_write(&c, 0, pkt + done, len - done);
		heads[used] = c.head;
		lens[used] = (uint32_t)n;
		used++;
		done += n;
	}
	if (done < len) {
		/* Without mergeable buffers one buffer must hold it; with them, the whole ring could not. */
		vq_unpop(vq, used);
		return -EMSGSIZE;
	}
	*num_buffers[0] = (uint8_t)used;
	*num_buffers[1] = (uint8_t)(used >> 8);
	guest_mem_wrote(virtio_pci_mem(net->vdev), num_buffers[0], 1);
	guest_mem_wrote(virtio_pci_mem(net->vdev), num_buffers[1], 1);
	for (uint16_t i = 0; i < used; i++)
		virtio_pci_push(net->vdev, VIRTIO_NET_RXQ, heads[i], lens[i]);
	count(&net->rx_packets, 1);
	count(&net->rx_bytes, len - VIRTIO_NET_HDR_LEN);
	return 0;
}

static void drop_pending_front(struct virtio_net *net)
{
	struct pending_frame *f = &net->pending[net->pending_head];
	net->pending_bytes -= f->len;
	free(f->data);
	*f = (struct pending_frame){ 0 };
	net->pending_head = (net->pending_head + 1) % VIRTIO_NET_RX_QUEUE_FRAMES;
	net->pending_count--;
}

static void drop_all_pending(struct virtio_net *net)
{
	while (net->pending_count)
		drop_pending_front(net);
}

static bool enqueue(struct virtio_net *net, const void *pkt, size_t len)
{
	if (net->pending_count >= VIRTIO_NET_RX_QUEUE_FRAMES || net->pending_bytes + len > VIRTIO_NET_RX_QUEUE_BYTES)
		return false;
	uint8_t *copy = malloc(len);
	if (!copy)
		return false;
	memcpy(copy, pkt, len);
	unsigned int slot = (net->pending_head + net->pending_count) % VIRTIO_NET_RX_QUEUE_FRAMES;
	net->pending[slot] = (struct pending_frame){ .data = copy, .len = len };
	net->pending_count++;
	net->pending_bytes += len;
	return true;
}

/* Pushes queued frames into the guest's buffers; true when the queue is empty afterwards. */
static bool flush_pending(struct virtio_net *net)
{
	bool delivered = false;
	while (net->pending_count) {
		struct pending_frame *f = &net->pending[net->pending_head];
		int rc = fill_rx(net, f->data, f->len);
		if (rc == -EAGAIN)
			break;
		if (rc == -EINVAL) {
			drop_all_pending(net);
			break;
		}
		if (rc == 0)
			delivered = true;
		else
			count(&net->rx_dropped, 1);
		drop_pending_front(net);
	}
	if (delivered)
		virtio_pci_notify(net->vdev, VIRTIO_NET_RXQ);
	return net->pending_count == 0;
}

static int net_deliver(void *dev, const void *pkt, size_t len)
{
	struct virtio_net *net = dev;
	if (len < VIRTIO_NET_HDR_LEN + NET_MIN_FRAME || len > VIRTIO_NET_HDR_LEN + NET_MAX_FRAME ||
	    !virtio_pci_running(net->vdev)) {
		count(&net->rx_dropped, 1);
		return -ENOBUFS;
	}
	if (net->pending_count == 0) {
		int rc = fill_rx(net, pkt, len);
		if (rc == 0) {
			virtio_pci_notify(net->vdev, VIRTIO_NET_RXQ);
			return 0;
		}
		if (rc != -EAGAIN) {
			count(&net->rx_dropped, 1);
			return -ENOBUFS;
		}
	}
	if (!enqueue(net, pkt, len)) {
		count(&net->rx_dropped, 1);
		return -ENOBUFS;
	}
	/* Hear about new buffers; if some arrived meanwhile, use them now. */
	struct virtqueue *vq = virtio_pci_queue(net->vdev, VIRTIO_NET_RXQ);
	if (vq_enable_notify(vq) && flush_pending(net))
		return 0;
	net->backend_waiting = true;
	return 1;
}

static void rx_notify(struct virtio_net *net)
{
	if (!flush_pending(net))
		return;
	if (net->backend_waiting) {
		net->backend_waiting = false;
		if (net->be->ops->resume)
			net->be->ops->resume(net->be);
	}
}

/* ---- transmit ---- */

/* Checks the driver's header against what was negotiated; true if the backend may get it. */
static bool tx_header_ok(struct virtio_net *net, struct virtio_net_hdr_v1 *h, size_t frame_len)
{
	uint8_t gso = h->gso_type;
	if (h->flags & ~(VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID))
		return false;
	h->flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM; /* DATA_VALID means nothing on transmit */
	if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		if (!virtio_pci_has_feature(net->vdev, VIRTIO_NET_F_CSUM))
			return false;
		uint32_t end = (uint32_t)le16toh(h->csum_start) + le16toh(h->csum_offset) + 2;
		if (end > frame_len)
			return false;
	}
	switch (gso) {
	case VIRTIO_NET_HDR_GSO_NONE:
		if (frame_len > NET_MAX_FRAME)
			return false;
		break;
	case VIRTIO_NET_HDR_GSO_TCPV4:
	case VIRTIO_NET_HDR_GSO_TCPV6:
		if (!virtio_pci_has_feature(net->vdev, gso == VIRTIO_NET_HDR_GSO_TCPV4 ? VIRTIO_NET_F_HOST_TSO4
										: VIRTIO_NET_F_HOST_TSO6))
			return false;
		if (!(h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) || le16toh(h->gso_size) == 0)
			return false;
		break;
	default: /* UDP fragmentation offload and ECN are never offered */
		return false;
	}
	h->num_buffers = 0;
	return true;
}

static void tx_one(struct virtio_net *net, const struct vq_chain *c)
{
	if (c->n_in || c->out_len < VIRTIO_NET_HDR_LEN + NET_MIN_FRAME ||
	    c->out_len > VIRTIO_NET_HDR_LEN + NET_MAX_FRAME) {
		count(&net->tx_errors, 1);
		log_warn_ratelimited(&net->rl, COMP,
				     "dropped a transmit chain of %u readable and %u writable bytes (expected a 12-byte "
				     "header and a 14 to %d byte frame, all readable)",
				     c->out_len, c->in_len, NET_MAX_FRAME);
		return;
	}
	size_t len = vq_chain_read(c, 0, net->txbuf, c->out_len);
	struct virtio_net_hdr_v1 h;
	memcpy(&h, net->txbuf, sizeof(h));
	if (!tx_header_ok(net, &h, len - VIRTIO_NET_HDR_LEN)) {
		count(&net->tx_errors, 1);
		log_warn_ratelimited(&net->rl, COMP,
				     "dropped a frame whose header asks for an offload that was not negotiated or is "
				     "inconsistent (flags 0x%x, gso_type 0x%x)",
				     h.flags, h.gso_type);
		return;
	}
	memcpy(net->txbuf, &h, sizeof(h));
	if (net->be->ops->send(net->be, net->txbuf, len) == 0) {
		count(&net->tx_packets, 1);
		count(&net->tx_bytes, len - VIRTIO_NET_HDR_LEN);
	} else {
		count(&net->tx_dropped, 1);
	}
}

static void tx_notify(struct virtio_net *net)
{
	struct virtqueue *vq = virtio_pci_queue(net->vdev, VIRTIO_NET_TXQ);
	struct vq_chain c = { .iov = net->tx_iov, .iov_cap = MAX_SEGMENTS };
	bool pushed = false;
	for (;;) {
		vq_disable_notify(vq);
		int rc;
		while ((rc = virtio_pci_pop(net->vdev, VIRTIO_NET_TXQ, &c)) > 0) {
			tx_one(net, &c);
			virtio_pci_push(net->vdev, VIRTIO_NET_TXQ, c.head, 0);
			pushed = true;
		}
		if (rc < 0 || !vq_enable_notify(vq))
			break;
	}
	if (pushed)
		virtio_pci_notify(net->vdev, VIRTIO_NET_TXQ);
}

/* ---- transport ops ---- */

static void net_queue_notify(void *dev, uint16_t q)
{
	struct virtio_net *net = dev;
	if (q == VIRTIO_NET_RXQ)
		rx_notify(net);
	else if (q == VIRTIO_NET_TXQ)
		tx_notify(net);
}

static void apply_offloads(struct virtio_net *net, uint64_t features)
{
	net->offloads = features & net->be->offloads;
	if (net->be->ops->set_offloads) {
		int rc = net->be->ops->set_offloads(net->be, net->offloads);
		if (rc)
			/* Runs on every activation, which the guest can repeat (reset, DRIVER_OK) in a loop. */
			log_warn_ratelimited(&net->rl, COMP, "the %s backend refused offloads 0x%llx: %s",
					     net->be->ops->kind, (unsigned long long)net->offloads, strerror(-rc));
	}
}

static int net_activate(void *dev)
{
	struct virtio_net *net = dev;
	apply_offloads(net, virtio_pci_driver_features(net->vdev));
	return 0;
}

static void net_reset(void *dev)
{
	struct virtio_net *net = dev;
	drop_all_pending(net);
	apply_offloads(net, 0);
	/* A backend that waits for buffers would wait forever: let it read (and drop) instead. */
	if (net->backend_waiting) {
		net->backend_waiting = false;
		if (net->be->ops->resume)
			net->be->ops->resume(net->be);
	}
}

static void net_config_read(void *dev, uint32_t off, void *data, uint32_t len)
{
	struct virtio_net *net = dev;
	uint8_t img[CONFIG_SIZE];
	memcpy(img, net->mac, 6);
	uint16_t status = htole16(__atomic_load_n(&net->status, __ATOMIC_RELAXED)), pairs = htole16(1);
	memcpy(img + 6, &status, 2);
	memcpy(img + 8, &pairs, 2);
	memcpy(data, img + off, len);
}

#define SAVE_MAGIC 0x4e455431u /* "NET1" */

struct saved_net {
	uint32_t magic;
	uint8_t mac[6];
	uint16_t status;
	uint64_t offloads;
};

static long net_save(void *dev, void *buf, size_t cap)
{
	struct virtio_net *net = dev;
	struct saved_net s = { .magic = SAVE_MAGIC, .status = net->status, .offloads = net->offloads };
	memcpy(s.mac, net->mac, 6);
	if (cap < sizeof(s))
		return -ENOSPC;
	memcpy(buf, &s, sizeof(s));
	return (long)sizeof(s);
}

static int net_load(void *dev, const void *buf, size_t len)
{
	struct virtio_net *net = dev;
	struct saved_net s;
	if (len != sizeof(s))
		return -EINVAL;
	memcpy(&s, buf, sizeof(s));
	if (s.magic != SAVE_MAGIC || (s.offloads & ~OFFLOAD_BITS))
		return -EINVAL;
	/* The guest read this MAC: it stays, whatever the new process would have picked. */
	memcpy(net->mac, s.mac, 6);
	net->status = s.status;
	drop_all_pending(net);
	net->backend_waiting = false;
	apply_offloads(net, s.offloads);
	return 0;
}

/*
 * The two halves of the link bounce virtio_net_set_mac() starts, on the loop thread once it
 * runs: first the guest hears the link went down, then, link_down_ms later, that it is up.
 */
static void link_timer_fired(void *opaque)
{
	struct virtio_net *net = opaque;
	if (!net->link_down_sent) {
		net->link_down_sent = true;
		virtio_pci_config_changed(net->vdev);
		event_timer_set(net->link_timer, (uint64_t)net->link_down_ms * 1000000, 0);
		return;
	}
	__atomic_store_n(&net->status, VIRTIO_NET_S_LINK_UP, __ATOMIC_RELAXED);
	virtio_pci_config_changed(net->vdev);
}

static const struct virtio_device_ops net_ops_template = {
	.name = "net",
	.device_id = VIRTIO_ID_NET,
	.pci_class = PCI_CLASS_ETHERNET,
	.num_queues = 2,
	.queue_max_size = VIRTIO_NET_QUEUE_SIZE,
	.config_size = CONFIG_SIZE,
	.config_read = net_config_read,
	.queue_notify = net_queue_notify,
	.activate = net_activate,
	.reset = net_reset,
	.save = net_save,
	.load = net_load,
};

int virtio_net_create(const struct virtio_pci_deps *deps, const uint8_t mac[6], struct net_backend *backend,
		      struct virtio_net **out)
{
	struct virtio_net *net = calloc(1, sizeof(*net));
	uint8_t *txbuf = malloc(VIRTIO_NET_HDR_LEN + NET_MAX_FRAME);
	if (!net || !txbuf || event_loop_add_timer(deps->loop, 0, 0, link_timer_fired, net, &net->link_timer)) {
		free(net);
		free(txbuf);
		backend->ops->destroy(backend);
		return -ENOMEM;
	}
	net->txbuf = txbuf;
	net->be = backend;
	memcpy(net->mac, mac, 6);
	net->status = VIRTIO_NET_S_LINK_UP;
	net->ops = net_ops_template;
	net->ops.features = VIRTIO_F_BIT(VIRTIO_NET_F_MAC) | VIRTIO_F_BIT(VIRTIO_NET_F_STATUS) |
			    VIRTIO_F_BIT(VIRTIO_NET_F_MRG_RXBUF) | (backend->offloads & OFFLOAD_BITS);
	backend->offloads &= OFFLOAD_BITS;
	backend->peer = (struct net_backend_peer){ .deliver = net_deliver, .dev = net };
	int rc = virtio_pci_create(deps, &net->ops, net, &net->vdev);
	if (rc) {
		backend->ops->destroy(backend);
		event_timer_free(net->link_timer);
		free(net->txbuf);
		free(net);
		return rc;
	}
	*out = net;
	return 0;
}

void virtio_net_destroy(struct virtio_net *net)
{
	if (!net)
		return;
	struct virtio_net_stats st;
	virtio_net_get_stats(net, &st);
	log_debug(COMP, "%s backend: rx %llu frames %llu bytes (%llu dropped, %llu errors), tx %llu frames %llu bytes "
			"(%llu dropped, %llu errors)",
		  net->be->ops->kind, (unsigned long long)st.rx_packets, (unsigned long long)st.rx_bytes,
		  (unsigned long long)st.rx_dropped, (unsigned long long)st.rx_errors, (unsigned long long)st.tx_packets,
		  (unsigned long long)st.tx_bytes, (unsigned long long)st.tx_dropped, (unsigned long long)st.tx_errors);
	virtio_pci_destroy(net->vdev);
	event_timer_free(net->link_timer);
	net->be->ops->destroy(net->be);
	drop_all_pending(net);
	free(net->txbuf);
	free(net);
}

void virtio_net_get_stats(const struct virtio_net *net, struct virtio_net_stats *out)
{
	*out = (struct virtio_net_stats){
		.rx_packets = atomic_load(&net->rx_packets), .rx_bytes = atomic_load(&net->rx_bytes),
		.rx_dropped = atomic_load(&net->rx_dropped), .rx_errors = atomic_load(&net->rx_errors),
		.tx_packets = atomic_load(&net->tx_packets), .tx_bytes = atomic_load(&net->tx_bytes),
		.tx_errors = atomic_load(&net->tx_errors), .tx_dropped = atomic_load(&net->tx_dropped),
	};
}

struct virtio_device *virtio_net_vdev(struct virtio_net *net) { return net->vdev; }

void virtio_net_get_mac(const struct virtio_net *net, uint8_t mac[6]) { memcpy(mac, net->mac, 6); }

void virtio_net_set_mac(struct virtio_net *net, const uint8_t mac[6], unsigned int link_down_ms)
{
	memcpy(net->mac, mac, 6);
	/*
	 * A driver that reads the link status learns of the change through a link-down/link-up pair
	 * of configuration-change interrupts (the guest's DHCP client runs again on carrier up); one
	 * that does not would only see an interrupt it ignores.
	 */
	if (!link_down_ms || !virtio_pci_has_feature(net->vdev, VIRTIO_NET_F_STATUS))
		return;
	__atomic_store_n(&net->status, 0, __ATOMIC_RELAXED);
	net->link_down_ms = link_down_ms;
	net->link_down_sent = false;
	event_timer_set(net->link_timer, 1000, 0);
}
