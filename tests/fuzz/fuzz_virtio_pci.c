/*
 * libFuzzer target: the virtio-pci transport's BAR0 (common configuration, ISR, device
 * configuration and notification registers) under a fuzzed sequence of accesses (see
 * fuzz_ops.h), on a virtio-net device: status changes in any order, queue set-up with any
 * sizes and addresses, notifications of running and stopped queues. The first RAM_PART
 * bytes are guest RAM (the rings), the rest the accesses.
 * Build and run: make fuzz && build/fuzz/fuzz_virtio_pci tests/fuzz/corpus_virtio_pci
 */
#include "backends/net_backend.h"
#include "fuzz_ops.h"
#include "fuzz_virtio.h"
#include "virtio/virtio_net.h"

#define RAM_PART 0x800u /* both queues' rings (FV_DESC(0) .. FV_DESC(2)) */

static struct fuzz_virtio v;

static int drop_send(struct net_backend *be, const void *pkt, size_t len)
{
	(void)be, (void)pkt, (void)len;
	return 0;
}

static void no_destroy(struct net_backend *be) { (void)be; }

static const struct net_backend_ops drop_ops = { .kind = "fuzz", .send = drop_send, .destroy = no_destroy };
static struct net_backend backend = { .ops = &drop_ops, .offloads = ~0ull };

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
	if (size < RAM_PART)
		return 0;
	fv_wr(&v, FV_STATUS, 0, 1);
	fv_settle(&v);
	memset(v.ram, 0, FV_RAM);
	memcpy(v.ram, data, RAM_PART);
	data += RAM_PART;
	size -= RAM_PART;
	struct fuzz_op op;
	while (fuzz_next_op(&data, &size, &op)) {
		/* Mostly the common configuration, where the state machine is. */
		uint32_t off = op.extra < 4 ? op.off % VIRTIO_PCI_COMMON_LEN : op.off % VIRTIO_PCI_BAR0_SIZE;
		fuzz_bus_access(&v.mmio, v.bar0 + off, &op);
		fv_settle(&v);
	}
	return 0;
}
