#include "virtio/virtio_vsock.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "backends/vsock_unix.h"
#include "lib/log.h"
#include "lib/util.h"

#define COMP "virtio-vsock"
#define RXQ 0
#define TXQ 1
#define EVQ 2
#define QUEUE_SIZE 256
#define MAX_SEGMENTS (QUEUE_SIZE + 1024) /* a ring chain, or an indirect table */
#define PCI_CLASS_OTHER 0xff0000
#define CONFIG_SIZE 8 /* le64 guest_cid */
#define HDR VIRTIO_VSOCK_HDR_SIZE

#define SAVE_MAGIC 0x56534f43u /* "VSOC" */
#define SAVE_VERSION 1

enum conn_state {
	CONN_FREE = 0,
	CONN_CONNECTING,  /* host-initiated: REQUEST owed or sent, waiting for the guest's RESPONSE */
	CONN_ESTABLISHED,
	CONN_RESETTING,   /* an RST is owed to the guest; then the slot is freed */
};

/* Control packets owed to the guest, one flag each: bounded by construction. */
#define OWE_REQUEST 1u
#define OWE_RESPONSE 2u
#define OWE_SHUTDOWN 4u
#define OWE_CREDIT_UPDATE 8u
#define OWE_RST 16u

struct virtio_vsock;

struct conn {
	struct virtio_vsock *vs;
	enum conn_state state;
	int fd;                 /* the host program's socket; -1 once closed */
	uint32_t watched;       /* events fd is registered for (0: not registered) */
	uint32_t local_port;    /* the host side's port (dst_port of the guest's packets) */
	uint32_t peer_port;     /* the guest's port */
	uint32_t owe;           /* OWE_* */

	/* What the guest lets us send: its buffer, what it forwarded, what we sent. */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	/* What we let the guest send: received, forwarded to the host program, last advertised. */
	uint32_t rx_cnt, fwd_cnt, fwd_cnt_told;
	uint8_t *buf;           /* VIRTIO_VSOCK_BUF_ALLOC bytes: guest data the host has not taken */
	uint32_t head, used;    /* ring: oldest byte at head, used bytes */

	bool readable;          /* the host socket has data or EOF we have not read */
	bool host_eof;          /* the host program stopped sending */
	bool wr_shut;           /* we shut the host socket's sending side for the guest */
	uint32_t guest_shutdown; /* VIRTIO_VSOCK_SHUTDOWN_* the guest announced */
};

struct rst_entry {
	uint64_t src_cid;       /* the CID the guest addressed */
	uint32_t src_port, dst_port; /* ours, the guest's */
};

struct virtio_vsock {
	struct virtio_device *vdev;
	struct event_loop *loop;
	struct vsock_unix *unix_side;
	uint32_t cid;
	struct conn conns[VIRTIO_VSOCK_MAX_CONNS];
	unsigned int rr;        /* round-robin start for serving connections */
	uint32_t next_host_port;
	struct rst_entry rst[VIRTIO_VSOCK_RST_QUEUE];
	unsigned int rst_head, rst_count;
	bool tx_stalled;        /* the RST queue filled up: tx waits for receive buffers */
	bool reset_event_pending; /* a TRANSPORT_RESET event is owed (after a snapshot restore) */
	struct event_timer *resume;

	_Atomic uint64_t tx_packets, rx_packets, tx_bytes, rx_bytes, connections, resets, errors;
	struct log_ratelimit rl;
	uint8_t scratch[VIRTIO_VSOCK_MAX_PAYLOAD];
	struct iovec iov[MAX_SEGMENTS];
};

/* ---- wire format ---- */

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) | (uint32_t)get16(p + 2) << 16; }
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

void virtio_vsock_hdr_decode(const uint8_t w[VIRTIO_VSOCK_HDR_SIZE], struct virtio_vsock_hdr *h)
{
	*h = (struct virtio_vsock_hdr){
		.src_cid = get64(w), .dst_cid = get64(w + 8), .src_port = get32(w + 16), .dst_port = get32(w + 20),
		.len = get32(w + 24), .type = get16(w + 28), .op = get16(w + 30), .flags = get32(w + 32),
		.buf_alloc = get32(w + 36), .fwd_cnt = get32(w + 40),
	};
}

