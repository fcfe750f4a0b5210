/*
 * virtio-vsock driven as a guest driver drives it (BAR0 on the MMIO bus, rings in a fake guest
 * memory) with real Unix sockets on the host side: the packet format, connections both ways,
 * credit accounting in both directions, every kind of malformed packet, flow control of the
 * RST queue, and the transport-reset event after a snapshot load.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/unix_socket.h"
#include "backends/vsock_unix.h"
#include "lib/util.h"
#include "virtio/virtio_vsock.h"

#include "virtio_rig.h"

#define RAM (8u << 20)
#define QSZ 64
#define RXQ 0
#define TXQ 1
#define EVQ 2
#define CID 3
#define HOST 2

struct rig {
	struct vrig v;
	struct virtio_vsock *vs;
	char dir[64], uds[96];
};

static const struct vrig_spec spec = { .ram = RAM, .device_id = VIRTIO_ID_VSOCK, .queues = 3, .qsize = QSZ };

static void rig_setup(struct rig *r)
{
	memset(r, 0, sizeof(*r));
	strcpy(r->dir, "/tmp/vmon-vsock-XXXXXX");
	assert_non_null(mkdtemp(r->dir));
	snprintf(r->uds, sizeof(r->uds), "%s/v.sock", r->dir);
	vrig_init(&r->v, &spec);
	assert_int_equal(virtio_vsock_create(&r->v.deps, CID, r->uds, &r->vs), 0);
	vrig_attach(&r->v);
	start_driver(&r->v, 0); /* VERSION_1 only: plain rings */
}

static void rig_free(struct rig *r)
{
	event_loop_stop(r->v.loop);
	virtio_vsock_destroy(r->vs);
	vrig_free(&r->v);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", r->dir);
	assert_int_equal(system(cmd), 0);
}

/* Offers n rx buffers of 44 + payload bytes (header and data in separate descriptors, as Linux). */
static uint64_t rx_bufs[64];
static unsigned int rx_buf_count;

static void give_rx(struct rig *r, int n, uint32_t payload)
{
	for (int i = 0; i < n; i++) {
		uint64_t a = alloc_data(&r->v, VIRTIO_VSOCK_HDR_SIZE + payload);
		rx_bufs[(r->v.q[RXQ].desc_next % QSZ)] = a;
		rx_buf_count++;
		struct seg s[2] = { { a, VIRTIO_VSOCK_HDR_SIZE, true }, { a + VIRTIO_VSOCK_HDR_SIZE, payload, true } };
		add_chain(&r->v, RXQ, s, 2, i == n - 1);
	}
}

/* Waits for the next packet the device sends the guest; copies its payload into data. */
static bool recv_pkt(struct rig *r, struct virtio_vsock_hdr *h, void *data, uint32_t cap)
{
	uint32_t id, len;
	if (!next_used(&r->v, RXQ, &id, &len))
		return false;
	assert_true(len >= VIRTIO_VSOCK_HDR_SIZE);
	uint64_t a = rx_bufs[id];
	virtio_vsock_hdr_decode(r->v.ram + a, h);
	assert_int_equal(len, VIRTIO_VSOCK_HDR_SIZE + h->len);
	if (data)
		memcpy(data, r->v.ram + a + VIRTIO_VSOCK_HDR_SIZE, MIN(cap, h->len));
	return true;
}

static struct virtio_vsock_hdr hdr(uint16_t op, uint32_t src_port, uint32_t dst_port)
{
	return (struct virtio_vsock_hdr){ .src_cid = CID, .dst_cid = HOST, .src_port = src_port, .dst_port = dst_port,
					  .type = VIRTIO_VSOCK_TYPE_STREAM, .op = op, .buf_alloc = 65536 };
}

