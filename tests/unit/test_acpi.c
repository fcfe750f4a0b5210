#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86/acpi.h"
#include "arch/x86/acpi_aml.h"
#include "arch/x86/layout.h"
#include "devices/acpi_pm.h"
#include "lib/util.h"
#include "memory/guest_mem.h"

#define RAM (2 * 1024 * 1024)

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) { return le16(p) | (uint32_t)le16(p + 2) << 16; }
static uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	while (n--)
		s = (uint8_t)(s + *p++);
	return s;
}

/* ---- walking the tables the way an OS does ---- */

struct acpi_view {
	const uint8_t *rsdp, *xsdt, *fadt, *facs, *dsdt, *madt;
	uint64_t rsdp_gpa;
};

/* Linux's scan: "RSD PTR " on a 16-byte boundary in 0xE0000-0xFFFFF with a valid v1 checksum. */
static uint64_t scan_rsdp(const struct guest_mem *mem)
{
	for (uint64_t a = 0xe0000; a < 0x100000; a += 16) {
		const uint8_t *p = gpa_to_host(mem, a, 20);
		if (p && memcmp(p, "RSD PTR ", 8) == 0 && sum(p, 20) == 0)
			return a;
	}
	return 0;
}

/* A table the OS would accept: inside the ACPI area, its length sane, checksum zero. */
static const uint8_t *table_at(const struct guest_mem *mem, uint64_t gpa, const char *sig)
{
	assert_true(gpa >= LAYOUT_ACPI_RSDP && gpa + 36 <= LAYOUT_ACPI_END);
	const uint8_t *h = gpa_to_host(mem, gpa, 36);
	assert_non_null(h);
	assert_memory_equal(h, sig, 4);
	uint32_t len = le32(h + 4);
	assert_true(len >= 36 && gpa + len <= LAYOUT_ACPI_END);
	const uint8_t *t = gpa_to_host(mem, gpa, len);
	assert_int_equal(sum(t, len), 0);
	assert_memory_equal(t + 10, "VMON  ", 6);
	return t;
}

static void walk(const struct guest_mem *mem, struct acpi_view *v)
{
	memset(v, 0, sizeof(*v));
	v->rsdp_gpa = scan_rsdp(mem);
	assert_int_not_equal(v->rsdp_gpa, 0);
	const uint8_t *r = v->rsdp = gpa_to_host(mem, v->rsdp_gpa, 36);
	assert_int_equal(r[15], 2);
	assert_int_equal(le32(r + 20), 36);
	assert_int_equal(sum(r, 36), 0); /* extended checksum */

	v->xsdt = table_at(mem, le64(r + 24), "XSDT");
	uint32_t n = (le32(v->xsdt + 4) - 36) / 8;
	assert_int_equal(le32(v->xsdt + 4), 36 + 8 * n);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t gpa = le64(v->xsdt + 36 + 8 * i);
		const uint8_t *h = gpa_to_host(mem, gpa, 4);
		assert_non_null(h);
		if (memcmp(h, "FACP", 4) == 0) {
			assert_null(v->fadt);
			v->fadt = table_at(mem, gpa, "FACP");
		} else if (memcmp(h, "APIC", 4) == 0) {
			assert_null(v->madt);
			v->madt = table_at(mem, gpa, "APIC");
		}
	}
	assert_non_null(v->fadt);
	assert_non_null(v->madt);

	uint64_t dsdt = le64(v->fadt + 140);
	assert_int_equal(le32(v->fadt + 40), dsdt); /* the 32-bit DSDT pointer agrees with X_DSDT */
	v->dsdt = table_at(mem, dsdt, "DSDT");

	uint64_t facs = le64(v->fadt + 132);
	assert_int_equal(le32(v->fadt + 36), facs);
	assert_int_equal(facs % 64, 0);
	v->facs = gpa_to_host(mem, facs, 64);
	assert_non_null(v->facs);
	assert_memory_equal(v->facs, "FACS", 4);
	assert_int_equal(le32(v->facs + 4), 64);
}

