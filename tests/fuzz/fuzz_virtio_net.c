/*
 * libFuzzer target: virtio-net's transmit path (and the receive queue's buffers), driven by a
 * fuzzed guest (see fuzz_virtio.h), into a backend that checks and reads every frame.
 * Build and run: make fuzz && build/fuzz/fuzz_virtio_net tests/fuzz/corpus_virtio_net
 */
#include "backends/net_backend.h"
#include "fuzz_virtio.h"
#include "virtio/virtio_net.h"

static struct fuzz_virtio v;
static volatile uint8_t sink;

/* What a backend may rely on: a header and a frame of sane size, all of it readable. */
static int check_send(struct net_backend *be, const void *pkt, size_t len)
{
	(void)be;
	fuzz_check(len >= VIRTIO_NET_HDR_LEN && len <= VIRTIO_NET_HDR_LEN + NET_MAX_FRAME, "frame size");
	const uint8_t *p = pkt;
	uint8_t x = 0;
	for (size_t i = 0; i < len; i++)
		x ^= p[i];
	sink = x;
	return 0;
}

static void no_destroy(struct net_backend *be) { (void)be; }

static const struct net_backend_ops check_ops = { .kind = "fuzz", .send = check_send, .destroy = no_destroy };
/* Offers every offload, so the guest can negotiate GSO and checksum headers. */
static struct net_backend backend = { .ops = &check_ops, .offloads = ~0ull };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
	struct virtio_net *net;
	fv_init(&v, 2);
	fuzz_check(virtio_net_create(&v.deps, mac, &backend, &net) == 0, "virtio_net_create");
	fv_attach(&v);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fv_run(&v, data, size);
	return 0;
}
