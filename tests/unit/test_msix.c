/* MSI-X: capability, vector table, masking and the pending-bit array; with KVM, irqfd delivery. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "bus/msix.h"

struct rig {
	struct bus pio, mmio;
	struct pci_bus pci;
	struct pci_device dev;
	struct irq_routing routing;
	struct msix msix;
	uint32_t bar;
	int kvm_fd, vm_fd;
};

static void forward_config(void *owner, uint32_t off, uint32_t len)
{
	msix_config_written(owner, off, len);
}

static int rig_init(struct rig *r, bool with_kvm, uint16_t nvec)
{
	memset(r, 0, sizeof(*r));
	r->kvm_fd = r->vm_fd = -1;
	if (with_kvm) {
		r->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
		if (r->kvm_fd < 0)
			return -1;
		r->vm_fd = ioctl(r->kvm_fd, KVM_CREATE_VM, 0);
		if (r->vm_fd < 0 || ioctl(r->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
			close(r->kvm_fd);
			return -1;
		}
	}
	bus_init(&r->pio, "pio");
	bus_init(&r->mmio, "mmio");
	assert_int_equal(pci_bus_init(&r->pci, &r->pio, &r->mmio, LAYOUT_PCI_MMIO_START, LAYOUT_IOAPIC), 0);
	assert_int_equal(irq_routing_init(&r->routing, r->vm_fd), 0);
	pci_device_init(&r->dev, "msix-test", 0x1af4, 0x1044, 0xff0000, 0, 0, 0);
	assert_int_equal(msix_init(&r->msix, &r->dev, 1, nvec, &r->routing, r->vm_fd), 0);
	r->dev.owner = &r->msix;
	r->dev.config_written = forward_config;
	assert_int_equal(pci_bus_add_device(&r->pci, &r->dev), 0);
	pci_config_write(&r->dev, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	r->bar = pci_config_read(&r->dev, PCI_BAR0 + 4, 4);
	return 0;
}

static void rig_destroy(struct rig *r)
{
	msix_destroy(&r->msix);
	pci_bus_destroy(&r->pci);
	irq_routing_destroy(&r->routing);
	bus_destroy(&r->pio);
	bus_destroy(&r->mmio);
	if (r->vm_fd >= 0)
		close(r->vm_fd);
	if (r->kvm_fd >= 0)
		close(r->kvm_fd);
}

static uint32_t rd32(struct rig *r, uint64_t off)
{
	uint32_t v = 0;
	assert_true(bus_read(&r->mmio, r->bar + off, &v, 4));
	return v;
}

static void wr32(struct rig *r, uint64_t off, uint32_t v)
{
	assert_true(bus_write(&r->mmio, r->bar + off, &v, 4));
}

static uint16_t msg_ctrl(struct rig *r)
{
	return (uint16_t)pci_config_read(&r->dev, r->msix.cap + 2u, 2);
}

static void set_msg_ctrl(struct rig *r, uint16_t v)
{
	pci_config_write(&r->dev, r->msix.cap + 2u, v, 2);
}

static void program(struct rig *r, uint16_t vec, uint32_t addr, uint32_t data)
{
	wr32(r, vec * 16u + 0, addr);
	wr32(r, vec * 16u + 4, 0);
	wr32(r, vec * 16u + 8, data);
}

static bool readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) == 1;
}

static void capability_describes_table_and_pba(void **state)
{
	(void)state;
	struct rig r;
	rig_init(&r, false, 3);
	uint8_t cap = r.msix.cap;
	assert_int_equal(pci_config_read(&r.dev, PCI_CAPABILITY_LIST, 1), cap);
	assert_int_equal(pci_config_read(&r.dev, cap, 1), PCI_CAP_ID_MSIX);
	assert_int_equal(msg_ctrl(&r), 2); /* table size N-1, disabled, not function-masked */
	assert_int_equal(pci_config_read(&r.dev, cap + 4u, 4), MSIX_TABLE_OFFSET | 1); /* BIR 1 */
	assert_int_equal(pci_config_read(&r.dev, cap + 8u, 4), MSIX_PBA_OFFSET | 1);
	/* Only enable and function mask are writable. */
	set_msg_ctrl(&r, 0xffff);
	assert_int_equal(msg_ctrl(&r), MSIX_CTRL_ENABLE | MSIX_CTRL_FUNCTION_MASK | 2);
	assert_int_equal(pci_config_read(&r.dev, PCI_BAR0 + 4, 4) & 0xfff, 0);
	rig_destroy(&r);
}

static void table_entries_read_back_and_start_masked(void **state)
{
	(void)state;
	struct rig r;
	rig_init(&r, false, 3);
	for (unsigned int v = 0; v < 3; v++)
		assert_int_equal(rd32(&r, v * 16 + 12), MSIX_ENTRY_CTRL_MASKED);
	program(&r, 1, 0xfee01000, 0x4041);
	assert_int_equal(rd32(&r, 16 + 0), 0xfee01000);
	assert_int_equal(rd32(&r, 16 + 8), 0x4041);
	uint64_t q = 0;
	assert_true(bus_read(&r.mmio, r.bar + 16, &q, 8)); /* 64-bit access */
	assert_int_equal(q, 0xfee01000u);
	/* Reserved control bits read 0; entries past the table read 0 and ignore writes. */
	wr32(&r, 16 + 12, 0xfffffffe);
	assert_int_equal(rd32(&r, 16 + 12), 0);
	wr32(&r, 5 * 16, 0x1234);
	assert_int_equal(rd32(&r, 5 * 16), 0);
	/* Misaligned accesses are refused. */
	uint32_t v = 0;
	bus_read(&r.mmio, r.bar + 2, &v, 4);
	assert_int_equal(v, 0xffffffffu);
	rig_destroy(&r);
}

