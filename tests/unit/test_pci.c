/* PCI bus 0 through configuration mechanism #1: host bridge, BAR sizing and decoding, capabilities. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "bus/pci.h"

struct fake_bar {
	uint64_t last_offset;
	int maps, unmaps;
	uint64_t mapped_addr;
};

static void bar_read(void *dev, uint64_t offset, void *data, uint32_t len)
{
	((struct fake_bar *)dev)->last_offset = offset;
	memset(data, 0xab, len);
}

static const struct device_ops bar_ops = { .name = "fake-bar", .read = bar_read };

static void on_bar_mapped(void *owner, int bar, uint64_t addr)
{
	struct fake_bar *f = owner;
	(void)bar;
	if (addr) {
		f->maps++;
		f->mapped_addr = addr;
	} else {
		f->unmaps++;
		f->mapped_addr = 0;
	}
}

struct rig {
	struct bus pio, mmio;
	struct pci_bus pci;
};

static void rig_init(struct rig *r)
{
	bus_init(&r->pio, "pio");
	bus_init(&r->mmio, "mmio");
	assert_int_equal(pci_bus_init(&r->pci, &r->pio, &r->mmio, LAYOUT_PCI_MMIO_START, LAYOUT_IOAPIC), 0);
}

static void rig_destroy(struct rig *r)
{
	pci_bus_destroy(&r->pci);
	bus_destroy(&r->pio);
	bus_destroy(&r->mmio);
}

static uint32_t cfg_addr(unsigned int slot, unsigned int reg)
{
	return 0x80000000u | slot << 11 | (reg & 0xfc);
}

/* Reads through the ports, as a guest does: latch the address in 0xCF8, access 0xCFC+(reg&3). */
static uint32_t cfg_read(struct rig *r, unsigned int slot, unsigned int reg, uint32_t len)
{
	uint32_t a = cfg_addr(slot, reg), v = 0;
	bus_write(&r->pio, 0xcf8, &a, 4);
	bus_read(&r->pio, 0xcfc + (reg & 3), &v, len);
	return len == 4 ? v : v & ((1u << (8 * len)) - 1);
}

static void cfg_write(struct rig *r, unsigned int slot, unsigned int reg, uint32_t v, uint32_t len)
{
	uint32_t a = cfg_addr(slot, reg);
	bus_write(&r->pio, 0xcf8, &a, 4);
	bus_write(&r->pio, 0xcfc + (reg & 3), &v, len);
}

static void host_bridge_answers_at_00_00_0(void **state)
{
	(void)state;
	struct rig r;
	rig_init(&r);
	assert_int_equal(cfg_read(&r, 0, PCI_VENDOR_ID, 2), 0x8086);
	assert_int_equal(cfg_read(&r, 0, PCI_DEVICE_ID, 2), 0x0d57);
	assert_int_equal(cfg_read(&r, 0, 0x08, 4) >> 8, 0x060000); /* class: host bridge */
	assert_int_equal(cfg_read(&r, 0, PCI_HEADER_TYPE, 1), 0);
	/* The address latch reads back (Linux's conf1 probe) with reserved bits cleared. */
	uint32_t a = 0x80000000u, back = 0;
	bus_write(&r.pio, 0xcf8, &a, 4);
	bus_read(&r.pio, 0xcf8, &back, 4);
	assert_int_equal(back, 0x80000000u);
	/* Empty slots, other functions, other buses and a disabled latch read all ones. */
	assert_int_equal(cfg_read(&r, 5, PCI_VENDOR_ID, 2), 0xffff);
	a = 0x80000100u; /* 00:00.1 */
	bus_write(&r.pio, 0xcf8, &a, 4);
	uint32_t v = 0;
	bus_read(&r.pio, 0xcfc, &v, 4);
	assert_int_equal(v, 0xffffffffu);
	a = 0x80010000u; /* bus 1 */
	bus_write(&r.pio, 0xcf8, &a, 4);
	bus_read(&r.pio, 0xcfc, &v, 4);
	assert_int_equal(v, 0xffffffffu);
	a = 0; /* enable bit clear */
	bus_write(&r.pio, 0xcf8, &a, 4);
	bus_read(&r.pio, 0xcfc, &v, 4);
	assert_int_equal(v, 0xffffffffu);
	rig_destroy(&r);
}