/* Sends a packet from the guest: header and payload in two descriptors; waits until it is used. */
static void send_pkt_raw(struct rig *r, const struct virtio_vsock_hdr *h, const void *data, uint32_t len)
{
	uint64_t a = alloc_data(&r->v, VIRTIO_VSOCK_HDR_SIZE + len);
	virtio_vsock_hdr_encode(h, r->v.ram + a);
	if (len)
		memcpy(r->v.ram + a + VIRTIO_VSOCK_HDR_SIZE, data, len);
	struct seg s[2] = { { a, VIRTIO_VSOCK_HDR_SIZE, false }, { a + VIRTIO_VSOCK_HDR_SIZE, len, false } };
	uint16_t want = (uint16_t)(r->v.q[TXQ].used_seen + 1);
	add_chain(&r->v, TXQ, s, len ? 2 : 1, true);
	assert_true(wait_used(&r->v, TXQ, want));
	r->v.q[TXQ].used_seen = want;
}

static void send_pkt(struct rig *r, struct virtio_vsock_hdr h, const void *data, uint32_t len)
{
	h.len = len;
	send_pkt_raw(r, &h, data, len);
}

static int listen_port(struct rig *r, uint32_t port)
{
	char path[128];
	snprintf(path, sizeof(path), "%s_%u", r->uds, port);
	int fd = unix_socket_listen(path, "test");
	assert_true(fd >= 0);
	return fd;
}

static int accept_wait(int lfd)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 2000), 1);
	int fd = unix_socket_accept(lfd);
	assert_true(fd >= 0);
	return fd;
}

static bool no_packet_within(struct rig *r, int ms)
{
	usleep((useconds_t)ms * 1000);
	return used_idx(&r->v, RXQ) == r->v.q[RXQ].used_seen;
}

/* ---- pure functions ---- */

static void header_round_trip_is_little_endian(void **state)
{
	(void)state;
	struct virtio_vsock_hdr h = { .src_cid = 0x0102030405060708ull, .dst_cid = 2, .src_port = 0x11223344,
				      .dst_port = 80, .len = 5, .type = 1, .op = 5, .flags = 3, .buf_alloc = 0x10000,
				      .fwd_cnt = 0xdeadbeef };
	uint8_t w[VIRTIO_VSOCK_HDR_SIZE];
	virtio_vsock_hdr_encode(&h, w);
	assert_int_equal(w[0], 0x08);
	assert_int_equal(w[7], 0x01);
	assert_int_equal(w[16], 0x44);
	assert_int_equal(w[30], 5);
	assert_int_equal(w[43], 0xde);
	struct virtio_vsock_hdr back;
	virtio_vsock_hdr_decode(w, &back);
	assert_memory_equal(&h, &back, sizeof(h));
}

static void credit_never_wraps_into_a_huge_window(void **state)
{
	(void)state;
	assert_int_equal(virtio_vsock_peer_credit(1000, 0, 0), 1000);
	assert_int_equal(virtio_vsock_peer_credit(1000, 100, 600), 500);
	assert_int_equal(virtio_vsock_peer_credit(1000, 0, 1000), 0);
	/* Counters wrap modulo 2^32. */
	assert_int_equal(virtio_vsock_peer_credit(1000, 0xfffffff0u, 0x10), 1000 - 0x20);
	/* A guest claiming it forwarded more than it got, or shrinking its buffer below what is in flight. */
	assert_int_equal(virtio_vsock_peer_credit(1000, 700, 600), 0);
	assert_int_equal(virtio_vsock_peer_credit(100, 0, 600), 0);
}

static void connect_line_is_parsed_strictly(void **state)
{
	(void)state;
	uint32_t p = 0;
	assert_int_equal(vsock_unix_parse_connect("CONNECT 52", 10, &p), 0);
	assert_int_equal(p, 52);
	assert_int_equal(vsock_unix_parse_connect("CONNECT 4294967295", 18, &p), 0);
	assert_int_equal(p, 4294967295u);
	assert_int_equal(vsock_unix_parse_connect("CONNECT 4294967296", 18, &p), -EINVAL);
	assert_int_equal(vsock_unix_parse_connect("CONNECT ", 8, &p), -EINVAL);
	assert_int_equal(vsock_unix_parse_connect("CONNECT -1", 10, &p), -EINVAL);
	assert_int_equal(vsock_unix_parse_connect("CONNECT 5 ", 10, &p), -EINVAL);
	assert_int_equal(vsock_unix_parse_connect("connect 5", 9, &p), -EINVAL);
	assert_int_equal(vsock_unix_parse_connect("CONNECT 99999999999", 19, &p), -EINVAL);
}

