/*
 * What the virtio-net device needs from a network backend (tap, libslirp user networking), and
 * the frame format between them.
 *
 * A frame crosses this interface as a 12-byte virtio-net header (struct virtio_net_hdr_v1, the
 * virtio 1.x layout, little-endian) followed by the Ethernet frame without FCS. A backend that
 * cannot use the header (slirp) ignores it on send and passes a zeroed one on receive; tap
 * passes it through to the kernel, which is what makes checksum and TSO offloads work.
 *
 * Threads: every call in both directions happens on the device's event-loop thread (creation
 * and destruction excepted, which happen while the loop is not running the backend's fds).
 */
#ifndef VMON_BACKENDS_NET_BACKEND_H
#define VMON_BACKENDS_NET_BACKEND_H

#include <stddef.h>
#include <stdint.h>

/* virtio 1.x 5.1.6: the header in front of every packet on both queues. */
struct virtio_net_hdr_v1 {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t num_buffers;
};
#define VIRTIO_NET_HDR_LEN 12
_Static_assert(sizeof(struct virtio_net_hdr_v1) == VIRTIO_NET_HDR_LEN, "virtio-net header is 12 bytes");

#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2
#define VIRTIO_NET_HDR_GSO_NONE 0
#define VIRTIO_NET_HDR_GSO_TCPV4 1
#define VIRTIO_NET_HDR_GSO_UDP 3
#define VIRTIO_NET_HDR_GSO_TCPV6 4
#define VIRTIO_NET_HDR_GSO_ECN 0x80

/* Feature bits (virtio 1.x 5.1.3). */
#define VIRTIO_NET_F_CSUM 0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_GUEST_ECN 9
#define VIRTIO_NET_F_GUEST_UFO 10
#define VIRTIO_NET_F_HOST_TSO4 11
#define VIRTIO_NET_F_HOST_TSO6 12
#define VIRTIO_NET_F_HOST_ECN 13
#define VIRTIO_NET_F_HOST_UFO 14
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS 16

/* The largest frame either side hands over: a 64 KiB GSO packet plus its Ethernet/VLAN header. */
#define NET_MAX_FRAME (65535 + 14 + 4)
#define NET_MIN_FRAME 14 /* an Ethernet header */

/*
 * Where the backend delivers frames for the guest (set by the device when it attaches).
 * deliver() returns 0 when the frame reached the guest, 1 when the device had no receive buffer
 * and kept the frame in its bounded queue (a backend that can wait, tap, should stop reading
 * until resume() is called), or -ENOBUFS when the frame was dropped (counted by the device).
 */
struct net_backend_peer {
	int (*deliver)(void *dev, const void *pkt, size_t len);
	void *dev;
};

struct net_backend;

struct net_backend_ops {
	const char *kind; /* "user", "tap" */
	/*
	 * Sends one frame from the guest (header + frame, len <= VIRTIO_NET_HDR_LEN + NET_MAX_FRAME).
	 * Returns 0, or a negative errno when the frame was dropped.
	 */
	int (*send)(struct net_backend *be, const void *pkt, size_t len);
	/*
	 * The guest accepted these VIRTIO_NET_F_* bits (a subset of be->offloads) or was reset
	 * (features 0): configure what the backend may hand over (tap: TUNSETOFFLOAD). May be NULL.
	 */
	int (*set_offloads)(struct net_backend *be, uint64_t features);
	/* The device has receive buffers again after a deliver() returned 1. May be NULL. */
	void (*resume)(struct net_backend *be);
	void (*destroy)(struct net_backend *be);
};

struct net_backend {
	const struct net_backend_ops *ops;
	uint64_t offloads;            /* VIRTIO_NET_F_* offload bits this backend can honour */
	struct net_backend_peer peer; /* set by virtio_net_create() */
};

#endif
