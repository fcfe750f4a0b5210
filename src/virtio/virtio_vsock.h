/*
 * virtio-vsock (virtio 1.x section 5.10): stream sockets between the guest and host programs,
 * the host side on Unix sockets (src/backends/vsock_unix.h; --vsock cid=N,uds=PATH).
 *
 * Queues: 0 rx (packets to the guest), 1 tx (packets from the guest), 2 event. Every packet
 * starts with a 44-byte header; vmon validates each of its fields (src/dst CID, type, op,
 * flags, len against the descriptors, the connection it names) and answers what it cannot
 * accept with RST.
 *
 * Flow control without unbounded buffering, both ways (buf_alloc/fwd_cnt credit):
 *   guest -> host: each connection has a VIRTIO_VSOCK_BUF_ALLOC-byte buffer for data the host
 *     program has not read yet; vmon advertises that size, and a guest that sends beyond the
 *     credit it was given gets its connection reset. Freed space is announced with
 *     CREDIT_UPDATE.
 *   host -> guest: vmon reads a host socket only while the guest has credit for that
 *     connection and receive buffers, straight into the buffer; otherwise the host program's
 *     writes block. Control packets owed to the guest are per-connection flags plus a bounded
 *     queue of RSTs for packets that name no connection; when it is full, vmon stops taking
 *     packets from the tx queue until the guest gives receive buffers.
 * After a snapshot is restored, the host connections are gone: vmon sends the guest a
 * VIRTIO_VSOCK_EVENT_TRANSPORT_RESET event, and the guest resets its sockets.
 */
#ifndef VMON_VIRTIO_VIRTIO_VSOCK_H
#define VMON_VIRTIO_VIRTIO_VSOCK_H

#include <stdint.h>

#include "virtio/virtio_pci.h"

/* The packet header (virtio 1.x 5.10.6), little-endian on the wire. */
#define VIRTIO_VSOCK_HDR_SIZE 44
#define VIRTIO_VSOCK_CID_HOST 2
#define VIRTIO_VSOCK_MIN_GUEST_CID 3
#define VIRTIO_VSOCK_MAX_GUEST_CID 0xfffffffeu /* 0xffffffff is VMADDR_CID_ANY */
#define VIRTIO_VSOCK_PORT_ANY 0xffffffffu
#define VIRTIO_VSOCK_TYPE_STREAM 1
enum virtio_vsock_op {
	VIRTIO_VSOCK_OP_INVALID = 0,
	VIRTIO_VSOCK_OP_REQUEST = 1,
	VIRTIO_VSOCK_OP_RESPONSE = 2,
	VIRTIO_VSOCK_OP_RST = 3,
	VIRTIO_VSOCK_OP_SHUTDOWN = 4,
	VIRTIO_VSOCK_OP_RW = 5,
	VIRTIO_VSOCK_OP_CREDIT_UPDATE = 6,
	VIRTIO_VSOCK_OP_CREDIT_REQUEST = 7,
};
#define VIRTIO_VSOCK_SHUTDOWN_RCV 1
#define VIRTIO_VSOCK_SHUTDOWN_SEND 2
#define VIRTIO_VSOCK_EVENT_TRANSPORT_RESET 0

#define VIRTIO_VSOCK_BUF_ALLOC (64 * 1024)  /* per-connection guest->host buffer */
#define VIRTIO_VSOCK_MAX_PAYLOAD (64 * 1024) /* largest RW payload either way */
#define VIRTIO_VSOCK_MAX_CONNS 256
#define VIRTIO_VSOCK_RST_QUEUE 64            /* RSTs owed for packets naming no connection */
#define VIRTIO_VSOCK_HOST_PORT_FIRST 49152   /* host ports of host-initiated connections */

struct virtio_vsock_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port;
	uint32_t len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
};

/* Header <-> wire bytes. */
void virtio_vsock_hdr_decode(const uint8_t wire[VIRTIO_VSOCK_HDR_SIZE], struct virtio_vsock_hdr *h);
void virtio_vsock_hdr_encode(const struct virtio_vsock_hdr *h, uint8_t wire[VIRTIO_VSOCK_HDR_SIZE]);

/*
 * Bytes the peer can still take: its buffer size minus what was sent and not yet forwarded
 * (tx_cnt - fwd_cnt, modulo 2^32). A peer reporting more forwarded than sent, or a buffer
 * smaller than what is in flight, gets 0, never a wrapped-around huge credit.
 */
uint32_t virtio_vsock_peer_credit(uint32_t buf_alloc, uint32_t fwd_cnt, uint32_t tx_cnt);

struct virtio_vsock;

struct virtio_vsock_stats {
	uint64_t tx_packets, rx_packets; /* from / to the guest */
	uint64_t tx_bytes, rx_bytes;     /* payload bytes from / to the guest */
	uint64_t connections;            /* connections established so far */
	uint64_t resets;                 /* RSTs sent to the guest */
	uint64_t errors;                 /* malformed packets and buffers, credit violations */
};

/*
 * Creates the device on deps->pci with guest CID cid (3 .. 0xfffffffe) and its host side on
 * uds_path. Returns 0 or a negative errno (logged).
 */
int virtio_vsock_create(const struct virtio_pci_deps *deps, uint32_t cid, const char *uds_path,
			struct virtio_vsock **out);
void virtio_vsock_destroy(struct virtio_vsock *vs);

/* The guest's CID, as its configuration space shows it. */
uint32_t virtio_vsock_cid(const struct virtio_vsock *vs);
/*
 * Gives the guest a new CID (a clone's identity; 3 .. 0xfffffffe, checked by the caller), after
 * the device's state was loaded and before the vCPUs run: the transport-reset event a load
 * sends makes the guest's driver read the CID again.
 */
void virtio_vsock_set_cid(struct virtio_vsock *vs, uint32_t cid);

void virtio_vsock_get_stats(const struct virtio_vsock *vs, struct virtio_vsock_stats *st);

#endif