void virtio_vsock_hdr_encode(const struct virtio_vsock_hdr *h, uint8_t w[VIRTIO_VSOCK_HDR_SIZE])
{
	put64(w, h->src_cid);
	put64(w + 8, h->dst_cid);
	put32(w + 16, h->src_port);
	put32(w + 20, h->dst_port);
	put32(w + 24, h->len);
	put16(w + 28, h->type);
	put16(w + 30, h->op);
	put32(w + 32, h->flags);
	put32(w + 36, h->buf_alloc);
	put32(w + 40, h->fwd_cnt);
}

uint32_t virtio_vsock_peer_credit(uint32_t buf_alloc, uint32_t fwd_cnt, uint32_t tx_cnt)
{
	uint32_t in_flight = tx_cnt - fwd_cnt; /* modulo 2^32, as the counters wrap */
	return in_flight > buf_alloc ? 0 : buf_alloc - in_flight;
}

/* ---- connections ---- */

static void on_conn_event(void *opaque, uint32_t events);

static void watch(struct conn *cn)
{
	uint32_t want = 0;
	if (cn->fd >= 0 && cn->state == CONN_ESTABLISHED) {
		if (!cn->readable && !cn->host_eof && !(cn->guest_shutdown & VIRTIO_VSOCK_SHUTDOWN_RCV))
			want |= EPOLLIN;
		if (cn->used)
			want |= EPOLLOUT;
	}
	if (want == cn->watched)
		return;
	if (cn->watched)
		event_loop_remove_fd(cn->vs->loop, cn->fd);
	cn->watched = 0;
	if (want && event_loop_add_fd(cn->vs->loop, cn->fd, want, on_conn_event, cn) == 0)
		cn->watched = want;
}

static void close_fd(struct conn *cn)
{
	if (cn->fd < 0)
		return;
	if (cn->watched)
		event_loop_remove_fd(cn->vs->loop, cn->fd);
	cn->watched = 0;
	close(cn->fd);
	cn->fd = -1;
}

static void free_conn(struct conn *cn)
{
	close_fd(cn);
	free(cn->buf);
	struct virtio_vsock *vs = cn->vs;
	memset(cn, 0, sizeof(*cn));
	cn->vs = vs;
	cn->fd = -1;
}

/* Ends a connection with an RST to the guest (sent by the rx pump, which then frees the slot). */
static void reset_conn(struct conn *cn)
{
	close_fd(cn);
	cn->state = CONN_RESETTING;
	cn->owe = OWE_RST;
	cn->used = 0;
}

static struct conn *find_conn(struct virtio_vsock *vs, uint32_t local_port, uint32_t peer_port)
{
	for (unsigned int i = 0; i < VIRTIO_VSOCK_MAX_CONNS; i++) {
		struct conn *cn = &vs->conns[i];
		if (cn->state != CONN_FREE && cn->local_port == local_port && cn->peer_port == peer_port)
			return cn;
	}
	return NULL;
}

static struct conn *alloc_conn(struct virtio_vsock *vs, int fd, uint32_t local_port, uint32_t peer_port)
{
	for (unsigned int i = 0; i < VIRTIO_VSOCK_MAX_CONNS; i++) {
		struct conn *cn = &vs->conns[i];
		if (cn->state != CONN_FREE)
			continue;
		cn->buf = malloc(VIRTIO_VSOCK_BUF_ALLOC);
		if (!cn->buf)
			return NULL;
		cn->fd = fd;
		cn->local_port = local_port;
		cn->peer_port = peer_port;
		return cn;
	}
	return NULL;
}

static void queue_rst(struct virtio_vsock *vs, const struct virtio_vsock_hdr *h)
{
	if (vs->rst_count == VIRTIO_VSOCK_RST_QUEUE)
		return; /* cannot happen: tx stops taking packets while the queue is full */
	vs->rst[(vs->rst_head + vs->rst_count) % VIRTIO_VSOCK_RST_QUEUE] =
		(struct rst_entry){ .src_cid = h->dst_cid, .src_port = h->dst_port, .dst_port = h->src_port };
	vs->rst_count++;
}