/* ---- the device ---- */

static void config_holds_the_guest_cid(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	assert_int_equal(rd(&r.v, NUMQ, 2), 3);
	assert_int_equal(rd(&r.v, VIRTIO_PCI_DEVICE_OFF, 4), CID);
	assert_int_equal(rd(&r.v, VIRTIO_PCI_DEVICE_OFF + 4, 4), 0);
	assert_int_equal(rd(&r.v, VIRTIO_PCI_DEVICE_OFF, 1), CID);
	rig_free(&r);
}

/* Guest connects to CID 2 port 1234: vmon dials PATH_1234; data both ways with credit. */
static void guest_connects_to_a_host_port(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	int lfd = listen_port(&r, 1234);
	give_rx(&r, 8, 4096);
	send_pkt(&r, hdr(VIRTIO_VSOCK_OP_REQUEST, 5000, 1234), NULL, 0);
	struct virtio_vsock_hdr h;
	assert_true(recv_pkt(&r, &h, NULL, 0));
	assert_int_equal(h.op, VIRTIO_VSOCK_OP_RESPONSE);
	assert_int_equal(h.src_cid, HOST);
	assert_int_equal(h.dst_cid, CID);
	assert_int_equal(h.src_port, 1234);
	assert_int_equal(h.dst_port, 5000);
	assert_int_equal(h.buf_alloc, VIRTIO_VSOCK_BUF_ALLOC);
	int hfd = accept_wait(lfd);

	send_pkt(&r, hdr(VIRTIO_VSOCK_OP_RW, 5000, 1234), "hello", 5);
	char buf[64] = { 0 };
	assert_int_equal(read_wait(hfd, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "hello", 5);

	assert_int_equal(send(hfd, "world!", 6, 0), 6);
	assert_true(recv_pkt(&r, &h, buf, sizeof(buf)));
	assert_int_equal(h.op, VIRTIO_VSOCK_OP_RW);
	assert_int_equal(h.len, 6);
	assert_memory_equal(buf, "world!", 6);
	assert_int_equal(h.fwd_cnt, 5); /* the 5 bytes went on to the host program */

	/* The host program closes: the guest hears SHUTDOWN(SEND). */
	close(hfd);
	assert_true(recv_pkt(&r, &h, NULL, 0));
	assert_int_equal(h.op, VIRTIO_VSOCK_OP_SHUTDOWN);
	assert_int_equal(h.flags, VIRTIO_VSOCK_SHUTDOWN_SEND);
	/* The guest closes too: SHUTDOWN both ways, answered with RST. */
	struct virtio_vsock_hdr sh = hdr(VIRTIO_VSOCK_OP_SHUTDOWN, 5000, 1234);
	sh.flags = VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND;
	send_pkt(&r, sh, NULL, 0);
	assert_true(recv_pkt(&r, &h, NULL, 0));
	assert_int_equal(h.op, VIRTIO_VSOCK_OP_RST);
	/* The connection is gone: data on it is answered with RST. */
	send_pkt(&r, hdr(VIRTIO_VSOCK_OP_RW, 5000, 1234), "x", 1);
	assert_true(recv_pkt(&r, &h, NULL, 0));
	assert_int_equal(h.op, VIRTIO_VSOCK_OP_RST);

	struct virtio_vsock_stats st;
	virtio_vsock_get_stats(r.vs, &st);
	assert_int_equal(st.connections, 1);
	assert_int_equal(st.tx_bytes, 6);
	assert_int_equal(st.rx_bytes, 6);
	close(lfd);
	rig_free(&r);
}

static void guest_connect_to_a_port_nobody_listens_on_is_reset(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	give_rx(&r, 2, 4096);
	send_pkt(&r, hdr(VIRTIO_VSOCK_OP_REQUEST, 5000, 999), NULL, 0);
	struct virtio_vsock_hdr h;
	assert_true(recv_pkt(&r, &h, NULL, 0));
	assert_int_equal(h.op, VIRTIO_VSOCK_OP_RST);
	assert_int_equal(h.src_port, 999);
	assert_int_equal(h.dst_port, 5000);
	rig_free(&r);
}

/* Host writes CONNECT 80 to PATH: the guest gets a REQUEST; after its RESPONSE the host reads OK. */
static int host_connect(struct rig *r, uint32_t guest_port, struct virtio_vsock_hdr *req)
{
	int fd = unix_socket_connect(r->uds);
	assert_true(fd >= 0);
	char line[32];
	int n = snprintf(line, sizeof(line), "CONNECT %u\n", guest_port);
	assert_int_equal(send(fd, line, (size_t)n, 0), n);
	assert_true(recv_pkt(r, req, NULL, 0));
	assert_int_equal(req->op, VIRTIO_VSOCK_OP_REQUEST);
	assert_int_equal(req->dst_port, guest_port);
	assert_true(req->src_port >= VIRTIO_VSOCK_HOST_PORT_FIRST);
	return fd;
}

static void host_connects_to_a_guest_port(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	give_rx(&r, 8, 4096);
	struct virtio_vsock_hdr req, h;
	int fd = host_connect(&r, 80, &req);
	/* Bytes the host sends before OK wait for the connection. */
	assert_int_equal(send(fd, "early", 5, 0), 5);
	assert_true(no_packet_within(&r, 50));
	send_pkt(&r, hdr(VIRTIO_VSOCK_OP_RESPONSE, 80, req.src_port), NULL, 0);
	char buf[64] = { 0 }, want[32];
	snprintf(want, sizeof(want), "OK %u\n", req.src_port);
	assert_int_equal(read_wait(fd, buf, strlen(want)), (ssize_t)strlen(want));
	assert_string_equal(buf, want);
	assert_true(recv_pkt(&r, &h, buf, sizeof(buf)));
	assert_int_equal(h.op, VIRTIO_VSOCK_OP_RW);
	assert_int_equal(h.src_port, req.src_port);
	assert_int_equal(h.dst_port, 80);
	assert_memory_equal(buf, "early", 5);
	send_pkt(&r, hdr(VIRTIO_VSOCK_OP_RW, 80, req.src_port), "pong", 4);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(read_wait(fd, buf, sizeof(buf)), 4);
	assert_string_equal(buf, "pong");
	/* A guest RST closes the host side. */
	send_pkt(&r, hdr(VIRTIO_VSOCK_OP_RST, 80, req.src_port), NULL, 0);
	assert_int_equal(read_wait(fd, buf, sizeof(buf)), 0);
	close(fd);
	rig_free(&r);
}

static void host_connect_refused_by_the_guest_closes_the_client(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	give_rx(&r, 4, 4096);
	struct virtio_vsock_hdr req;
	int fd = host_connect(&r, 81, &req);
	send_pkt(&r, hdr(VIRTIO_VSOCK_OP_RST, 81, req.src_port), NULL, 0);
	char buf[16];
	assert_int_equal(read_wait(fd, buf, sizeof(buf)), 0); /* EOF, no "OK" */
	close(fd);
	/* A bad request line gets an error and is closed. */
	fd = unix_socket_connect(r.uds);
	assert_true(fd >= 0);
	assert_int_equal(send(fd, "HELLO\n", 6, 0), 6);
	ssize_t n = read_wait(fd, buf, 3);
	assert_int_equal(n, 3);
	assert_memory_equal(buf, "ERR", 3);
	close(fd);
	rig_free(&r);
}

/* The guest's buf_alloc/fwd_cnt bound what vmon sends it. */
static void host_to_guest_data_respects_guest_credit(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	vrig_track_writes(&r.v);
	int lfd = listen_port(&r, 7);
	give_rx(&r, 8, 4096);
	struct virtio_vsock_hdr req = hdr(VIRTIO_VSOCK_OP_REQUEST, 6000, 7), h;
	req.buf_alloc = 8;
	send_pkt(&r, req, NULL, 0);
	assert_true(recv_pkt(&r, &h, NULL, 0));
	assert_int_equal(h.op, VIRTIO_VSOCK_OP_RESPONSE);
	int hfd = accept_wait(lfd);
	assert_int_equal(send(hfd, "0123456789abcdefghij", 20, 0), 20);
	char buf[64];
	assert_true(recv_pkt(&r, &h, buf, sizeof(buf)));
	assert_int_equal(h.len, 8);
	assert_memory_equal(buf, "01234567", 8);
	/* The second rx chain (head 2) got the data: header and payload marked for migration. */
	assert_true(vrig_marked(&r.v, rx_bufs[2], VIRTIO_VSOCK_HDR_SIZE + 8));
	assert_true(no_packet_within(&r, 50)); /* no credit left */
	/* The guest consumed the 8 bytes. */
	struct virtio_vsock_hdr cu = hdr(VIRTIO_VSOCK_OP_CREDIT_UPDATE, 6000, 7);
	cu.buf_alloc = 8;
	cu.fwd_cnt = 8;
	send_pkt(&r, cu, NULL, 0);
	assert_true(recv_pkt(&r, &h, buf, sizeof(buf)));
	assert_int_equal(h.len, 8);
	assert_memory_equal(buf, "89abcdef", 8);
	/* A lying fwd_cnt (more than was sent) gives no credit at all. */
	cu.fwd_cnt = 1000;
	send_pkt(&r, cu, NULL, 0);
	assert_true(no_packet_within(&r, 50));
	cu.fwd_cnt = 16;
	send_pkt(&r, cu, NULL, 0);
	assert_true(recv_pkt(&r, &h, buf, sizeof(buf)));
	assert_int_equal(h.len, 4);
	assert_memory_equal(buf, "ghij", 4);
	close(hfd);
	close(lfd);
	rig_free(&r);
}

static int open_guest_conn(struct rig *r, int lfd, uint32_t gport, uint32_t hport)
{
	struct virtio_vsock_hdr h;
	send_pkt(r, hdr(VIRTIO_VSOCK_OP_REQUEST, gport, hport), NULL, 0);
	assert_true(recv_pkt(r, &h, NULL, 0));
	assert_int_equal(h.op, VIRTIO_VSOCK_OP_RESPONSE);
	return accept_wait(lfd);
}

/* Beyond vmon's buf_alloc, a guest is reset instead of making vmon buffer more. */
static void guest_exceeding_vmon_credit_is_reset(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	int lfd = listen_port(&r, 8);
	give_rx(&r, 8, 4096);
	int hfd = open_guest_conn(&r, lfd, 6001, 8);
	/* The host program reads nothing, the guest ignores its credit and keeps sending. */
	static uint8_t chunk[VIRTIO_VSOCK_MAX_PAYLOAD];
	memset(chunk, 'a', sizeof(chunk));
	uint32_t sent = 0;
	struct virtio_vsock_hdr h;
	bool reset = false;
	for (int i = 0; i < 64 && !reset; i++) {
		send_pkt(&r, hdr(VIRTIO_VSOCK_OP_RW, 6001, 8), chunk, 16384);
		sent += 16384;
		usleep(2000);
		while (!reset && used_idx(&r.v, RXQ) != r.v.q[RXQ].used_seen) {
			assert_true(recv_pkt(&r, &h, NULL, 0));
			if (h.op == VIRTIO_VSOCK_OP_RST)
				reset = true;
			else
				assert_int_equal(h.op, VIRTIO_VSOCK_OP_CREDIT_UPDATE);
		}
	}
	assert_true(reset);
	struct virtio_vsock_stats st;
	virtio_vsock_get_stats(r.vs, &st);
	assert_true(st.errors >= 1);
	/* The host got what fit, the connection is closed, and vmon held at most buf_alloc. */
	size_t got = 0;
	ssize_t n;
	while ((n = read_wait(hfd, chunk, sizeof(chunk))) > 0)
		got += (size_t)n;
	assert_int_equal(n, 0);
	assert_true(got < sent);
	close(hfd);
	close(lfd);
	rig_free(&r);
}

/* When the host drains vmon's buffer, the guest is told before it runs out of credit. */
static void draining_sends_a_credit_update(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	int lfd = listen_port(&r, 9);
	give_rx(&r, 8, 4096);
	int hfd = open_guest_conn(&r, lfd, 6002, 9);
	static uint8_t chunk[40000];
	memset(chunk, 'b', sizeof(chunk));
	send_pkt(&r, hdr(VIRTIO_VSOCK_OP_RW, 6002, 9), chunk, sizeof(chunk));
	size_t got = 0;
	while (got < sizeof(chunk)) {
		ssize_t n = read_wait(hfd, chunk, sizeof(chunk));
		assert_true(n > 0);
		got += (size_t)n;
	}
	struct virtio_vsock_hdr h;
	assert_true(recv_pkt(&r, &h, NULL, 0));
	assert_int_equal(h.op, VIRTIO_VSOCK_OP_CREDIT_UPDATE);
	assert_int_equal(h.fwd_cnt, sizeof(chunk));
	/* CREDIT_REQUEST is answered with CREDIT_UPDATE. */
	send_pkt(&r, hdr(VIRTIO_VSOCK_OP_CREDIT_REQUEST, 6002, 9), NULL, 0);
	assert_true(recv_pkt(&r, &h, NULL, 0));
	assert_int_equal(h.op, VIRTIO_VSOCK_OP_CREDIT_UPDATE);
	assert_int_equal(h.buf_alloc, VIRTIO_VSOCK_BUF_ALLOC);
	close(hfd);
	close(lfd);
	rig_free(&r);
}

/* Every malformed packet: dropped when it cannot be answered, otherwise answered with RST. */
static void malformed_packets_are_dropped_or_reset(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	give_rx(&r, 15, 4096);
	struct virtio_vsock_hdr h, got;
	uint64_t errors = 0;
	struct virtio_vsock_stats st;
#define EXPECT_ERRORS_UP()                                  \
	do {                                                \
		virtio_vsock_get_stats(r.vs, &st);          \
		assert_int_equal(st.errors, errors + 1);    \
		errors = st.errors;                         \
	} while (0)

	/* Shorter than a header: nothing to answer. */
	uint64_t a = alloc_data(&r.v, 64);
	struct seg s = { a, 20, false };
	add_chain(&r.v, TXQ, &s, 1, true);
	assert_true(wait_used(&r.v, TXQ, ++r.v.q[TXQ].used_seen));
	EXPECT_ERRORS_UP();
	assert_true(no_packet_within(&r, 20));
	/* A writable descriptor on the tx queue. */
	struct seg s2[2] = { { a, VIRTIO_VSOCK_HDR_SIZE, false }, { a + 48, 8, true } };
	h = hdr(VIRTIO_VSOCK_OP_REQUEST, 1, 2);
	virtio_vsock_hdr_encode(&h, r.v.ram + a);
	add_chain(&r.v, TXQ, s2, 2, true);
	assert_true(wait_used(&r.v, TXQ, ++r.v.q[TXQ].used_seen));
	EXPECT_ERRORS_UP();
	assert_true(no_packet_within(&r, 20));
	/* Another guest's CID as source, and VMADDR_PORT_ANY: dropped. */
	h = hdr(VIRTIO_VSOCK_OP_REQUEST, 1, 2);
	h.src_cid = 4;
	send_pkt(&r, h, NULL, 0);
	EXPECT_ERRORS_UP();
	send_pkt(&r, hdr(VIRTIO_VSOCK_OP_REQUEST, VIRTIO_VSOCK_PORT_ANY, 2), NULL, 0);
	EXPECT_ERRORS_UP();
	assert_true(no_packet_within(&r, 20));

	struct {
		const char *what;
		struct virtio_vsock_hdr h;
		uint32_t payload; /* bytes actually in the chain */
	} cases[] = {
		{ "to another CID", { .src_cid = CID, .dst_cid = 7, .src_port = 10, .dst_port = 20, .type = 1, .op = 1 }, 0 },
		{ "seqpacket", { .src_cid = CID, .dst_cid = 2, .src_port = 10, .dst_port = 20, .type = 2, .op = 1 }, 0 },
		{ "op 0", { .src_cid = CID, .dst_cid = 2, .src_port = 10, .dst_port = 20, .type = 1, .op = 0 }, 0 },
		{ "op 8", { .src_cid = CID, .dst_cid = 2, .src_port = 10, .dst_port = 20, .type = 1, .op = 8 }, 0 },
		{ "len > payload", { .src_cid = CID, .dst_cid = 2, .src_port = 10, .dst_port = 20, .type = 1, .op = 5, .len = 10 }, 5 },
		{ "len < payload", { .src_cid = CID, .dst_cid = 2, .src_port = 10, .dst_port = 20, .type = 1, .op = 5, .len = 2 }, 5 },
		{ "payload on REQUEST", { .src_cid = CID, .dst_cid = 2, .src_port = 10, .dst_port = 20, .type = 1, .op = 1, .len = 4 }, 4 },
		{ "flags on RW", { .src_cid = CID, .dst_cid = 2, .src_port = 10, .dst_port = 20, .type = 1, .op = 5, .flags = 1 }, 0 },
		{ "SHUTDOWN flag 4", { .src_cid = CID, .dst_cid = 2, .src_port = 10, .dst_port = 20, .type = 1, .op = 4, .flags = 4 }, 0 },
		{ "huge len", { .src_cid = CID, .dst_cid = 2, .src_port = 10, .dst_port = 20, .type = 1, .op = 5, .len = 0xffffffff }, 8 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		print_message("case: %s\n", cases[i].what);
		send_pkt_raw(&r, &cases[i].h, "12345678", cases[i].payload);
		EXPECT_ERRORS_UP();
		assert_true(recv_pkt(&r, &got, NULL, 0));
		assert_int_equal(got.op, VIRTIO_VSOCK_OP_RST);
		assert_int_equal(got.src_cid, cases[i].h.dst_cid);
		assert_int_equal(got.src_port, 20);
		assert_int_equal(got.dst_port, 10);
		assert_int_equal(got.dst_cid, CID);
	}
	/* Valid packets naming no connection: RST (not counted as errors); an RST gets no answer. */
	uint16_t ops[] = { VIRTIO_VSOCK_OP_RESPONSE, VIRTIO_VSOCK_OP_SHUTDOWN, VIRTIO_VSOCK_OP_RW,
			   VIRTIO_VSOCK_OP_CREDIT_UPDATE, VIRTIO_VSOCK_OP_CREDIT_REQUEST };
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		send_pkt(&r, hdr(ops[i], 11, 21), NULL, 0);
		assert_true(recv_pkt(&r, &got, NULL, 0));
		assert_int_equal(got.op, VIRTIO_VSOCK_OP_RST);
	}
	send_pkt(&r, hdr(VIRTIO_VSOCK_OP_RST, 11, 21), NULL, 0);
	assert_true(no_packet_within(&r, 20));
	virtio_vsock_get_stats(r.vs, &st);
	assert_int_equal(st.errors, errors);
	rig_free(&r);
}

static void rx_buffer_the_device_cannot_write_needs_reset(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	uint64_t a = alloc_data(&r.v, 128);
	struct seg s = { a, 128, false };
	add_chain(&r.v, RXQ, &s, 1, true);
	send_pkt(&r, hdr(VIRTIO_VSOCK_OP_RW, 1, 2), NULL, 0); /* needs an RST: the device looks at rx */
	assert_true(wait_needs_reset(&r.v));
	rig_free(&r);
}

/* Without receive buffers, RSTs queue up to a bound; then vmon stops taking tx packets. */
static void rst_queue_is_bounded_and_tx_waits(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	/* QSZ tx packets at a time: queue bad ones until the device stops consuming. */
	unsigned int sent = 0;
	while (sent < VIRTIO_VSOCK_RST_QUEUE + QSZ) {
		for (int i = 0; i < QSZ / 2; i++, sent++) {
			struct virtio_vsock_hdr h = hdr(VIRTIO_VSOCK_OP_RW, 100 + sent, 1);
			uint64_t a = alloc_data(&r.v, VIRTIO_VSOCK_HDR_SIZE);
			virtio_vsock_hdr_encode(&h, r.v.ram + a);
			struct seg s = { a, VIRTIO_VSOCK_HDR_SIZE, false };
			add_chain(&r.v, TXQ, &s, 1, true);
		}
		usleep(20000);
		if (used_idx(&r.v, TXQ) != sent)
			break;
	}
	assert_int_equal(used_idx(&r.v, TXQ), VIRTIO_VSOCK_RST_QUEUE);
	/* Receive buffers let the RSTs out, and the waiting tx packets are processed. */
	unsigned int rsts = 0;
	struct virtio_vsock_hdr got;
	while (rsts < sent) {
		give_rx(&r, QSZ / 2, 64);
		for (int i = 0; i < QSZ / 2 && rsts < sent; i++, rsts++) {
			assert_true(recv_pkt(&r, &got, NULL, 0));
			assert_int_equal(got.op, VIRTIO_VSOCK_OP_RST);
			assert_int_equal(got.dst_port, 100 + rsts);
		}
	}
	assert_true(wait_used(&r.v, TXQ, (uint16_t)sent));
	rig_free(&r);
}

/* After a snapshot load the guest gets TRANSPORT_RESET and open connections are gone. */
static void snapshot_load_sends_transport_reset(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	int lfd = listen_port(&r, 10);
	give_rx(&r, 8, 4096);
	int hfd = open_guest_conn(&r, lfd, 6003, 10);
	uint64_t ev = alloc_data(&r.v, 4);
	memset(r.v.ram + ev, 0xff, 4);
	struct seg s = { ev, 4, true };
	add_chain(&r.v, EVQ, &s, 1, true);

	struct virtio_device *vdev = r.v.fn->owner;
	static uint8_t image[1 << 16];
	event_loop_stop(r.v.loop);
	long len = virtio_pci_save(vdev, image, sizeof(image));
	assert_true(len > 0);
	assert_int_equal(virtio_pci_load(vdev, image, (size_t)len), 0);
	assert_int_equal(event_loop_start(r.v.loop), 0);

	uint32_t id, used_len;
	assert_true(next_used(&r.v, EVQ, &id, &used_len));
	assert_int_equal(used_len, 4);
	uint32_t event;
	memcpy(&event, r.v.ram + ev, 4);
	assert_int_equal(event, VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
	/* The host side of the old connection was closed; data for it is answered with RST. */
	char b[4];
	assert_int_equal(read_wait(hfd, b, sizeof(b)), 0);
	send_pkt(&r, hdr(VIRTIO_VSOCK_OP_RW, 6003, 10), "x", 1);
	struct virtio_vsock_hdr got;
	assert_true(recv_pkt(&r, &got, NULL, 0));
	assert_int_equal(got.op, VIRTIO_VSOCK_OP_RST);
	close(hfd);
	close(lfd);
	rig_free(&r);
}

static void driver_reset_closes_connections(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	int lfd = listen_port(&r, 11);
	give_rx(&r, 8, 4096);
	int hfd = open_guest_conn(&r, lfd, 6004, 11);
	wr(&r.v, STATUS, 0, 1);
	char b[4];
	assert_int_equal(read_wait(hfd, b, sizeof(b)), 0);
	/* Host connections are refused while the driver is not running. */
	int fd = unix_socket_connect(r.uds);
	assert_true(fd >= 0);
	assert_int_equal(send(fd, "CONNECT 5\n", 10, 0), 10);
	assert_int_equal(read_wait(fd, b, sizeof(b)), 0);
	close(fd);
	close(hfd);
	close(lfd);
	rig_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(header_round_trip_is_little_endian),
		cmocka_unit_test(credit_never_wraps_into_a_huge_window),
		cmocka_unit_test(connect_line_is_parsed_strictly),
		cmocka_unit_test(config_holds_the_guest_cid),
		cmocka_unit_test(guest_connects_to_a_host_port),
		cmocka_unit_test(guest_connect_to_a_port_nobody_listens_on_is_reset),
		cmocka_unit_test(host_connects_to_a_guest_port),
		cmocka_unit_test(host_connect_refused_by_the_guest_closes_the_client),
		cmocka_unit_test(host_to_guest_data_respects_guest_credit),
		cmocka_unit_test(guest_exceeding_vmon_credit_is_reset),
		cmocka_unit_test(draining_sends_a_credit_update),
		cmocka_unit_test(malformed_packets_are_dropped_or_reset),
		cmocka_unit_test(rx_buffer_the_device_cannot_write_needs_reset),
		cmocka_unit_test(rst_queue_is_bounded_and_tx_waits),
		cmocka_unit_test(snapshot_load_sends_transport_reset),
		cmocka_unit_test(driver_reset_closes_connections),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
