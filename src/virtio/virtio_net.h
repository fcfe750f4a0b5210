/*
 * virtio-net (virtio 1.x section 5.1): an Ethernet NIC for the guest, connected to a host
 * backend (src/backends/net_backend.h: libslirp user networking or a tap device).
 *
 * Queue 0 receives, queue 1 transmits; the configuration space holds the MAC address
 * (VIRTIO_NET_F_MAC) and the link status (VIRTIO_NET_F_STATUS, always up). Offloads (checksum,
 * TSO) are offered only when the backend can honour them; mergeable receive buffers
 * (VIRTIO_NET_F_MRG_RXBUF) are offered always.
 *
 * Hostile input: a transmit chain that is shorter than the header, has device-writable parts,
 * carries a frame shorter than an Ethernet header or longer than NET_MAX_FRAME, or asks for an
 * offload that was not negotiated, is dropped and counted (tx_errors); the chain goes back to
 * the driver. A receive chain with driver-readable parts is returned unused and counted
 * (rx_errors). Frames for the guest that find no receive buffer wait in a queue of at most
 * VIRTIO_NET_RX_QUEUE_FRAMES frames / VIRTIO_NET_RX_QUEUE_BYTES bytes; beyond that they are
 * dropped and counted (rx_dropped), as are frames too big for the buffers the driver gives.
 */
#ifndef VMON_VIRTIO_VIRTIO_NET_H
#define VMON_VIRTIO_VIRTIO_NET_H

#include <stdint.h>

#include "backends/net_backend.h"
#include "virtio/virtio_pci.h"

#define VIRTIO_NET_S_LINK_UP 1

#define VIRTIO_NET_RXQ 0
#define VIRTIO_NET_TXQ 1
#define VIRTIO_NET_QUEUE_SIZE 256
#define VIRTIO_NET_RX_QUEUE_FRAMES 256
#define VIRTIO_NET_RX_QUEUE_BYTES (1024 * 1024)

struct virtio_net;

struct virtio_net_stats {
	uint64_t rx_packets, rx_bytes;   /* frames (bytes without the header) given to the guest */
	uint64_t rx_dropped;             /* no buffer and the queue full, driver not ready, frame too big */
	uint64_t rx_errors;              /* malformed receive chains */
	uint64_t tx_packets, tx_bytes;   /* frames the guest sent that the backend took */
	uint64_t tx_errors;              /* malformed transmit chains and headers */
	uint64_t tx_dropped;             /* well-formed frames the backend refused */
};

/*
 * Creates the device on deps->pci with the given MAC and backend; the device owns the backend
 * from then on (also when this fails). Returns 0 or a negative errno (logged).
 */
int virtio_net_create(const struct virtio_pci_deps *deps, const uint8_t mac[6], struct net_backend *backend,
		      struct virtio_net **out);
void virtio_net_destroy(struct virtio_net *net);

/* Counters (any thread). */
void virtio_net_get_stats(const struct virtio_net *net, struct virtio_net_stats *out);

/* The MAC address in the card's configuration space. */
void virtio_net_get_mac(const struct virtio_net *net, uint8_t mac[6]);
/*
 * Gives the card a new MAC address (a clone's identity), after its state was loaded and before
 * the vCPUs run: the configuration space shows it from then on, which is what a driver reads
 * when it probes the device. If the driver negotiated VIRTIO_NET_F_STATUS and link_down_ms is
 * not 0, the link also goes down once the event loop runs and comes up link_down_ms later, each
 * with a configuration-change interrupt, so the guest reconfigures the interface (DHCP).
 */
void virtio_net_set_mac(struct virtio_net *net, const uint8_t mac[6], unsigned int link_down_ms);

/* The transport object, for tests and the snapshot code. */
struct virtio_device *virtio_net_vdev(struct virtio_net *net);

#endif
