/*
 * libFuzzer target: PCI configuration mechanism #1 (the 0xCF8 address latch and the 0xCFC-0xCFF
 * data ports) on a bus with the host bridge and a virtio-rng function, under a fuzzed sequence
 * of accesses (see fuzz_ops.h): any bus, slot, function and register, BAR sizing and moving,
 * capability and command writes. An access with extra bit 0 set goes to the MMIO window
 * instead, where moved BARs decode.
 * Build and run: make fuzz && build/fuzz/fuzz_pci_config tests/fuzz/corpus_pci_config
 */
#include "fuzz_ops.h"
#include "fuzz_virtio.h"
#include "virtio/virtio_rng.h"

static struct fuzz_virtio v;
static struct pci_device *fn;
static struct pci_bar pristine_bars[PCI_NUM_BARS];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	struct virtio_rng *rng;
	fv_init(&v, 1);
	fuzz_check(virtio_rng_create(&v.deps, &rng) == 0, "virtio_rng_create");
	fn = v.pci.devices[1];
	memcpy(pristine_bars, fn->bars, sizeof(pristine_bars));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Back to power-on: BARs unmapped and at their allocation, decoding off. */
	pci_config_write(fn, PCI_COMMAND, 0, 2);
	for (int i = 0; i < PCI_NUM_BARS; i++)
		if (fn->bars[i].size)
			pci_config_write(fn, PCI_BAR0 + 4u * (unsigned int)i, pristine_bars[i].addr, 4);
	struct fuzz_op op;
	while (fuzz_next_op(&data, &size, &op)) {
		if (op.extra & 1)
			fuzz_bus_access(&v.mmio, LAYOUT_PCI_MMIO_START + ((uint64_t)op.off << 4), &op);
		else
			fuzz_bus_access(&v.pio, PCI_CONFIG_ADDRESS_PORT + op.off % 8, &op);
		fv_settle(&v);
	}
	return 0;
}
