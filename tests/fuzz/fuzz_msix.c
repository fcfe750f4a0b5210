/*
 * libFuzzer target: the MSI-X table and PBA (BAR1 of a virtio-rng device) and the capability's
 * control word in configuration space, under a fuzzed sequence of accesses (see fuzz_ops.h);
 * an access with extra bit 1 set raises an interrupt instead (a configuration change, on
 * vector 0, whose pending bit the PBA then shows).
 * Build and run: make fuzz && build/fuzz/fuzz_msix tests/fuzz/corpus_msix
 */
#include "fuzz_ops.h"
#include "fuzz_virtio.h"
#include "virtio/virtio_rng.h"

static struct fuzz_virtio v;
static struct virtio_device *vdev;
static struct pci_device *fn;
static uint64_t bar1;
static uint8_t msix_cap;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	struct virtio_rng *rng;
	fv_init(&v, 1);
	fuzz_check(virtio_rng_create(&v.deps, &rng) == 0, "virtio_rng_create");
	fv_attach(&v);
	fn = v.pci.devices[1];
	bar1 = pci_config_read(fn, PCI_BAR0 + 4, 4) & ~0xfull;
	for (uint8_t p = (uint8_t)pci_config_read(fn, PCI_CAPABILITY_LIST, 1); p; p = (uint8_t)pci_config_read(fn, p + 1u, 1))
		if (pci_config_read(fn, p, 1) == PCI_CAP_ID_MSIX)
			msix_cap = p;
	fuzz_check(msix_cap != 0, "no MSI-X capability");
	vdev = fn->owner; /* the transport owns the function */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A reset of the function, as at boot: table masked, MSI-X off. */
	pci_config_write(fn, msix_cap + 2u, 0, 2);
	struct fuzz_op op;
	while (fuzz_next_op(&data, &size, &op)) {
		if (op.extra & 2)
			virtio_pci_config_changed(vdev);
		else if (op.extra & 1)
			pci_config_write(fn, msix_cap + 2u, (uint32_t)op.val, 2);
		else
			fuzz_bus_access(&v.mmio, bar1 + op.off % MSIX_BAR_SIZE, &op);
	}
	return 0;
}
