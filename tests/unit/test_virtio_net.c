/*
 * virtio-net driven the way a guest driver drives it (BAR0 on the MMIO bus, rings in a fake
 * guest memory) against a fake backend: feature offers per backend, the configuration space,
 * transmit (including every malformed chain and header), receive into one or several
 * buffers, buffers that are too small, the bounded queue for frames without buffers, device
 * reset and snapshots. Also the --net option parser.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config_net.h"
#include "lib/util.h"
#include "virtio/virtio_net.h"

#include "virtio_rig.h"

#define RAM (4u << 20)
#define QSZ 16
#define BIT(n) (1ull << (n))

/* ---- the fake backend ---- */

struct fake_be {
	struct net_backend be;
	uint8_t sent[VIRTIO_NET_HDR_LEN + NET_MAX_FRAME];
	size_t sent_len;
	int sends, resumes, set_offloads_calls, destroyed;
	uint64_t offloads_set;
};

static int fake_send(struct net_backend *be, const void *pkt, size_t len)
{
	struct fake_be *f = (struct fake_be *)be;
	memcpy(f->sent, pkt, len);
	f->sent_len = len;
	f->sends++;
	return 0;
}

static int fake_set_offloads(struct net_backend *be, uint64_t features)
{
	struct fake_be *f = (struct fake_be *)be;
	f->offloads_set = features;
	f->set_offloads_calls++;
	return 0;
}

static void fake_resume(struct net_backend *be) { ((struct fake_be *)be)->resumes++; }
static void fake_destroy(struct net_backend *be) { ((struct fake_be *)be)->destroyed++; }

static const struct net_backend_ops fake_ops = {
	.kind = "fake", .send = fake_send, .set_offloads = fake_set_offloads, .resume = fake_resume,
	.destroy = fake_destroy,
};

#define TAP_LIKE                                                                                               \
	(BIT(VIRTIO_NET_F_CSUM) | BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_GUEST_TSO4) |                 \
	 BIT(VIRTIO_NET_F_GUEST_TSO6) | BIT(VIRTIO_NET_F_HOST_TSO4) | BIT(VIRTIO_NET_F_HOST_TSO6))

/* ---- the rig: a PCI bus, guest memory, the device, a running event loop ---- */

struct rig {
	struct vrig v;
	struct fake_be fb;
	struct virtio_net *net;
};

static const struct vrig_spec spec = {
	.ram = RAM, .device_id = VIRTIO_ID_NET, .queues = 2, .qsize = QSZ, .max_qsize = VIRTIO_NET_QUEUE_SIZE
};

static const uint8_t MAC[6] = { 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc };

static void rig_setup(struct rig *r, uint64_t backend_offloads)
{
	memset(r, 0, sizeof(*r));
	vrig_init(&r->v, &spec);
	r->fb.be.ops = &fake_ops;
	r->fb.be.offloads = backend_offloads;
	assert_int_equal(virtio_net_create(&r->v.deps, MAC, &r->fb.be, &r->net), 0);
	vrig_attach(&r->v);
	assert_int_equal(pci_config_read(r->v.fn, PCI_REVISION_ID, 4) >> 8, 0x020000);
}

static void rig_free(struct rig *r)
{
	event_loop_stop(r->v.loop);
	virtio_net_destroy(r->net);
	assert_int_equal(r->fb.destroyed, 1);
	vrig_free(&r->v);
}

/* A guest buffer of len bytes: a copy of src, or 0xee bytes, so what the device never wrote shows. */
static uint64_t guest_buf(struct rig *r, const void *src, uint32_t len)
{
	uint64_t gpa = alloc_data(&r->v, len);
	if (src)
		memcpy(r->v.ram + gpa, src, len);
	else
		memset(r->v.ram + gpa, 0xee, len);
	return gpa;
}

static struct virtio_net_stats stats(struct rig *r)
{
	struct virtio_net_stats s;
	virtio_net_get_stats(r->net, &s);
	return s;
}

/* Runs the backend's deliver() on the loop thread, as a real backend would. */
struct deliver_call {
	struct rig *r;
	const void *pkt;
	size_t len;
	int rc;
};

static void do_deliver(void *opaque)
{
	struct deliver_call *c = opaque;
	c->rc = c->r->fb.be.peer.deliver(c->r->fb.be.peer.dev, c->pkt, c->len);
}