static void write_tables(struct guest_mem *mem, unsigned int ncpus, struct acpi_view *v)
{
	assert_int_equal(guest_mem_init(mem, RAM), 0);
	uint8_t *ram = gpa_to_host_write(mem, 0, RAM);
	memset(ram, 0xa5, RAM);
	uint64_t rsdp = 0;
	assert_int_equal(acpi_write_tables(mem, ncpus, &rsdp), 0);
	/* Nothing outside the ACPI area was touched. */
	assert_int_equal(ram[LAYOUT_ACPI_RSDP - 1], 0xa5);
	for (uint64_t a = LAYOUT_ACPI_END; a < LAYOUT_ACPI_END + 4096; a++)
		assert_int_equal(ram[a], 0xa5);
	walk(mem, v);
	assert_int_equal(rsdp, v->rsdp_gpa);
	assert_int_equal(rsdp, LAYOUT_ACPI_RSDP);
}

/* ---- FADT ---- */

static void check_gas_io(const uint8_t *gas, uint8_t bits, uint64_t port)
{
	assert_int_equal(gas[0], 1); /* SystemIO */
	assert_int_equal(gas[1], bits);
	assert_int_equal(gas[2], 0);
	assert_int_equal(le64(gas + 4), port);
}

static void test_fadt(void **state)
{
	(void)state;
	struct guest_mem mem;
	struct acpi_view v;
	write_tables(&mem, 1, &v);
	const uint8_t *f = v.fadt;
	assert_int_equal(le32(f + 4), 276);
	assert_int_equal(f[8], 6);
	assert_int_equal(le16(f + 46), 9);      /* SCI_INT */
	assert_int_equal(le32(f + 48), 0);      /* SMI_CMD: always in ACPI mode */
	assert_int_equal(le32(f + 56), PORT_ACPI_PM_BASE);
	assert_int_equal(f[88], 4);
	assert_int_equal(le32(f + 64), PORT_ACPI_PM_BASE + 4);
	assert_int_equal(f[89], 2);
	assert_int_equal(le32(f + 76), 0);      /* no PM timer */
	assert_int_equal(f[91], 0);
	check_gas_io(f + 148, 32, PORT_ACPI_PM_BASE);
	check_gas_io(f + 172, 16, PORT_ACPI_PM_BASE + 4);

	uint32_t flags = le32(f + 112);
	assert_true(flags & (1u << 10));        /* RESET_REG_SUP */
	assert_false(flags & (1u << 20));       /* not HW_REDUCED_ACPI */
	uint16_t boot = le16(f + 109);
	assert_int_equal(boot & 3, 3);          /* LEGACY_DEVICES | 8042 */
	assert_false(boot & (1u << 5));         /* the CMOS RTC is present */

	/* The reset register is a byte in the acpi_pm device's port range. */
	const uint8_t *reset = f + 116;
	check_gas_io(reset, 8, le64(reset + 4));
	uint64_t port = le64(reset + 4);
	assert_true(port >= PORT_ACPI_PM_BASE && port < PORT_ACPI_PM_BASE + ACPI_PM_PORT_LEN);
	assert_int_equal(port - PORT_ACPI_PM_BASE, ACPI_PM_RESET_OFF);
	assert_int_equal(f[128], ACPI_PM_RESET_VALUE);
	guest_mem_destroy(&mem);
}

/* ---- DSDT: decode the AML ourselves ---- */

/* Decodes a PkgLength at p; returns its value and stores the number of bytes it used. */
static size_t pkg_length(const uint8_t *p, size_t *used)
{
	size_t extra = p[0] >> 6;
	size_t v = extra ? (size_t)(p[0] & 0x0f) : (size_t)(p[0] & 0x3f);
	for (size_t i = 1; i <= extra; i++)
		v |= (size_t)p[i] << (4 + 8 * (i - 1));
	*used = extra + 1;
	return v;
}

