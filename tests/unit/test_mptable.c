#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "arch/x86/mptable.h"
#include "memory/guest_mem.h"

#define RAM (2 * 1024 * 1024)

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) { return le16(p) | (uint32_t)le16(p + 2) << 16; }

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	while (n--)
		s = (uint8_t)(s + *p++);
	return s;
}

/* Finds the floating pointer the way Linux does: 16-byte steps through the EBDA's first KiB. */
static const uint8_t *find_mpf(const struct guest_mem *mem)
{
	for (uint64_t a = LAYOUT_MPTABLE; a < LAYOUT_MPTABLE + 1024; a += 16) {
		const uint8_t *p = gpa_to_host(mem, a, 16);
		if (p && memcmp(p, "_MP_", 4) == 0 && p[8] == 1 && sum(p, 16) == 0)
			return p;
	}
	return NULL;
}

struct parsed {
	unsigned int cpus, bsps, buses, ioapics, intsrcs, lintsrcs, entries;
	uint8_t apic_ids[256];
	uint8_t ioapic_id;
	uint32_t ioapic_addr;
	int isa_bus, pci_bus;
	int irq_pin[16];  /* ISA IRQ -> I/O APIC pin, -1 if not routed */
	int lint_type[2]; /* interrupt type on LINT0/LINT1 */
};

static void parse(const struct guest_mem *mem, struct parsed *out)
{
	memset(out, 0, sizeof(*out));
	out->isa_bus = out->pci_bus = -1;
	for (int i = 0; i < 16; i++)
		out->irq_pin[i] = -1;
	out->lint_type[0] = out->lint_type[1] = -1;

	const uint8_t *mpf = find_mpf(mem);
	assert_non_null(mpf);
	assert_int_equal(mpf[9], 4); /* spec 1.4 */
	assert_int_equal(mpf[11], 0); /* a configuration table follows, no default configuration */
	uint32_t mpc_gpa = le32(mpf + 4);
	assert_true(mpc_gpa >= LAYOUT_MPTABLE && mpc_gpa + 44 <= LAYOUT_EBDA_END);

	const uint8_t *hdr = gpa_to_host(mem, mpc_gpa, 44);
	assert_non_null(hdr);
	assert_memory_equal(hdr, "PCMP", 4);
	uint16_t len = le16(hdr + 4);
	assert_true(mpc_gpa + len <= LAYOUT_EBDA_END);
	const uint8_t *mpc = gpa_to_host(mem, mpc_gpa, len);
	assert_int_equal(sum(mpc, len), 0);
	assert_int_equal(mpc[6], 4);
	assert_int_equal(le32(mpc + 36), 0xfee00000u);
	assert_int_equal(le16(mpc + 40), 0); /* no extended table */

	const uint8_t *p = mpc + 44, *end = mpc + len;
	int last_type = -1;
	while (p < end) {
		/* Entries are sorted by type, as the spec requires. */
		assert_true(p[0] >= last_type);
		last_type = p[0];
		out->entries++;
		switch (p[0]) {
		case 0:
			assert_true(p + 20 <= end);
			assert_true(p[3] & 1);
			out->apic_ids[out->cpus++] = p[1];
			if (p[3] & 2)
				out->bsps++;
			p += 20;
			break;
		case 1:
			out->buses++;
			if (memcmp(p + 2, "ISA   ", 6) == 0)
				out->isa_bus = p[1];
			if (memcmp(p + 2, "PCI   ", 6) == 0)
				out->pci_bus = p[1];
			p += 8;
			break;
		case 2:
			out->ioapics++;
			assert_true(p[3] & 1);
			assert_int_equal(p[2], 0x11);
			out->ioapic_id = p[1];
			out->ioapic_addr = le32(p + 4);
			p += 8;
			break;
		case 3:
			out->intsrcs++;
			assert_int_equal(p[4], out->isa_bus);
			assert_int_equal(p[6], out->ioapic_id);
			assert_true(p[5] < 16);
			assert_int_equal(out->irq_pin[p[5]], -1); /* each IRQ routed once */
			out->irq_pin[p[5]] = p[7];
			p += 8;
			break;
		case 4:
			out->lintsrcs++;
			assert_int_equal(p[6], 0xff); /* all local APICs */
			assert_true(p[7] < 2);
			out->lint_type[p[7]] = p[1];
			p += 8;
			break;
		default:
			fail_msg("unknown MP table entry type %u", p[0]);
		}
	}
	assert_ptr_equal(p, end);
	assert_int_equal(out->entries, le16(mpc + 34));
}