static int deliver(struct rig *r, const void *pkt, size_t len)
{
	struct deliver_call c = { .r = r, .pkt = pkt, .len = len };
	event_loop_call(r->v.loop, do_deliver, &c);
	return c.rc;
}

/* A frame for the guest: a zero header, then len frame bytes with a recognisable pattern. */
static size_t make_rx(uint8_t *buf, size_t frame_len, uint8_t seed)
{
	memset(buf, 0, VIRTIO_NET_HDR_LEN);
	for (size_t i = 0; i < frame_len; i++)
		buf[VIRTIO_NET_HDR_LEN + i] = (uint8_t)(seed + i);
	return VIRTIO_NET_HDR_LEN + frame_len;
}

/* ---- tests ---- */

static void features_follow_the_backend(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, 0); /* slirp: no offloads */
	uint64_t f = device_features(&r.v);
	assert_true(f & BIT(VIRTIO_NET_F_MAC));
	assert_true(f & BIT(VIRTIO_NET_F_STATUS));
	assert_true(f & BIT(VIRTIO_NET_F_MRG_RXBUF));
	assert_true(f & BIT(VIRTIO_F_VERSION_1));
	assert_int_equal(f & TAP_LIKE, 0);
	/* The configuration space: the MAC, link up, one queue pair. */
	uint8_t mac[6];
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)rd(&r.v, VIRTIO_PCI_DEVICE_OFF + (uint64_t)i, 1);
	assert_memory_equal(mac, MAC, 6);
	assert_int_equal(rd(&r.v, VIRTIO_PCI_DEVICE_OFF + 6, 2), VIRTIO_NET_S_LINK_UP);
	assert_int_equal(rd(&r.v, VIRTIO_PCI_DEVICE_OFF + 8, 2), 1);
	/* The MAC is read-only (no VIRTIO_NET_F_CTRL_MAC_ADDR). */
	wr(&r.v, VIRTIO_PCI_DEVICE_OFF, 0xffffffff, 4);
	assert_int_equal(rd(&r.v, VIRTIO_PCI_DEVICE_OFF, 1), 0x52);
	rig_free(&r);

	rig_setup(&r, TAP_LIKE | BIT(VIRTIO_NET_F_HOST_UFO)); /* tap; bits vmon never offers are dropped */
	f = device_features(&r.v);
	assert_int_equal(f & TAP_LIKE, TAP_LIKE);
	assert_int_equal(f & BIT(VIRTIO_NET_F_HOST_UFO), 0);
	/* DRIVER_OK tells the backend which offloads the guest took; a reset takes them back. */
	start_driver(&r.v, BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_GUEST_TSO4) | BIT(VIRTIO_NET_F_MAC));
	assert_int_equal(r.fb.offloads_set, BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_GUEST_TSO4));
	wr(&r.v, STATUS, 0, 1);
	assert_int_equal(r.fb.offloads_set, 0);
	rig_free(&r);
}

static void a_frame_reaches_the_backend(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, 0);
	start_driver(&r.v, BIT(VIRTIO_NET_F_MAC));
	struct virtio_net_hdr_v1 h = { .num_buffers = 7 }; /* ignored on transmit */
	uint8_t frame[60];
	for (size_t i = 0; i < sizeof(frame); i++)
		frame[i] = (uint8_t)(3 * i);
	/* Header and frame in separate descriptors, the frame itself split in two. */
	struct seg segs[] = { { guest_buf(&r, &h, sizeof(h)), sizeof(h), false },
			      { guest_buf(&r, frame, 20), 20, false },
			      { guest_buf(&r, frame + 20, 40), 40, false } };
	add_chain(&r.v, VIRTIO_NET_TXQ, segs, 3, true);
	assert_true(wait_used(&r.v, VIRTIO_NET_TXQ, 1));
	uint32_t id, len;
	used_elem(&r.v, VIRTIO_NET_TXQ, 0, &id, &len);
	assert_int_equal(id, 0);
	assert_int_equal(len, 0); /* nothing written into a transmit buffer */
	assert_int_equal(r.fb.sends, 1);
	assert_int_equal(r.fb.sent_len, VIRTIO_NET_HDR_LEN + sizeof(frame));
	assert_memory_equal(r.fb.sent + VIRTIO_NET_HDR_LEN, frame, sizeof(frame));
	struct virtio_net_hdr_v1 sent_h;
	memcpy(&sent_h, r.fb.sent, sizeof(sent_h));
	assert_int_equal(sent_h.num_buffers, 0);
	struct virtio_net_stats s = stats(&r);
	assert_int_equal(s.tx_packets, 1);
	assert_int_equal(s.tx_bytes, sizeof(frame));
	assert_int_equal(s.tx_errors, 0);
	rig_free(&r);
}