/* Decodes an integer term (Zero, One, Byte/Word/DWord/QWord prefix); returns bytes used or 0. */
static size_t aml_int(const uint8_t *p, uint64_t *v)
{
	switch (p[0]) {
	case 0x00: *v = 0; return 1;
	case 0x01: *v = 1; return 1;
	case 0xff: *v = ~0ULL; return 1;
	case 0x0a: *v = p[1]; return 2;
	case 0x0b: *v = le16(p + 1); return 3;
	case 0x0c: *v = le32(p + 1); return 5;
	case 0x0e: *v = le64(p + 1); return 9;
	default: return 0;
	}
}

static const uint8_t *find_bytes(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
	for (size_t i = 0; i + m <= n; i++)
		if (memcmp(hay + i, needle, m) == 0)
			return hay + i;
	return NULL;
}

static void test_dsdt_s5(void **state)
{
	(void)state;
	struct guest_mem mem;
	struct acpi_view v;
	write_tables(&mem, 1, &v);
	const uint8_t *aml = v.dsdt + 36, *end = v.dsdt + le32(v.dsdt + 4);

	/* Name(\_S5_, Package(n) {SLP_TYPa, SLP_TYPb, ...}) */
	const uint8_t name[] = { 0x08, '\\', '_', 'S', '5', '_' };
	const uint8_t *p = find_bytes(aml, (size_t)(end - aml), name, sizeof(name));
	assert_non_null(p);
	p += sizeof(name);
	assert_int_equal(p[0], 0x12); /* PackageOp */
	size_t used, len = pkg_length(p + 1, &used);
	const uint8_t *pkg_end = p + 1 + len;
	assert_true(pkg_end <= end);
	const uint8_t *q = p + 1 + used;
	uint8_t nelems = *q++;
	assert_true(nelems >= 2);
	uint64_t typ[4] = { 0 };
	for (unsigned int i = 0; i < nelems && i < 4; i++) {
		size_t n = aml_int(q, &typ[i]);
		assert_int_not_equal(n, 0);
		q += n;
	}
	assert_ptr_equal(q, pkg_end); /* the PkgLength covers exactly the elements */
	assert_int_equal(typ[0], ACPI_PM_SLP_TYP_S5);
	assert_int_equal(typ[1], ACPI_PM_SLP_TYP_S5);
	guest_mem_destroy(&mem);
}

static void test_dsdt_pvpanic(void **state)
{
	(void)state;
	struct guest_mem mem;
	struct acpi_view v;
	write_tables(&mem, 1, &v);
	const uint8_t *aml = v.dsdt + 36;
	size_t n = le32(v.dsdt + 4) - 36;

	const uint8_t hid[] = { 0x08, '_', 'H', 'I', 'D', 0x0d, 'Q', 'E', 'M', 'U', '0', '0', '0', '1', 0 };
	assert_non_null(find_bytes(aml, n, hid, sizeof(hid)));
	/* _CRS: I/O port descriptor, 16-bit decode, 0x505..0x505, alignment 1, length 1, then end tag. */
	const uint8_t io[] = { 0x47, 0x01, PORT_PVPANIC & 0xff, PORT_PVPANIC >> 8, PORT_PVPANIC & 0xff,
			       PORT_PVPANIC >> 8, 0x01, 0x01, 0x79 };
	assert_non_null(find_bytes(aml, n, io, sizeof(io)));
	const uint8_t sta[] = { 0x08, '_', 'S', 'T', 'A', 0x0a, 0x0f };
	assert_non_null(find_bytes(aml, n, sta, sizeof(sta)));
	/*
	 * The device sits in \_SB_, first; the PCI root bridge, the VM generation ID and the event
	 * device follow it, one after the other, up to the end of the table.
	 */
	const uint8_t dev[] = { 0x5b, 0x82 };
	const uint8_t *d = find_bytes(aml, n, dev, sizeof(dev));
	const char *order[] = { "PEVT", "PCI0", "VGEN", "GED0" };
	for (size_t i = 0; i < 4; i++) {
		assert_non_null(d);
		assert_true(d < aml + n);
		assert_memory_equal(d, dev, 2);
		size_t used, len = pkg_length(d + 2, &used);
		assert_memory_equal(d + 2 + used, order[i], 4);
		d += 2 + len;
	}
	assert_ptr_equal(d, aml + n);
	guest_mem_destroy(&mem);
}