/* The guest's view of our free space is stale by what we forwarded since we last told it. */
static void maybe_credit_update(struct conn *cn)
{
	uint32_t guest_view = VIRTIO_VSOCK_BUF_ALLOC - (cn->rx_cnt - cn->fwd_cnt_told);
	if (cn->fwd_cnt != cn->fwd_cnt_told && guest_view < VIRTIO_VSOCK_BUF_ALLOC / 2)
		cn->owe |= OWE_CREDIT_UPDATE;
}

/* After the guest's data is out: pass its SHUTDOWN on, and finish a connection both sides closed. */
static void maybe_finish(struct conn *cn)
{
	if (cn->state != CONN_ESTABLISHED || cn->used)
		return;
	if ((cn->guest_shutdown & VIRTIO_VSOCK_SHUTDOWN_SEND) && !cn->wr_shut && cn->fd >= 0) {
		shutdown(cn->fd, SHUT_WR);
		cn->wr_shut = true;
	}
	if (cn->guest_shutdown == (VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND))
		reset_conn(cn); /* the guest waits for our RST to complete its close */
}

/* Writes buffered guest data to the host program. */
static void flush(struct conn *cn)
{
	while (cn->used && cn->fd >= 0) {
		uint32_t n = MIN(cn->used, VIRTIO_VSOCK_BUF_ALLOC - cn->head);
		ssize_t w = send(cn->fd, cn->buf + cn->head, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (w <= 0) {
			reset_conn(cn); /* the host program went away */
			return;
		}
		cn->head = (cn->head + (uint32_t)w) % VIRTIO_VSOCK_BUF_ALLOC;
		cn->used -= (uint32_t)w;
		cn->fwd_cnt += (uint32_t)w;
	}
	maybe_credit_update(cn);
	maybe_finish(cn);
}

/* ---- packets from the guest (tx queue) ---- */

static void malformed(struct virtio_vsock *vs, const char *why, const struct virtio_vsock_hdr *h)
{
	atomic_fetch_add(&vs->errors, 1);
	log_warn_ratelimited(&vs->rl, COMP, "dropped a packet from the guest (%s): op %u type %u ports %u -> %u len %u",
			     why, h->op, h->type, h->src_port, h->dst_port, h->len);
}

static uint32_t alloc_host_port(struct virtio_vsock *vs)
{
	for (;;) {
		uint32_t p = vs->next_host_port++;
		if (vs->next_host_port > 0x7fffffffu)
			vs->next_host_port = VIRTIO_VSOCK_HOST_PORT_FIRST;
		bool taken = false;
		for (unsigned int i = 0; i < VIRTIO_VSOCK_MAX_CONNS && !taken; i++)
			taken = vs->conns[i].state != CONN_FREE && vs->conns[i].local_port == p;
		if (!taken)
			return p; /* at most MAX_CONNS ports are taken, so this ends */
	}
}

static void guest_connect(struct virtio_vsock *vs, const struct virtio_vsock_hdr *h)
{
	int fd = vsock_unix_dial(vs->unix_side, h->dst_port);
	if (fd < 0) {
		static struct log_ratelimit rl; /* a guest can dial closed ports in a loop */
		log_debug_ratelimited(&rl, COMP, "guest port %u -> host port %u: nobody listens (%s)", h->src_port,
				      h->dst_port, strerror(-fd));
		queue_rst(vs, h);
		return;
	}
	struct conn *cn = alloc_conn(vs, fd, h->dst_port, h->src_port);
	if (!cn) {
		log_warn_ratelimited(&vs->rl, COMP, "refused a guest connection to port %u: %d connections are open",
				     h->dst_port, VIRTIO_VSOCK_MAX_CONNS);
		close(fd);
		queue_rst(vs, h);
		return;
	}
	cn->state = CONN_ESTABLISHED;
	cn->peer_buf_alloc = h->buf_alloc;
	cn->peer_fwd_cnt = h->fwd_cnt;
	cn->owe = OWE_RESPONSE;
	atomic_fetch_add(&vs->connections, 1);
	watch(cn);
}

static void host_established(struct virtio_vsock *vs, struct conn *cn)
{
	char ok[32];
	int n = snprintf(ok, sizeof(ok), "OK %u\n", cn->local_port);
	/* The socket's send buffer is empty at this point: a short write means it is gone. */
	if (send(cn->fd, ok, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
		reset_conn(cn);
		return;
	}
	cn->state = CONN_ESTABLISHED;
	atomic_fetch_add(&vs->connections, 1);
	watch(cn);
}

static void guest_data(struct conn *cn, const struct vq_chain *c, uint32_t len)
{
	uint32_t tail = (cn->head + cn->used) % VIRTIO_VSOCK_BUF_ALLOC;
	uint32_t first = MIN(len, VIRTIO_VSOCK_BUF_ALLOC - tail);
	vq_chain_read(c, HDR, cn->buf + tail, first);
	vq_chain_read(c, HDR + first, cn->buf, len - first);
	cn->used += len;
	cn->rx_cnt += len;
	flush(cn);
}

/* Checks every field of a guest packet; returns NULL if valid, or why not. */
static const char *check_packet(const struct virtio_vsock *vs, const struct virtio_vsock_hdr *h, uint32_t payload)
{
	if (h->dst_cid != VIRTIO_VSOCK_CID_HOST)
		return "destination is not the host (CID 2)";
	if (h->type != VIRTIO_VSOCK_TYPE_STREAM)
		return "socket type is not stream";
	if (h->op < VIRTIO_VSOCK_OP_REQUEST || h->op > VIRTIO_VSOCK_OP_CREDIT_REQUEST)
		return "unknown op";
	if (h->len != payload)
		return "len disagrees with the descriptors";
	if (h->len > VIRTIO_VSOCK_MAX_PAYLOAD)
		return "payload too large";
	if (h->op != VIRTIO_VSOCK_OP_RW && h->len)
		return "payload on a control packet";
	if (h->op == VIRTIO_VSOCK_OP_SHUTDOWN
		    ? (h->flags & ~(uint32_t)(VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND)) != 0
		    : h->flags != 0)
		return "unknown flags";
	(void)vs;
	return NULL;
}

static void handle_packet(struct virtio_vsock *vs, const struct vq_chain *c)
{
	atomic_fetch_add(&vs->tx_packets, 1);
	uint8_t wire[HDR];
	struct virtio_vsock_hdr h = { 0 };
	if (c->n_in || c->out_len < HDR) {
		malformed(vs, c->n_in ? "device-writable buffer on the tx queue" : "shorter than the header", &h);
		return;
	}
	vq_chain_read(c, 0, wire, HDR);
	virtio_vsock_hdr_decode(wire, &h);
	/* Not from this guest's address, or to no port: nothing an RST could be addressed to. */
	if (h.src_cid != vs->cid) {
		malformed(vs, "source CID is not the guest's", &h);
		return;
	}
	if (h.src_port == VIRTIO_VSOCK_PORT_ANY || h.dst_port == VIRTIO_VSOCK_PORT_ANY) {
		malformed(vs, "port VMADDR_PORT_ANY", &h);
		return;
	}
	struct conn *cn = h.dst_cid == VIRTIO_VSOCK_CID_HOST ? find_conn(vs, h.dst_port, h.src_port) : NULL;
	if (h.op == VIRTIO_VSOCK_OP_RST) { /* never answered, whatever else it says */
		if (cn)
			free_conn(cn);
		return;
	}
	const char *bad = check_packet(vs, &h, c->out_len - HDR);
	if (bad) {
		malformed(vs, bad, &h);
		if (cn)
			reset_conn(cn);
		else
			queue_rst(vs, &h);
		return;
	}
	atomic_fetch_add(&vs->tx_bytes, h.len);
	if (h.op == VIRTIO_VSOCK_OP_REQUEST) {
		if (cn) {
			malformed(vs, "REQUEST for a connection that exists", &h);
			if (cn->state != CONN_RESETTING)
				reset_conn(cn);
			return;
		}
		guest_connect(vs, &h);
		return;
	}
	if (!cn) {
		queue_rst(vs, &h);
		return;
	}
	if (cn->state == CONN_RESETTING)
		return; /* its RST is on the way */
	cn->peer_buf_alloc = h.buf_alloc;
	cn->peer_fwd_cnt = h.fwd_cnt;
	switch (h.op) {
	case VIRTIO_VSOCK_OP_RESPONSE:
		if (cn->state != CONN_CONNECTING || (cn->owe & OWE_REQUEST)) {
			malformed(vs, "RESPONSE to no REQUEST", &h);
			reset_conn(cn);
		} else {
			host_established(vs, cn);
		}
		break;
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		if (cn->state != CONN_ESTABLISHED) {
			reset_conn(cn);
			break;
		}
		cn->guest_shutdown |= h.flags;
		maybe_finish(cn);
		break;
	case VIRTIO_VSOCK_OP_RW:
		if (cn->state != CONN_ESTABLISHED || (cn->guest_shutdown & VIRTIO_VSOCK_SHUTDOWN_SEND)) {
			malformed(vs, "data on a connection not open for it", &h);
			reset_conn(cn);
		} else if (h.len > VIRTIO_VSOCK_BUF_ALLOC - cn->used) {
			malformed(vs, "more data than the credit vmon gave", &h);
			reset_conn(cn);
		} else {
			guest_data(cn, c, h.len);
		}
		break;
	case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
		break; /* the credit fields were taken above */
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		cn->owe |= OWE_CREDIT_UPDATE;
		break;
	}
	watch(cn);
}

static bool tx_drain(struct virtio_vsock *vs)
{
	bool pushed = false;
	for (;;) {
		if (vs->rst_count == VIRTIO_VSOCK_RST_QUEUE) {
			vs->tx_stalled = true; /* each packet may need an RST: wait for room */
			break;
		}
		struct vq_chain c = { .iov = vs->iov, .iov_cap = MAX_SEGMENTS };
		if (virtio_pci_pop(vs->vdev, TXQ, &c) <= 0)
			break;
		handle_packet(vs, &c);
		virtio_pci_push(vs->vdev, TXQ, c.head, 0);
		pushed = true;
	}
	if (pushed)
		virtio_pci_notify(vs->vdev, TXQ);
	return pushed;
}

/* ---- packets to the guest (rx queue) ---- */

static bool data_ready(const struct conn *cn)
{
	return cn->state == CONN_ESTABLISHED && cn->fd >= 0 && cn->readable && !cn->host_eof &&
	       !(cn->guest_shutdown & VIRTIO_VSOCK_SHUTDOWN_RCV) &&
	       virtio_vsock_peer_credit(cn->peer_buf_alloc, cn->peer_fwd_cnt, cn->tx_cnt) > 0;
}

static bool rx_has_work(const struct virtio_vsock *vs)
{
	if (vs->rst_count)
		return true;
	for (unsigned int i = 0; i < VIRTIO_VSOCK_MAX_CONNS; i++)
		if (vs->conns[i].owe || data_ready(&vs->conns[i]))
			return true;
	return false;
}

static void conn_hdr(const struct virtio_vsock *vs, struct conn *cn, uint16_t op, struct virtio_vsock_hdr *h)
{
	*h = (struct virtio_vsock_hdr){
		.src_cid = VIRTIO_VSOCK_CID_HOST, .dst_cid = vs->cid, .src_port = cn->local_port, .dst_port = cn->peer_port,
		.type = VIRTIO_VSOCK_TYPE_STREAM, .op = op, .buf_alloc = VIRTIO_VSOCK_BUF_ALLOC, .fwd_cnt = cn->fwd_cnt,
	};
	cn->fwd_cnt_told = cn->fwd_cnt;
}

/* A control packet a connection owes, most urgent first. */
static void owed_packet(struct virtio_vsock *vs, struct conn *cn, struct virtio_vsock_hdr *h)
{
	static const struct { uint32_t bit; uint16_t op; } order[] = {
		{ OWE_RST, VIRTIO_VSOCK_OP_RST },
		{ OWE_REQUEST, VIRTIO_VSOCK_OP_REQUEST },
		{ OWE_RESPONSE, VIRTIO_VSOCK_OP_RESPONSE },
		{ OWE_SHUTDOWN, VIRTIO_VSOCK_OP_SHUTDOWN },
		{ OWE_CREDIT_UPDATE, VIRTIO_VSOCK_OP_CREDIT_UPDATE },
	};
	for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
		if (!(cn->owe & order[i].bit))
			continue;
		cn->owe &= ~order[i].bit;
		conn_hdr(vs, cn, order[i].op, h);
		if (order[i].bit == OWE_SHUTDOWN)
			h->flags = VIRTIO_VSOCK_SHUTDOWN_SEND;
		if (order[i].bit == OWE_RST) {
			h->buf_alloc = 0;
			atomic_fetch_add(&vs->resets, 1);
			free_conn(cn);
		}
		return;
	}
}

/*
 * Builds the next packet for the guest into the receive chain c. Returns the bytes written, or
 * 0 when there was nothing to send after all (a host socket had no data): the chain is unused.
 */
static uint32_t rx_fill(struct virtio_vsock *vs, const struct vq_chain *c)
{
	struct virtio_vsock_hdr h;
	uint8_t wire[HDR];
	if (vs->rst_count) {
		const struct rst_entry *r = &vs->rst[vs->rst_head];
		h = (struct virtio_vsock_hdr){ .src_cid = r->src_cid, .dst_cid = vs->cid, .src_port = r->src_port,
					       .dst_port = r->dst_port, .type = VIRTIO_VSOCK_TYPE_STREAM,
					       .op = VIRTIO_VSOCK_OP_RST };
		vs->rst_head = (vs->rst_head + 1) % VIRTIO_VSOCK_RST_QUEUE;
		vs->rst_count--;
		atomic_fetch_add(&vs->resets, 1);
		virtio_vsock_hdr_encode(&h, wire);
		return (uint32_t)vq_chain_write(c, 0, wire, HDR);
	}
	for (unsigned int k = 0; k < VIRTIO_VSOCK_MAX_CONNS; k++) {
		unsigned int i = (vs->rr + k) % VIRTIO_VSOCK_MAX_CONNS;
		struct conn *cn = &vs->conns[i];
		if (cn->owe) {
			vs->rr = i + 1;
			owed_packet(vs, cn, &h);
			virtio_vsock_hdr_encode(&h, wire);
			return (uint32_t)vq_chain_write(c, 0, wire, HDR);
		}
		if (!data_ready(cn))
			continue;
		vs->rr = i + 1;
		uint32_t credit = virtio_vsock_peer_credit(cn->peer_buf_alloc, cn->peer_fwd_cnt, cn->tx_cnt);
		size_t want = MIN(MIN((size_t)credit, (size_t)(c->in_len - HDR)), sizeof(vs->scratch));
		if (want == 0)
			return 0; /* cannot happen: in_len > HDR is checked */
		ssize_t n = recv(cn->fd, vs->scratch, want, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
			cn->readable = false;
			watch(cn);
			return 0;
		}
		if (n < 0) {
			reset_conn(cn);
			return 0;
		}
		if (n == 0) {
			cn->host_eof = true;
			cn->owe |= OWE_SHUTDOWN;
			watch(cn);
			return 0;
		}
		conn_hdr(vs, cn, VIRTIO_VSOCK_OP_RW, &h);
		h.len = (uint32_t)n;
		cn->tx_cnt += (uint32_t)n;
		atomic_fetch_add(&vs->rx_bytes, (uint64_t)n);
		virtio_vsock_hdr_encode(&h, wire);
		vq_chain_write(c, 0, wire, HDR);
		vq_chain_write(c, HDR, vs->scratch, (size_t)n);
		return HDR + (uint32_t)n;
	}
	return 0;
}

static bool rx_pump(struct virtio_vsock *vs)
{
	bool pushed = false;
	while (rx_has_work(vs)) {
		struct vq_chain c = { .iov = vs->iov, .iov_cap = MAX_SEGMENTS };
		if (virtio_pci_pop(vs->vdev, RXQ, &c) <= 0)
			break; /* no buffers: the guest's next rx notification brings us back */
		if (c.n_out || c.in_len <= HDR) {
			atomic_fetch_add(&vs->errors, 1);
			virtio_pci_set_needs_reset(vs->vdev, "an rx buffer is not device-writable or smaller than a packet");
			break;
		}
		uint32_t n = rx_fill(vs, &c);
		if (!n) {
			vq_unpop(virtio_pci_queue(vs->vdev, RXQ), 1);
			continue;
		}
		virtio_pci_push(vs->vdev, RXQ, c.head, n);
		atomic_fetch_add(&vs->rx_packets, 1);
		pushed = true;
	}
	if (pushed)
		virtio_pci_notify(vs->vdev, RXQ);
	return pushed;
}

static void send_reset_event(struct virtio_vsock *vs)
{
	if (!vs->reset_event_pending || !virtio_pci_running(vs->vdev))
		return;
	struct vq_chain c = { .iov = vs->iov, .iov_cap = MAX_SEGMENTS };
	if (virtio_pci_pop(vs->vdev, EVQ, &c) <= 0)
		return; /* no buffer yet: the guest's next event-queue notification brings us back */
	if (c.n_out || c.in_len < 4) {
		atomic_fetch_add(&vs->errors, 1);
		virtio_pci_set_needs_reset(vs->vdev, "an event buffer is not device-writable or smaller than an event");
		return;
	}
	uint8_t ev[4];
	put32(ev, VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
	vq_chain_write(&c, 0, ev, sizeof(ev));
	virtio_pci_push(vs->vdev, EVQ, c.head, sizeof(ev));
	virtio_pci_notify(vs->vdev, EVQ);
	vs->reset_event_pending = false;
	log_info(COMP, "told the guest its vsock connections were reset (restored from a snapshot)");
}

/* Runs everything that can make progress: tx, then rx, and tx again if it waited for rx room. */
static void kick(struct virtio_vsock *vs)
{
	if (!virtio_pci_running(vs->vdev))
		return;
	for (;;) {
		tx_drain(vs);
		rx_pump(vs);
		if (!vs->tx_stalled || vs->rst_count == VIRTIO_VSOCK_RST_QUEUE)
			break;
		vs->tx_stalled = false;
	}
}

static void on_conn_event(void *opaque, uint32_t events)
{
	struct conn *cn = opaque;
	struct virtio_vsock *vs = cn->vs;
	if (cn->fd < 0)
		return;
	if (events & EPOLLOUT)
		flush(cn);
	if (cn->fd >= 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
		cn->readable = true;
		if (!(events & EPOLLOUT) && cn->used)
			flush(cn); /* a hang-up may be all we hear about a write side that failed */
	}
	if (cn->state != CONN_FREE)
		watch(cn);
	kick(vs);
}

/* The muxer has a host program that wrote "CONNECT <port>". */
static void on_host_connect(void *opaque, int fd, uint32_t port)
{
	struct virtio_vsock *vs = opaque;
	if (!virtio_pci_running(vs->vdev)) {
		log_info(COMP, "refused a host connection to guest port %u: the guest's vsock driver is not running", port);
		close(fd);
		return;
	}
	if (port == VIRTIO_VSOCK_PORT_ANY) {
		close(fd);
		return;
	}
	struct conn *cn = alloc_conn(vs, fd, alloc_host_port(vs), port);
	if (!cn) {
		log_warn_ratelimited(&vs->rl, COMP, "refused a host connection to guest port %u: %d connections are open",
				     port, VIRTIO_VSOCK_MAX_CONNS);
		close(fd);
		return;
	}
	cn->state = CONN_CONNECTING;
	cn->owe = OWE_REQUEST;
	kick(vs);
}

/* ---- device ops ---- */

static void vsock_queue_notify(void *dev, uint16_t q)
{
	struct virtio_vsock *vs = dev;
	if (q == EVQ)
		send_reset_event(vs);
	else
		kick(vs);
}

static void vsock_reset(void *dev)
{
	struct virtio_vsock *vs = dev;
	for (unsigned int i = 0; i < VIRTIO_VSOCK_MAX_CONNS; i++)
		if (vs->conns[i].state != CONN_FREE)
			free_conn(&vs->conns[i]);
	vs->rst_head = vs->rst_count = 0;
	vs->tx_stalled = false;
	vs->reset_event_pending = false;
}

static void vsock_config_read(void *dev, uint32_t off, void *data, uint32_t len)
{
	struct virtio_vsock *vs = dev;
	uint8_t cfg[CONFIG_SIZE];
	put64(cfg, vs->cid);
	memcpy(data, cfg + off, len);
}

struct saved_vsock {
	uint32_t magic, version;
	uint32_t cid;
	uint32_t pad;
};

static long vsock_save(void *dev, void *buf, size_t cap)
{
	struct virtio_vsock *vs = dev;
	struct saved_vsock s = { .magic = SAVE_MAGIC, .version = SAVE_VERSION, .cid = vs->cid };
	if (cap < sizeof(s))
		return -ENOSPC;
	memcpy(buf, &s, sizeof(s));
	return (long)sizeof(s);
}

static void on_resume(void *opaque)
{
	send_reset_event(opaque);
}

static int vsock_load(void *dev, const void *buf, size_t len)
{
	struct virtio_vsock *vs = dev;
	struct saved_vsock s;
	if (len != sizeof(s))
		return -EINVAL;
	memcpy(&s, buf, sizeof(s));
	if (s.magic != SAVE_MAGIC || s.version != SAVE_VERSION)
		return -EINVAL;
	/*
	 * The host ends of the saved VM's connections stayed with the old process: this one has
	 * none. The guest learns it from a TRANSPORT_RESET event (and re-reads its CID), sent once
	 * the loop runs and the queues are restored.
	 */
	vsock_reset(vs);
	vs->reset_event_pending = true;
	event_timer_set(vs->resume, 1000, 0);
	return 0;
}

static const struct virtio_device_ops vsock_ops = {
	.name = "vsock",
	.device_id = VIRTIO_ID_VSOCK,
	.pci_class = PCI_CLASS_OTHER,
	.num_queues = 3,
	.queue_max_size = QUEUE_SIZE,
	.features = 0, /* stream sockets only: no VIRTIO_VSOCK_F_SEQPACKET */
	.config_size = CONFIG_SIZE,
	.config_read = vsock_config_read,
	.queue_notify = vsock_queue_notify,
	.reset = vsock_reset,
	.save = vsock_save,
	.load = vsock_load,
};

int virtio_vsock_create(const struct virtio_pci_deps *deps, uint32_t cid, const char *uds_path,
			struct virtio_vsock **out)
{
	if (cid < VIRTIO_VSOCK_MIN_GUEST_CID || cid > VIRTIO_VSOCK_MAX_GUEST_CID) {
		log_error(COMP, "--vsock cid=%u is not a guest CID: use a number from 3 to 4294967294", cid);
		return -EINVAL;
	}
	struct virtio_vsock *vs = calloc(1, sizeof(*vs));
	if (!vs)
		return -ENOMEM;
	vs->loop = deps->loop;
	vs->cid = cid;
	vs->next_host_port = VIRTIO_VSOCK_HOST_PORT_FIRST;
	for (unsigned int i = 0; i < VIRTIO_VSOCK_MAX_CONNS; i++) {
		vs->conns[i].vs = vs;
		vs->conns[i].fd = -1;
	}
	int rc = event_loop_add_timer(deps->loop, 0, 0, on_resume, vs, &vs->resume);
	if (!rc)
		rc = vsock_unix_create(deps->loop, uds_path, on_host_connect, vs, &vs->unix_side);
	if (!rc)
		rc = virtio_pci_create(deps, &vsock_ops, vs, &vs->vdev);
	if (rc) {
		virtio_vsock_destroy(vs);
		return rc;
	}
	*out = vs;
	return 0;
}

void virtio_vsock_destroy(struct virtio_vsock *vs)
{
	if (!vs)
		return;
	if (vs->vdev)
		virtio_pci_destroy(vs->vdev);
	for (unsigned int i = 0; i < VIRTIO_VSOCK_MAX_CONNS; i++)
		if (vs->conns[i].state != CONN_FREE)
			free_conn(&vs->conns[i]);
	vsock_unix_destroy(vs->unix_side);
	if (vs->resume)
		event_timer_free(vs->resume);
	free(vs);
}

uint32_t virtio_vsock_cid(const struct virtio_vsock *vs) { return vs->cid; }

void virtio_vsock_set_cid(struct virtio_vsock *vs, uint32_t cid) { vs->cid = cid; }

void virtio_vsock_get_stats(const struct virtio_vsock *vs, struct virtio_vsock_stats *st)
{
	*st = (struct virtio_vsock_stats){
		.tx_packets = atomic_load(&vs->tx_packets), .rx_packets = atomic_load(&vs->rx_packets),
		.tx_bytes = atomic_load(&vs->tx_bytes), .rx_bytes = atomic_load(&vs->rx_bytes),
		.connections = atomic_load(&vs->connections), .resets = atomic_load(&vs->resets),
		.errors = atomic_load(&vs->errors),
	};
}