/* Sends one chain built from hdr + frame_len bytes; returns whether the backend got it. */
static bool tx_with_header(struct rig *r, const struct virtio_net_hdr_v1 *h, uint32_t frame_len)
{
	int before = r->fb.sends;
	uint16_t used = used_idx(&r->v, VIRTIO_NET_TXQ);
	uint8_t *pkt = calloc(1, VIRTIO_NET_HDR_LEN + frame_len);
	memcpy(pkt, h, sizeof(*h));
	struct seg s = { guest_buf(r, pkt, VIRTIO_NET_HDR_LEN + frame_len), VIRTIO_NET_HDR_LEN + frame_len, false };
	free(pkt);
	add_chain(&r->v, VIRTIO_NET_TXQ, &s, 1, true);
	assert_true(wait_used(&r->v, VIRTIO_NET_TXQ, (uint16_t)(used + 1)));
	return r->fb.sends != before;
}

static void malformed_transmits_are_dropped_and_counted(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, 0);
	start_driver(&r.v, 0); /* no offloads negotiated */
	struct virtio_net_hdr_v1 plain = { 0 };
	assert_true(tx_with_header(&r, &plain, 60));
	/* Shorter than a header. */
	struct seg tiny = { guest_buf(&r, NULL, 8), 8, false };
	add_chain(&r.v, VIRTIO_NET_TXQ, &tiny, 1, true);
	assert_true(wait_used(&r.v, VIRTIO_NET_TXQ, 2));
	/* A header and less than an Ethernet header. */
	assert_false(tx_with_header(&r, &plain, 10));
	/* A device-writable part in a transmit chain. */
	struct seg mixed[] = { { guest_buf(&r, &plain, 12), 12, false }, { guest_buf(&r, NULL, 60), 60, true } };
	add_chain(&r.v, VIRTIO_NET_TXQ, mixed, 2, true);
	assert_true(wait_used(&r.v, VIRTIO_NET_TXQ, 4));
	/* Longer than any frame without segmentation offload. */
	assert_false(tx_with_header(&r, &plain, NET_MAX_FRAME + 1));
	/* Offloads the driver did not negotiate. */
	struct virtio_net_hdr_v1 csum = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 34, .csum_offset = 16 };
	assert_false(tx_with_header(&r, &csum, 60));
	struct virtio_net_hdr_v1 tso = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
					 .gso_size = 1448, .csum_start = 34, .csum_offset = 16 };
	assert_false(tx_with_header(&r, &tso, 3000));
	/* Flags and GSO types that do not exist or are never offered. */
	struct virtio_net_hdr_v1 flags = { .flags = 0x80 };
	assert_false(tx_with_header(&r, &flags, 60));
	struct virtio_net_hdr_v1 udp = { .gso_type = VIRTIO_NET_HDR_GSO_UDP };
	assert_false(tx_with_header(&r, &udp, 60));
	struct virtio_net_hdr_v1 ecn = { .gso_type = VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN };
	assert_false(tx_with_header(&r, &ecn, 60));
	struct virtio_net_stats s = stats(&r);
	assert_int_equal(s.tx_packets, 1);
	assert_int_equal(s.tx_errors, 9);
	/* None of that broke the device: a good frame still goes out. */
	assert_false(rd(&r.v, STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(tx_with_header(&r, &plain, 60));
	rig_free(&r);
}

static void offloads_are_checked_against_the_frame(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, TAP_LIKE);
	start_driver(&r.v, BIT(VIRTIO_NET_F_CSUM) | BIT(VIRTIO_NET_F_HOST_TSO4));
	struct virtio_net_hdr_v1 csum = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 34, .csum_offset = 16 };
	assert_true(tx_with_header(&r, &csum, 60));
	/* The checksum field would lie past the end of the frame. */
	struct virtio_net_hdr_v1 past = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 50, .csum_offset = 16 };
	assert_false(tx_with_header(&r, &past, 60));
	/* TSO for IPv4 was negotiated; a 3000-byte segment-me frame passes through with its header. */
	struct virtio_net_hdr_v1 tso = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
					 .hdr_len = 54, .gso_size = 1448, .csum_start = 34, .csum_offset = 16 };
	assert_true(tx_with_header(&r, &tso, 3000));
	struct virtio_net_hdr_v1 sent;
	memcpy(&sent, r.fb.sent, sizeof(sent));
	assert_int_equal(sent.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
	assert_int_equal(sent.gso_size, 1448);
	/* ... but not for IPv6, nor without a segment size or checksum request. */
	tso.gso_type = VIRTIO_NET_HDR_GSO_TCPV6;
	assert_false(tx_with_header(&r, &tso, 3000));
	tso.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
	tso.gso_size = 0;
	assert_false(tx_with_header(&r, &tso, 3000));
	assert_int_equal(stats(&r).tx_errors, 3);
	rig_free(&r);
}