static void test_dsdt_pci_root_bridge(void **state)
{
	(void)state;
	struct guest_mem mem;
	struct acpi_view v;
	write_tables(&mem, 1, &v);
	const uint8_t *aml = v.dsdt + 36;
	size_t n = le32(v.dsdt + 4) - 36;
	const uint8_t hid[] = { 0x08, '_', 'H', 'I', 'D', 0x0d, 'P', 'N', 'P', '0', 'A', '0', '3', 0 };
	assert_non_null(find_bytes(aml, n, hid, sizeof(hid)));
	/* Bus 0 only; the config ports; the BAR window from LAYOUT_PCI_MMIO_START to below the I/O APIC. */
	const uint8_t bus[] = { 0x88, 13, 0, 2, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0 };
	assert_non_null(find_bytes(aml, n, bus, sizeof(bus)));
	const uint8_t io[] = { 0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 1, 8 };
	assert_non_null(find_bytes(aml, n, io, sizeof(io)));
	const uint8_t mem32[] = { 0x87, 23, 0, 0, 0x0c, 0x01, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0xc0, 0xff, 0xff, 0xbf, 0xfe };
	assert_non_null(find_bytes(aml, n, mem32, sizeof(mem32)));
	guest_mem_destroy(&mem);
}

/* ---- MADT ---- */

static void check_madt(unsigned int ncpus)
{
	struct guest_mem mem;
	struct acpi_view v;
	write_tables(&mem, ncpus, &v);
	const uint8_t *m = v.madt, *end = m + le32(m + 4);
	assert_int_equal(le32(m + 36), 0xfee00000u);
	assert_true(le32(m + 40) & 1); /* PCAT_COMPAT */

	unsigned int lapics = 0, ioapics = 0, nmis = 0;
	int irq0_gsi = -1, sci_flags = -1;
	uint8_t seen[256] = { 0 };
	const uint8_t *p = m + 44;
	while (p < end) {
		assert_true(p[1] >= 2 && p + p[1] <= end);
		switch (p[0]) {
		case 0:
			assert_int_equal(p[1], 8);
			assert_true(le32(p + 4) & 1);
			assert_int_equal(seen[p[3]]++, 0);
			assert_true(p[3] < ncpus);
			lapics++;
			break;
		case 1:
			assert_int_equal(p[1], 12);
			assert_int_equal(p[2], ncpus);
			assert_int_equal(le32(p + 4), LAYOUT_IOAPIC);
			assert_int_equal(le32(p + 8), 0);
			ioapics++;
			break;
		case 2:
			assert_int_equal(p[1], 10);
			assert_int_equal(p[2], 0);
			if (p[3] == 0)
				irq0_gsi = (int)le32(p + 4);
			if (p[3] == ACPI_SCI_IRQ) {
				assert_int_equal(le32(p + 4), ACPI_SCI_IRQ);
				sci_flags = le16(p + 8);
			}
			break;
		case 4:
			assert_int_equal(p[1], 6);
			assert_int_equal(p[2], 0xff);
			assert_int_equal(p[5], 1);
			nmis++;
			break;
		default:
			fail_msg("unexpected MADT entry type %u", p[0]);
		}
		p += p[1];
	}
	assert_ptr_equal(p, end);
	assert_int_equal(lapics, ncpus);
	assert_int_equal(ioapics, 1);
	assert_int_equal(nmis, 1);
	assert_int_equal(irq0_gsi, 2);
	assert_int_equal(sci_flags, 0x0d); /* active high, level triggered */
	guest_mem_destroy(&mem);
}