static void check_cpus(unsigned int ncpus)
{
	struct guest_mem mem;
	assert_int_equal(guest_mem_init(&mem, RAM), 0);
	/* Poison the memory around the EBDA to catch writes outside it. */
	uint8_t *low = gpa_to_host_write(&mem, 0, RAM);
	memset(low, 0xa5, RAM);
	assert_int_equal(mptable_write(&mem, ncpus), 0);
	for (uint64_t a = LAYOUT_EBDA_END; a < LAYOUT_EBDA_END + 4096; a++)
		assert_int_equal(low[a], 0xa5);
	assert_int_equal(low[LAYOUT_MPTABLE - 1], 0xa5);

	struct parsed t;
	parse(&mem, &t);
	assert_int_equal(t.cpus, ncpus);
	assert_int_equal(t.bsps, 1);
	for (unsigned int i = 0; i < ncpus; i++)
		assert_int_equal(t.apic_ids[i], i);
	assert_int_equal(t.buses, 2);
	assert_int_not_equal(t.isa_bus, -1);
	assert_int_not_equal(t.pci_bus, -1);
	assert_int_equal(t.ioapics, 1);
	assert_int_equal(t.ioapic_id, ncpus);
	assert_int_equal(t.ioapic_addr, LAYOUT_IOAPIC);
	assert_int_equal(t.irq_pin[0], 2);
	for (int irq = 1; irq < 16; irq++)
		if (irq != 2)
			assert_int_equal(t.irq_pin[irq], irq);
	assert_int_equal(t.lint_type[0], 3); /* ExtINT */
	assert_int_equal(t.lint_type[1], 1); /* NMI */
	guest_mem_destroy(&mem);
}

static void test_one_cpu(void **state) { (void)state; check_cpus(1); }
static void test_four_cpus(void **state) { (void)state; check_cpus(4); }
static void test_max_cpus(void **state) { (void)state; check_cpus(MPTABLE_MAX_CPUS); }

static void test_bsp_is_cpu0(void **state)
{
	(void)state;
	struct guest_mem mem;
	assert_int_equal(guest_mem_init(&mem, RAM), 0);
	assert_int_equal(mptable_write(&mem, 3), 0);
	const uint8_t *mpf = find_mpf(&mem);
	const uint8_t *first_cpu = gpa_to_host(&mem, le32(mpf + 4) + 44, 20);
	assert_int_equal(first_cpu[0], 0);
	assert_int_equal(first_cpu[1], 0);
	assert_int_equal(first_cpu[3], 3); /* enabled + BSP */
	assert_int_equal(first_cpu[20 + 3], 1); /* the next one is enabled, not BSP */
	guest_mem_destroy(&mem);
}

static void test_too_many_cpus(void **state)
{
	(void)state;
	struct guest_mem mem;
	assert_int_equal(guest_mem_init(&mem, RAM), 0);
	assert_int_equal(mptable_write(&mem, MPTABLE_MAX_CPUS + 1), -ENOSPC);
	assert_int_equal(mptable_write(&mem, 254), -ENOSPC);
	assert_int_equal(mptable_write(&mem, 0), -EINVAL);
	assert_null(find_mpf(&mem));
	guest_mem_destroy(&mem);
}

static void test_ram_without_ebda(void **state)
{
	(void)state;
	struct guest_mem mem;
	assert_int_equal(guest_mem_init(&mem, 512 * 1024), 0);
	assert_int_equal(mptable_write(&mem, 1), -EFAULT);
	guest_mem_destroy(&mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_cpu),
		cmocka_unit_test(test_four_cpus),
		cmocka_unit_test(test_max_cpus),
		cmocka_unit_test(test_bsp_is_cpu0),
		cmocka_unit_test(test_too_many_cpus),
		cmocka_unit_test(test_ram_without_ebda),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