static void a_transmit_descriptor_outside_ram_needs_reset(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, 0);
	start_driver(&r.v, 0);
	struct seg bad = { RAM - 8, 64, false };
	add_chain(&r.v, VIRTIO_NET_TXQ, &bad, 1, true);
	assert_true(wait_needs_reset(&r.v));
	assert_int_equal(r.fb.sends, 0);
	rig_free(&r);
}

static void a_frame_fills_one_receive_buffer(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, 0);
	start_driver(&r.v, 0);
	vrig_track_writes(&r.v);
	struct seg buf = { guest_buf(&r, NULL, 1526), 1526, true };
	add_chain(&r.v, VIRTIO_NET_RXQ, &buf, 1, true);
	uint8_t pkt[VIRTIO_NET_HDR_LEN + 100];
	size_t len = make_rx(pkt, 100, 5);
	assert_int_equal(deliver(&r, pkt, len), 0);
	assert_int_equal(used_idx(&r.v, VIRTIO_NET_RXQ), 1);
	uint32_t id, used_len;
	used_elem(&r.v, VIRTIO_NET_RXQ, 0, &id, &used_len);
	assert_int_equal(used_len, len);
	struct virtio_net_hdr_v1 h;
	memcpy(&h, r.v.ram + buf.addr, sizeof(h));
	assert_int_equal(h.num_buffers, 1); /* always 1 without mergeable buffers */
	assert_int_equal(h.flags, 0);
	assert_memory_equal(r.v.ram + buf.addr + VIRTIO_NET_HDR_LEN, pkt + VIRTIO_NET_HDR_LEN, 100);
	assert_int_equal(r.v.ram[buf.addr + len], 0xee); /* nothing past the frame */
	/* What migration must send again: the frame's pages and the used ring. */
	assert_true(vrig_marked(&r.v, buf.addr, len));
	assert_true(vrig_marked(&r.v, VRIG_USED(VIRTIO_NET_RXQ), 12));
	struct virtio_net_stats s = stats(&r);
	assert_int_equal(s.rx_packets, 1);
	assert_int_equal(s.rx_bytes, 100);
	rig_free(&r);
}

static void mergeable_buffers_take_a_frame_in_pieces(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, 0);
	start_driver(&r.v, BIT(VIRTIO_NET_F_MRG_RXBUF));
	struct seg b[3];
	for (int i = 0; i < 3; i++) {
		b[i] = (struct seg){ guest_buf(&r, NULL, 100), 100, true };
		add_chain(&r.v, VIRTIO_NET_RXQ, &b[i], 1, i == 2);
	}
	uint8_t pkt[VIRTIO_NET_HDR_LEN + 238];
	size_t len = make_rx(pkt, 238, 9); /* 250 bytes with the header: 100 + 100 + 50 */
	assert_int_equal(deliver(&r, pkt, len), 0);
	assert_int_equal(used_idx(&r.v, VIRTIO_NET_RXQ), 3);
	uint32_t lens[3], id;
	for (uint16_t i = 0; i < 3; i++)
		used_elem(&r.v, VIRTIO_NET_RXQ, i, &id, &lens[i]);
	assert_int_equal(lens[0], 100);
	assert_int_equal(lens[1], 100);
	assert_int_equal(lens[2], 50);
	struct virtio_net_hdr_v1 h;
	memcpy(&h, r.v.ram + b[0].addr, sizeof(h));
	assert_int_equal(h.num_buffers, 3);
	assert_memory_equal(r.v.ram + b[0].addr + VIRTIO_NET_HDR_LEN, pkt + VIRTIO_NET_HDR_LEN, 88);
	assert_memory_equal(r.v.ram + b[1].addr, pkt + 100, 100);
	assert_memory_equal(r.v.ram + b[2].addr, pkt + 200, 50);
	/* Not enough buffers left for the next one: it waits, whole, for more. */
	assert_int_equal(deliver(&r, pkt, len), 1);
	assert_int_equal(used_idx(&r.v, VIRTIO_NET_RXQ), 3);
	rig_free(&r);
}