static void test_madt_1(void **state) { (void)state; check_madt(1); }
static void test_madt_4(void **state) { (void)state; check_madt(4); }
static void test_madt_64(void **state) { (void)state; check_madt(64); }
static void test_madt_max(void **state) { (void)state; check_madt(ACPI_MAX_CPUS); }

static void test_bad_arguments(void **state)
{
	(void)state;
	struct guest_mem mem;
	uint64_t rsdp = 123;
	assert_int_equal(guest_mem_init(&mem, RAM), 0);
	assert_int_equal(acpi_write_tables(&mem, 0, &rsdp), -EINVAL);
	assert_int_equal(acpi_write_tables(&mem, ACPI_MAX_CPUS + 1, &rsdp), -EINVAL);
	assert_int_equal(rsdp, 123);
	assert_int_equal(scan_rsdp(&mem), 0);
	guest_mem_destroy(&mem);

	assert_int_equal(guest_mem_init(&mem, 512 * 1024), 0);
	assert_int_equal(acpi_write_tables(&mem, 1, &rsdp), -EFAULT);
	guest_mem_destroy(&mem);
}

/* ---- the AML writer ---- */

static void test_aml_integers(void **state)
{
	(void)state;
	uint8_t buf[64];
	struct aml a;
	const uint64_t values[] = { 0, 1, 2, 0xff, 0x100, 0xffff, 0x10000, 0xffffffff, 0x100000000ULL, ~0ULL - 1 };
	const size_t sizes[] = { 1, 1, 2, 2, 3, 3, 5, 5, 9, 9 };
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		aml_init(&a, buf, sizeof(buf));
		aml_integer(&a, values[i]);
		assert_true(aml_ok(&a));
		assert_int_equal(a.len, sizes[i]);
		uint64_t got;
		assert_int_equal(aml_int(buf, &got), sizes[i]);
		assert_int_equal(got, values[i]);
	}
}

static void test_aml_long_package(void **state)
{
	(void)state;
	/* Bodies past 63 and 4095 bytes need 2- and 3-byte PkgLengths; nested ends must stay right. */
	static uint8_t buf[8192];
	const size_t counts[] = { 10, 40, 2000 };
	for (size_t c = 0; c < 3; c++) {
		struct aml a;
		aml_init(&a, buf, sizeof(buf));
		size_t outer = aml_scope_begin(&a, "\\_SB_");
		size_t pkg = aml_package_begin(&a, 255);
		for (size_t i = 0; i < counts[c]; i++)
			aml_integer(&a, 0x1234);
		aml_end(&a, pkg);
		aml_end(&a, outer);
		assert_true(aml_ok(&a));

		assert_int_equal(buf[0], 0x10);
		size_t used, len = pkg_length(buf + 1, &used);
		assert_int_equal(1 + len, a.len);
		assert_memory_equal(buf + 1 + used, "\\_SB_", 5);
		const uint8_t *p = buf + 1 + used + 5;
		assert_int_equal(p[0], 0x12);
		size_t used2, len2 = pkg_length(p + 1, &used2);
		assert_ptr_equal(p + 1 + len2, buf + a.len);
		assert_int_equal(len2, used2 + 1 + 3 * counts[c]);
	}
}

static void test_aml_names_and_overflow(void **state)
{
	(void)state;
	uint8_t buf[16];
	struct aml a;
	aml_init(&a, buf, sizeof(buf));
	aml_name_string(&a, "\\_SB_.PEVT");
	assert_true(aml_ok(&a));
	const uint8_t dual[] = { '\\', 0x2e, '_', 'S', 'B', '_', 'P', 'E', 'V', 'T' };
	assert_int_equal(a.len, sizeof(dual));
	assert_memory_equal(buf, dual, sizeof(dual));

	const char *bad[] = { "", "_S5", "_S5__", "1ABC", "abcd", "\\_SB_PEVT", "_SB_." };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		aml_init(&a, buf, sizeof(buf));
		aml_name_string(&a, bad[i]);
		assert_false(aml_ok(&a));
	}

	aml_init(&a, buf, sizeof(buf));
	aml_string(&a, "this string is far too long");
	assert_false(aml_ok(&a));
}