static void masked_vectors_set_their_pba_bit(void **state)
{
	(void)state;
	struct rig r;
	rig_init(&r, false, 3);
	assert_int_equal(rd32(&r, MSIX_PBA_OFFSET), 0);
	msix_notify(&r.msix, 2);
	assert_true(msix_pending(&r.msix, 2));
	assert_int_equal(rd32(&r, MSIX_PBA_OFFSET), 1u << 2);
	wr32(&r, MSIX_PBA_OFFSET, 0); /* read-only */
	assert_int_equal(rd32(&r, MSIX_PBA_OFFSET), 1u << 2);
	msix_notify(&r.msix, 7); /* out of range: ignored */
	assert_int_equal(msix_eventfd(&r.msix, 7), -1);
	msix_reset(&r.msix);
	assert_int_equal(rd32(&r, MSIX_PBA_OFFSET), 0);
	rig_destroy(&r);
}

static void kvm_delivers_on_unmask_and_honours_function_mask(void **state)
{
	(void)state;
	struct rig r;
	if (rig_init(&r, true, 2) < 0)
		skip();
	unsigned int legacy = irq_routing_count(&r.routing);
	program(&r, 0, 0xfee00000, 0x4030);
	set_msg_ctrl(&r, MSIX_CTRL_ENABLE);
	/* Still masked per vector: a signal waits in the PBA. */
	msix_notify(&r.msix, 0);
	assert_int_equal(rd32(&r, MSIX_PBA_OFFSET), 1);
	/* Unmask: KVM takes the signal (the eventfd drains) and the PBA bit clears. */
	wr32(&r, 12, 0);
	assert_int_equal(irq_routing_count(&r.routing), legacy + 1);
	for (int i = 0; i < 100 && readable(msix_eventfd(&r.msix, 0)); i++)
		usleep(1000);
	assert_false(readable(msix_eventfd(&r.msix, 0)));
	assert_int_equal(rd32(&r, MSIX_PBA_OFFSET), 0);
	/* Function mask holds every vector back. */
	set_msg_ctrl(&r, MSIX_CTRL_ENABLE | MSIX_CTRL_FUNCTION_MASK);
	msix_notify(&r.msix, 0);
	assert_int_equal(rd32(&r, MSIX_PBA_OFFSET), 1);
	set_msg_ctrl(&r, MSIX_CTRL_ENABLE);
	for (int i = 0; i < 100 && readable(msix_eventfd(&r.msix, 0)); i++)
		usleep(1000);
	assert_int_equal(rd32(&r, MSIX_PBA_OFFSET), 0);
	/* Reprogramming an unmasked vector updates its route. */
	program(&r, 0, 0xfee01000, 0x4031);
	assert_int_equal(r.msix.v[0].routed_data, 0x4031);
	rig_destroy(&r);
}

static void routing_keeps_legacy_entries_and_reuses_gsis(void **state)
{
	(void)state;
	struct irq_routing rt;
	assert_int_equal(irq_routing_init(&rt, -1), 0);
	unsigned int legacy = irq_routing_count(&rt);
	assert_int_equal(legacy, 15 + 23); /* 8259 IRQs without the cascade, I/O APIC pins without pin 2's GSI */
	int a = irq_routing_alloc_msi_gsi(&rt), b = irq_routing_alloc_msi_gsi(&rt);
	assert_int_equal(a, IRQ_ROUTING_FIRST_MSI_GSI);
	assert_int_equal(b, IRQ_ROUTING_FIRST_MSI_GSI + 1);
	assert_int_equal(irq_routing_set_msi(&rt, 5, 0xfee00000, 0x30), -EINVAL); /* not an MSI GSI */
	assert_int_equal(irq_routing_set_msi(&rt, (unsigned int)a, 0xfee00000, 0x30), 0);
	assert_int_equal(irq_routing_set_msi(&rt, (unsigned int)a, 0xfee00000, 0x31), 0); /* replaced, not added */
	assert_int_equal(irq_routing_set_msi(&rt, (unsigned int)b, 0xfee00000, 0x32), 0);
	assert_int_equal(irq_routing_count(&rt), legacy + 2);
	irq_routing_free_msi_gsi(&rt, (unsigned int)a);
	assert_int_equal(irq_routing_count(&rt), legacy + 1);
	assert_int_equal(irq_routing_alloc_msi_gsi(&rt), a);
	assert_int_equal(irq_routing_clear_msi(&rt, (unsigned int)b), 0);
	assert_int_equal(irq_routing_count(&rt), legacy);
	irq_routing_destroy(&rt);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(capability_describes_table_and_pba),
		cmocka_unit_test(table_entries_read_back_and_start_masked),
		cmocka_unit_test(masked_vectors_set_their_pba_bit),
		cmocka_unit_test(kvm_delivers_on_unmask_and_honours_function_mask),
		cmocka_unit_test(routing_keeps_legacy_entries_and_reuses_gsis),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