static void a_frame_bigger_than_the_whole_ring_is_dropped(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, 0);
	start_driver(&r.v, BIT(VIRTIO_NET_F_MRG_RXBUF));
	for (int i = 0; i < QSZ; i++) {
		struct seg b = { guest_buf(&r, NULL, 20), 20, true };
		add_chain(&r.v, VIRTIO_NET_RXQ, &b, 1, i == QSZ - 1);
	}
	/* 16 buffers of 20 bytes hold 320 bytes: a 400-byte frame must not wait for ever. */
	uint8_t pkt[VIRTIO_NET_HDR_LEN + 388];
	assert_int_equal(deliver(&r, pkt, make_rx(pkt, 388, 0)), -ENOBUFS);
	assert_int_equal(stats(&r).rx_dropped, 1);
	/* The buffers are all still there. */
	assert_int_equal(deliver(&r, pkt, make_rx(pkt, 300, 0)), 0);
	assert_int_equal(used_idx(&r.v, VIRTIO_NET_RXQ), 16);
	rig_free(&r);
}

static void a_too_small_buffer_drops_the_frame_not_the_buffer(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, 0);
	start_driver(&r.v, 0);
	struct seg buf = { guest_buf(&r, NULL, 64), 64, true };
	add_chain(&r.v, VIRTIO_NET_RXQ, &buf, 1, true);
	uint8_t pkt[VIRTIO_NET_HDR_LEN + 200];
	size_t len = make_rx(pkt, 200, 1);
	assert_int_equal(deliver(&r, pkt, len), -ENOBUFS);
	assert_int_equal(used_idx(&r.v, VIRTIO_NET_RXQ), 0);
	assert_int_equal(stats(&r).rx_dropped, 1);
	/* The buffer is still there for a frame that fits. */
	len = make_rx(pkt, 40, 2);
	assert_int_equal(deliver(&r, pkt, len), 0);
	assert_int_equal(used_idx(&r.v, VIRTIO_NET_RXQ), 1);
	/* A buffer smaller than the header itself. */
	struct seg tiny = { guest_buf(&r, NULL, 8), 8, true };
	add_chain(&r.v, VIRTIO_NET_RXQ, &tiny, 1, true);
	assert_int_equal(deliver(&r, pkt, len), -ENOBUFS);
	assert_int_equal(stats(&r).rx_dropped, 2);
	/* Frames that are not frames never reach the guest. */
	assert_int_equal(deliver(&r, pkt, VIRTIO_NET_HDR_LEN + 5), -ENOBUFS);
	assert_false(rd(&r.v, STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
	rig_free(&r);
}

static void frames_without_buffers_wait_in_a_bounded_queue(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, 0);
	start_driver(&r.v, 0);
	uint8_t pkt[VIRTIO_NET_HDR_LEN + 100];
	int queued = 0, dropped = 0;
	for (int i = 0; i < VIRTIO_NET_RX_QUEUE_FRAMES + 44; i++) {
		size_t len = make_rx(pkt, 100, (uint8_t)i);
		int rc = deliver(&r, pkt, len);
		queued += rc == 1;
		dropped += rc == -ENOBUFS;
	}
	assert_int_equal(queued, VIRTIO_NET_RX_QUEUE_FRAMES);
	assert_int_equal(dropped, 44);
	assert_int_equal(stats(&r).rx_dropped, 44);
	/* Buffers arrive: the oldest frames go first, in order. */
	struct seg b[4];
	for (int i = 0; i < 4; i++) {
		b[i] = (struct seg){ guest_buf(&r, NULL, 200), 200, true };
		add_chain(&r.v, VIRTIO_NET_RXQ, &b[i], 1, i == 3);
	}
	assert_true(wait_used(&r.v, VIRTIO_NET_RXQ, 4));
	for (int i = 0; i < 4; i++)
		assert_int_equal(r.v.ram[b[i].addr + VIRTIO_NET_HDR_LEN], (uint8_t)i);
	assert_int_equal(r.fb.resumes, 0); /* the queue is not empty yet */
	/* A reset empties the queue and lets a waiting backend read again. */
	wr(&r.v, STATUS, 0, 1);
	assert_int_equal(r.fb.resumes, 1);
	rig_free(&r);

	/* The byte bound: big frames fill it long before the frame count does. */
	rig_setup(&r, 0);
	start_driver(&r.v, 0);
	static uint8_t big[VIRTIO_NET_HDR_LEN + 65000];
	queued = 0;
	for (int i = 0; i < 40; i++)
		queued += deliver(&r, big, make_rx(big, 65000, 0)) == 1;
	assert_int_equal(queued, VIRTIO_NET_RX_QUEUE_BYTES / sizeof(big));
	rig_free(&r);
}