/* ---- optional: the ACPICA disassembler agrees the tables are well formed ---- */

static int dump_table(const char *dir, const char *name, const uint8_t *t)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s.dat", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t len = le32(t + 4);
	int ok = fwrite(t, 1, len, f) == len;
	return fclose(f) == 0 && ok ? 0 : -1;
}

static void test_iasl_disassembles(void **state)
{
	(void)state;
	if (system("command -v iasl >/dev/null 2>&1") != 0)
		skip();
	struct guest_mem mem;
	struct acpi_view v;
	write_tables(&mem, 4, &v);
	char dir[] = "/tmp/vmon-acpi-test-XXXXXX";
	assert_non_null(mkdtemp(dir));
	const char *names[] = { "dsdt", "facp", "apic", "xsdt" };
	const uint8_t *tables[] = { v.dsdt, v.fadt, v.madt, v.xsdt };
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(dump_table(dir, names[i], tables[i]), 0);
		char cmd[1024];
		snprintf(cmd, sizeof(cmd), "cd %s && iasl -d %s.dat >%s.log 2>&1 && ! grep -qiE 'error|warning' %s.log",
			 dir, names[i], names[i], names[i]);
		assert_int_equal(system(cmd), 0);
	}
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "grep -q 'QEMU0001' %s/dsdt.dsl && grep -q '_S5' %s/dsdt.dsl && grep -q 'PNP0A03' %s/dsdt.dsl",
		 dir, dir, dir);
	assert_int_equal(system(cmd), 0);
	/*
	 * The VM generation ID as Linux's vmgenid driver finds it: the device by _HID, ADDR returning
	 * {low, high} of the buffer, and the event device whose interrupt notifies it.
	 */
	char addr[32], gsi[32], evt[32];
	snprintf(addr, sizeof(addr), "0x%08llX, *$", (unsigned long long)LAYOUT_VMGENID);
	snprintf(gsi, sizeof(gsi), "0x%08X,", LAYOUT_GED_GSI);
	snprintf(evt, sizeof(evt), "If ((Arg0 == 0x%02X))", LAYOUT_GED_GSI);
	const char *vmgenid[] = {
		"Device (VGEN)", "Name (_HID, \"VMGENCTR\")", "Name (_CID, \"VM_Gen_Counter\")",
		"Method (ADDR, 0, NotSerialized)", "Return (Package (0x02)", addr, "^ *Zero$",
		"Name (_HID, \"ACPI0013\"", "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive",
		gsi, "Method (_EVT, 1", evt, "Notify (\\\\_SB.VGEN, 0x80)",
	};
	for (size_t i = 0; i < ARRAY_SIZE(vmgenid); i++) {
		snprintf(cmd, sizeof(cmd), "grep -q '%s' %s/dsdt.dsl", vmgenid[i], dir);
		if (system(cmd) != 0)
			fail_msg("the disassembled DSDT lacks %s", vmgenid[i]);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	guest_mem_destroy(&mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fadt),
		cmocka_unit_test(test_dsdt_s5),
		cmocka_unit_test(test_dsdt_pvpanic),
		cmocka_unit_test(test_dsdt_pci_root_bridge),
		cmocka_unit_test(test_madt_1),
		cmocka_unit_test(test_madt_4),
		cmocka_unit_test(test_madt_64),
		cmocka_unit_test(test_madt_max),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_aml_integers),
		cmocka_unit_test(test_aml_long_package),
		cmocka_unit_test(test_aml_names_and_overflow),
		cmocka_unit_test(test_iasl_disassembles),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