static void byte_and_word_accesses_see_the_right_bytes(void **state)
{
	(void)state;
	struct rig r;
	rig_init(&r);
	uint32_t dw = cfg_read(&r, 0, 0, 4);
	assert_int_equal(dw, 0x0d578086u);
	assert_int_equal(cfg_read(&r, 0, 1, 1), 0x80);
	assert_int_equal(cfg_read(&r, 0, 2, 2), 0x0d57);
	assert_int_equal(cfg_read(&r, 0, 3, 1), 0x0d);
	/* A word access at 0xCFF would cross the dword: refused. */
	uint32_t a = cfg_addr(0, 0), v = 0;
	bus_write(&r.pio, 0xcf8, &a, 4);
	bus_read(&r.pio, 0xcff, &v, 2);
	assert_int_equal(v & 0xffff, 0xffff);
	/* Read-only registers ignore writes; the interrupt line is scratch for the OS. */
	cfg_write(&r, 0, PCI_VENDOR_ID, 0x1234, 2);
	assert_int_equal(cfg_read(&r, 0, PCI_VENDOR_ID, 2), 0x8086);
	cfg_write(&r, 0, PCI_INTERRUPT_LINE, 11, 1);
	assert_int_equal(cfg_read(&r, 0, PCI_INTERRUPT_LINE, 1), 11);
	rig_destroy(&r);
}