static void a_drained_queue_resumes_the_backend(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, 0);
	start_driver(&r.v, 0);
	uint8_t pkt[VIRTIO_NET_HDR_LEN + 60];
	assert_int_equal(deliver(&r, pkt, make_rx(pkt, 60, 0)), 1);
	struct seg b = { guest_buf(&r, NULL, 200), 200, true };
	add_chain(&r.v, VIRTIO_NET_RXQ, &b, 1, true);
	assert_true(wait_used(&r.v, VIRTIO_NET_RXQ, 1));
	for (int i = 0; i < 2000 && r.fb.resumes == 0; i++)
		usleep(1000);
	assert_int_equal(r.fb.resumes, 1);
	rig_free(&r);
}

static void a_readable_receive_buffer_needs_reset(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, 0);
	start_driver(&r.v, 0);
	struct seg b = { guest_buf(&r, NULL, 200), 200, false };
	add_chain(&r.v, VIRTIO_NET_RXQ, &b, 1, true);
	uint8_t pkt[VIRTIO_NET_HDR_LEN + 60];
	assert_int_equal(deliver(&r, pkt, make_rx(pkt, 60, 0)), -ENOBUFS);
	assert_true(rd(&r.v, STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(stats(&r).rx_errors, 1);
	assert_int_equal(r.v.ram[b.addr], 0xee); /* never written */
	rig_free(&r);
}

static void frames_before_driver_ok_are_dropped(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, 0);
	uint8_t pkt[VIRTIO_NET_HDR_LEN + 60];
	assert_int_equal(deliver(&r, pkt, make_rx(pkt, 60, 0)), -ENOBUFS);
	assert_int_equal(stats(&r).rx_dropped, 1);
	rig_free(&r);
}

static void state_survives_save_and_load(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, TAP_LIKE);
	start_driver(&r.v, BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_MAC));
	static uint8_t blob[1 << 16];
	long n = virtio_pci_save(virtio_net_vdev(r.net), blob, sizeof(blob));
	assert_true(n > 0);
	/* A new process picks another MAC; the snapshot's wins, and the backend gets the offloads. */
	struct rig r2;
	rig_setup(&r2, TAP_LIKE);
	memcpy(r2.v.ram, r.v.ram, RAM);
	struct virtio_device *vdev2 = virtio_net_vdev(r2.net);
	assert_int_equal(virtio_pci_load(vdev2, blob, (size_t)n - 1), -EINVAL); /* truncated */
	assert_int_equal(virtio_pci_load(vdev2, blob, (size_t)n), 0);
	assert_int_equal(r2.fb.offloads_set, BIT(VIRTIO_NET_F_GUEST_CSUM));
	assert_int_equal(rd(&r2.v, STATUS, 1), DRIVER_RUNNING);
	assert_int_equal(rd(&r2.v, VIRTIO_PCI_DEVICE_OFF + 5, 1), 0xcc);
	/* The restored device moves frames. */
	struct seg b = { r.v.data_next, 200, true };
	add_chain(&r2.v, VIRTIO_NET_RXQ, &b, 1, true);
	uint8_t pkt[VIRTIO_NET_HDR_LEN + 60];
	for (int i = 0; i < 2000 && deliver(&r2, pkt, make_rx(pkt, 60, 0)) != 0; i++)
		usleep(1000);
	assert_int_equal(stats(&r2).rx_packets, 1);
	rig_free(&r2);
	rig_free(&r);
}

#define CC_CONFIG_GENERATION 0x15

static uint16_t link_status(struct rig *r) { return (uint16_t)rd(&r->v, VIRTIO_PCI_DEVICE_OFF + 6, 2); }

/* Waits up to 2 s for the configuration generation to reach want. */
static bool wait_generation(struct rig *r, uint8_t want)
{
	for (int i = 0; i < 2000; i++) {
		if ((uint8_t)rd(&r->v, CC_CONFIG_GENERATION, 1) == want)
			return true;
		usleep(1000);
	}
	return false;
}

/*
 * A clone's new MAC goes into a device whose state was just loaded from a snapshot (which
 * brought back the snapshot's MAC): the configuration space shows the new one, and a driver
 * that reads the link status sees the link go down, then up again, with an interrupt each time.
 */
static void clone_mac_applied_after_load(void **state)
{
	(void)state;
	struct rig r, r2;
	rig_setup(&r, 0);
	start_driver(&r.v, BIT(VIRTIO_NET_F_MAC) | BIT(VIRTIO_NET_F_STATUS));
	static uint8_t blob[1 << 16];
	long n = virtio_pci_save(virtio_net_vdev(r.net), blob, sizeof(blob));
	assert_true(n > 0);
	rig_setup(&r2, 0);
	memcpy(r2.v.ram, r.v.ram, RAM);
	assert_int_equal(virtio_pci_load(virtio_net_vdev(r2.net), blob, (size_t)n), 0);
	assert_int_equal(rd(&r2.v, VIRTIO_PCI_DEVICE_OFF + 5, 1), 0xcc);
	uint8_t gen = (uint8_t)rd(&r2.v, CC_CONFIG_GENERATION, 1);
	(void)rd(&r2.v, VIRTIO_PCI_ISR_OFF, 1);

	const uint8_t mac[6] = { 0x02, 0x11, 0x22, 0x33, 0x44, 0x55 };
	virtio_net_set_mac(r2.net, mac, 50);
	for (int i = 0; i < 6; i++)
		assert_int_equal(rd(&r2.v, VIRTIO_PCI_DEVICE_OFF + (uint64_t)i, 1), mac[i]);
	uint8_t got[6];
	virtio_net_get_mac(r2.net, got);
	assert_memory_equal(got, mac, 6);
	assert_int_equal(link_status(&r2), 0);
	assert_true(wait_generation(&r2, (uint8_t)(gen + 1))); /* link down announced */
	assert_int_equal(rd(&r2.v, VIRTIO_PCI_ISR_OFF, 1) & 2, 2);
	assert_true(wait_generation(&r2, (uint8_t)(gen + 2))); /* and up again */
	assert_int_equal(link_status(&r2), VIRTIO_NET_S_LINK_UP);
	rig_free(&r2);
	rig_free(&r);
}

/* A driver that did not negotiate VIRTIO_NET_F_STATUS gets the MAC without a link bounce. */
static void clone_mac_without_status_feature(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, 0);
	start_driver(&r.v, BIT(VIRTIO_NET_F_MAC));
	uint8_t gen = (uint8_t)rd(&r.v, CC_CONFIG_GENERATION, 1);
	const uint8_t mac[6] = { 0x06, 0, 0, 0, 0, 9 };
	virtio_net_set_mac(r.net, mac, 10);
	assert_int_equal(rd(&r.v, VIRTIO_PCI_DEVICE_OFF + 5, 1), 9);
	assert_int_equal(link_status(&r), VIRTIO_NET_S_LINK_UP);
	usleep(100 * 1000);
	assert_int_equal((uint8_t)rd(&r.v, CC_CONFIG_GENERATION, 1), gen);
	rig_free(&r);
}

/* ---- the --net option ---- */