static void bars_size_decode_and_move(void **state)
{
	(void)state;
	struct rig r;
	rig_init(&r);
	struct pci_device d;
	struct fake_bar f = { 0 };
	pci_device_init(&d, "test", 0x1af4, 0x1044, 0xff0000, 0x1af4, 0x40, 1);
	d.owner = &f;
	d.bar_mapped = on_bar_mapped;
	assert_int_equal(pci_device_set_bar(&d, 0, 100, &bar_ops, &f), -EINVAL); /* not a power of two */
	assert_int_equal(pci_device_set_bar(&d, 0, 0x4000, &bar_ops, &f), 0);
	assert_int_equal(pci_bus_add_device(&r.pci, &d), 0);
	assert_int_equal(d.slot, 1);
	assert_int_equal(cfg_read(&r, 1, PCI_INTERRUPT_PIN, 1), 0); /* no INTx */

	/* vmon assigned an address in the PCI window, but nothing decodes until memory is enabled. */
	uint32_t bar = cfg_read(&r, 1, PCI_BAR0, 4);
	assert_int_equal(bar, LAYOUT_PCI_MMIO_START);
	uint8_t b;
	assert_false(bus_read(&r.mmio, bar + 0x10, &b, 1));
	assert_int_equal(f.maps, 0);

	/* Sizing: all ones in, size mask out; unimplemented BARs read 0. */
	cfg_write(&r, 1, PCI_BAR0, 0xffffffffu, 4);
	assert_int_equal(cfg_read(&r, 1, PCI_BAR0, 4), 0xffffc000u);
	cfg_write(&r, 1, PCI_BAR0 + 4, 0xffffffffu, 4);
	assert_int_equal(cfg_read(&r, 1, PCI_BAR0 + 4, 4), 0);
	cfg_write(&r, 1, PCI_BAR0, bar, 4);

	cfg_write(&r, 1, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	assert_int_equal(cfg_read(&r, 1, PCI_COMMAND, 2), PCI_COMMAND_MEMORY);
	assert_true(bus_read(&r.mmio, bar + 0x10, &b, 1));
	assert_int_equal(f.last_offset, 0x10);
	assert_int_equal(f.maps, 1);
	assert_int_equal(f.mapped_addr, bar);

	/* Sizing with decoding on must not leave the BAR at the all-ones pattern. */
	cfg_write(&r, 1, PCI_BAR0, 0xffffffffu, 4);
	assert_int_equal(f.mapped_addr, 0);
	cfg_write(&r, 1, PCI_BAR0, 0xd0000000u | 0xfff, 4); /* low bits are not writable */
	assert_int_equal(cfg_read(&r, 1, PCI_BAR0, 4), 0xd0000000u);
	assert_int_equal(f.mapped_addr, 0xd0000000u);
	assert_false(bus_read(&r.mmio, bar + 0x10, &b, 1));
	assert_true(bus_read(&r.mmio, 0xd0000020u, &b, 1));
	assert_int_equal(f.last_offset, 0x20);

	/* Byte writes to a BAR (odd, but legal) move it too. */
	cfg_write(&r, 1, PCI_BAR0 + 3, 0xe0, 1);
	assert_int_equal(f.mapped_addr, 0xe0000000u);

	cfg_write(&r, 1, PCI_COMMAND, 0, 2);
	assert_false(bus_read(&r.mmio, 0xe0000020u, &b, 1));
	assert_int_equal(f.mapped_addr, 0);
	rig_destroy(&r);
}

static void overlapping_bars_stay_unmapped(void **state)
{
	(void)state;
	struct rig r;
	rig_init(&r);
	struct pci_device d1, d2;
	struct fake_bar f1 = { 0 }, f2 = { 0 };
	pci_device_init(&d1, "one", 0x1af4, 0x1044, 0xff0000, 0, 0, 0);
	pci_device_init(&d2, "two", 0x1af4, 0x1044, 0xff0000, 0, 0, 0);
	pci_device_set_bar(&d1, 0, 0x1000, &bar_ops, &f1);
	pci_device_set_bar(&d2, 2, 0x1000, &bar_ops, &f2);
	assert_int_equal(pci_bus_add_device(&r.pci, &d1), 0);
	assert_int_equal(pci_bus_add_device(&r.pci, &d2), 0);
	uint32_t a1 = cfg_read(&r, 1, PCI_BAR0, 4), a2 = cfg_read(&r, 2, PCI_BAR0 + 8, 4);
	assert_int_not_equal(a1, a2);
	cfg_write(&r, 1, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	cfg_write(&r, 2, PCI_BAR0 + 8, a1, 4); /* onto device 1's BAR */
	cfg_write(&r, 2, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	uint8_t b;
	assert_true(bus_read(&r.mmio, a1 + 8, &b, 1));
	assert_int_equal(f1.last_offset, 8); /* device 1 still owns it */
	assert_int_equal(f2.last_offset, 0);
	assert_int_equal(f2.maps, 0);
	rig_destroy(&r);
}

static void capabilities_form_a_walkable_list(void **state)
{
	(void)state;
	struct rig r;
	rig_init(&r);
	struct pci_device d;
	pci_device_init(&d, "caps", 0x1af4, 0x1041, 0x020000, 0, 0, 0);
	uint8_t body1[14] = { 16, 1, 0 }, body2[10] = { 0 };
	int c1 = pci_device_add_capability(&d, PCI_CAP_ID_VNDR, body1, sizeof(body1));
	int c2 = pci_device_add_capability(&d, PCI_CAP_ID_MSIX, body2, sizeof(body2));
	int c3 = pci_device_add_capability(&d, PCI_CAP_ID_VNDR, body1, sizeof(body1));
	assert_int_equal(c1, PCI_CAP_START);
	assert_true(c2 > c1 && c3 > c2 && c2 % 4 == 0 && c3 % 4 == 0);
	uint8_t wm[2] = { 0, 0xc0 };
	pci_device_set_wmask(&d, (uint32_t)c2 + 2, wm, 2);
	assert_int_equal(pci_bus_add_device(&r.pci, &d), 0);

	assert_true(cfg_read(&r, 1, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	/* Walk the list as Linux does; it must end, and in the order added. */
	uint8_t ids[8];
	int n = 0;
	unsigned int pos = cfg_read(&r, 1, PCI_CAPABILITY_LIST, 1);
	while (pos && n < 8) {
		assert_true(pos >= PCI_CAP_START && pos % 4 == 0);
		ids[n++] = (uint8_t)cfg_read(&r, 1, pos, 1);
		pos = cfg_read(&r, 1, pos + 1, 1);
	}
	assert_int_equal(n, 3);
	assert_int_equal(ids[0], PCI_CAP_ID_VNDR);
	assert_int_equal(ids[1], PCI_CAP_ID_MSIX);
	assert_int_equal(ids[2], PCI_CAP_ID_VNDR);
	assert_int_equal(cfg_read(&r, 1, (unsigned int)c1 + 2, 1), 16);
	/* Only the bits marked writable change. */
	cfg_write(&r, 1, (unsigned int)c2 + 2, 0xffff, 2);
	assert_int_equal(cfg_read(&r, 1, (unsigned int)c2 + 2, 2), 0xc000);
	cfg_write(&r, 1, (unsigned int)c1 + 2, 0xff, 1);
	assert_int_equal(cfg_read(&r, 1, (unsigned int)c1 + 2, 1), 16);

	/* Capabilities run out when config space does. */
	uint8_t big[200] = { 0 };
	assert_int_equal(pci_device_add_capability(&d, PCI_CAP_ID_VNDR, big, sizeof(big)), -ENOSPC);
	rig_destroy(&r);
}

static void the_bus_holds_32_slots(void **state)
{
	(void)state;
	struct rig r;
	rig_init(&r);
	static struct pci_device devs[PCI_SLOTS];
	for (int i = 0; i < PCI_SLOTS - 1; i++) {
		pci_device_init(&devs[i], "d", 0x1af4, 0x1044, 0xff0000, 0, 0, 0);
		assert_int_equal(pci_bus_add_device(&r.pci, &devs[i]), 0);
	}
	pci_device_init(&devs[PCI_SLOTS - 1], "d", 0x1af4, 0x1044, 0xff0000, 0, 0, 0);
	assert_int_equal(pci_bus_add_device(&r.pci, &devs[PCI_SLOTS - 1]), -ENOSPC);
	assert_int_equal(cfg_read(&r, 31, PCI_VENDOR_ID, 2), 0x1af4);
	rig_destroy(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(host_bridge_answers_at_00_00_0),
		cmocka_unit_test(byte_and_word_accesses_see_the_right_bytes),
		cmocka_unit_test(bars_size_decode_and_move),
		cmocka_unit_test(overlapping_bars_stay_unmapped),
		cmocka_unit_test(capabilities_form_a_walkable_list),
		cmocka_unit_test(the_bus_holds_32_slots),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