static void net_options_parse(void **state)
{
	(void)state;
	struct net_spec s;
	char err[256];
	assert_int_equal(config_net_parse("user", &s, err, sizeof(err)), 0);
	assert_int_equal(s.kind, NET_USER);
	assert_false(s.has_mac);
	assert_int_equal(s.nfwd, 0);
	assert_false(s.host_loopback); /* the host's loopback services stay out of the guest's reach */
	assert_int_equal(config_net_parse("user,host-loopback=on", &s, err, sizeof(err)), 0);
	assert_true(s.host_loopback);
	assert_int_equal(config_net_parse("user,host-loopback=off", &s, err, sizeof(err)), 0);
	assert_false(s.host_loopback);
	assert_int_equal(config_net_parse("user,hostfwd=tcp:8080-:80,hostfwd=udp:0.0.0.0:5353-10.0.2.9:53,"
					  "mac=02:00:00:00:00:01", &s, err, sizeof(err)), 0);
	assert_int_equal(s.nfwd, 2);
	assert_false(s.fwd[0].udp);
	assert_int_equal(s.fwd[0].host_port, 8080);
	assert_int_equal(s.fwd[0].guest_port, 80);
	assert_int_equal(ntohl(s.fwd[0].host_addr.s_addr), 0x7f000001); /* loopback unless told */
	assert_int_equal(ntohl(s.fwd[0].guest_addr.s_addr), 0x0a00020f);
	assert_true(s.fwd[1].udp);
	assert_int_equal(s.fwd[1].host_addr.s_addr, 0);
	assert_int_equal(ntohl(s.fwd[1].guest_addr.s_addr), 0x0a000209);
	assert_true(s.has_mac);
	assert_int_equal(s.mac[5], 1);
	assert_int_equal(config_net_parse("user,hostfwd=tcp::2222-:22", &s, err, sizeof(err)), 0); /* QEMU style */
	assert_int_equal(s.fwd[0].host_port, 2222);
	assert_int_equal(config_net_parse("tap=tap0,mac=52:54:00:12:34:56", &s, err, sizeof(err)), 0);
	assert_int_equal(s.kind, NET_TAP);
	assert_string_equal(s.ifname, "tap0");

	static const char *const bad[] = {
		"", "bridge", "tap", "tap=", "tap=averyveryverylongname", "tap=a/b", "user,mac=52:54:00:12:34",
		"user,mac=01:00:00:00:00:01", "user,mac=00:00:00:00:00:00", "user,mac=zz:54:00:12:34:56",
		"user,hostfwd=tcp:99999-:80", "user,hostfwd=tcp:8080", "user,hostfwd=sctp:1-:2",
		"user,hostfwd=tcp:8080-192.168.1.1:80", "user,hostfwd=tcp:8080-:0", "tap=t0,hostfwd=tcp:1-:2",
		"user,speed=fast", "user,host-loopback=yes", "user,host-loopback=", "tap=t0,host-loopback=on",
		"user,hostfwd=tcp:1-:1,hostfwd=tcp:2-:1,hostfwd=tcp:3-:1,hostfwd=tcp:4-:1,hostfwd=tcp:5-:1,"
		"hostfwd=tcp:6-:1,hostfwd=tcp:7-:1,hostfwd=tcp:8-:1,hostfwd=tcp:9-:1",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		err[0] = 0;
		assert_int_equal(config_net_parse(bad[i], &s, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "--net"));
	}
	uint8_t mac[6], mac2[6];
	config_net_default_mac(0, mac);
	config_net_default_mac(1, mac2);
	assert_int_equal(mac[0], 0x52); /* locally administered, unicast */
	assert_memory_not_equal(mac, mac2, 6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(features_follow_the_backend),
		cmocka_unit_test(a_frame_reaches_the_backend),
		cmocka_unit_test(malformed_transmits_are_dropped_and_counted),
		cmocka_unit_test(offloads_are_checked_against_the_frame),
		cmocka_unit_test(a_transmit_descriptor_outside_ram_needs_reset),
		cmocka_unit_test(a_frame_fills_one_receive_buffer),
		cmocka_unit_test(mergeable_buffers_take_a_frame_in_pieces),
		cmocka_unit_test(a_frame_bigger_than_the_whole_ring_is_dropped),
		cmocka_unit_test(a_too_small_buffer_drops_the_frame_not_the_buffer),
		cmocka_unit_test(frames_without_buffers_wait_in_a_bounded_queue),
		cmocka_unit_test(a_drained_queue_resumes_the_backend),
		cmocka_unit_test(a_readable_receive_buffer_needs_reset),
		cmocka_unit_test(frames_before_driver_ok_are_dropped),
		cmocka_unit_test(state_survives_save_and_load),
		cmocka_unit_test(clone_mac_applied_after_load),
		cmocka_unit_test(clone_mac_without_status_feature),
		cmocka_unit_test(net_options_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
