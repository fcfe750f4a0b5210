#include "arch/x86/acpi.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/acpi_aml.h"
#include "arch/x86/layout.h"
#include "devices/acpi_pm.h"
#include "devices/pvpanic.h"
#include "lib/log.h"
#include "lib/util.h"

#define COMP "acpi"

#define OEM_ID        "VMON  "   /* 6 characters */
#define OEM_TABLE_ID  "VMONPC  " /* 8 characters */
#define OEM_REVISION  1
#define CREATOR_ID    "VMON"
#define CREATOR_REVISION 1

/* Sizes and revisions of the ACPI 6.0 structures written here. */
#define HEADER_LEN    36
#define RSDP_LEN      36
#define RSDP_V1_LEN   20
#define FADT_LEN      276
#define FADT_REVISION 6
#define FACS_LEN      64
#define FACS_VERSION  2
#define MADT_REVISION 4
#define DSDT_REVISION 2 /* 64-bit AML integers */
#define XSDT_ENTRIES  2 /* FADT, MADT */

/* FADT field offsets (ACPI 6.0 table 5-33). */
enum {
	FADT_FIRMWARE_CTRL = 36, FADT_DSDT = 40, FADT_SCI_INT = 46, FADT_SMI_CMD = 48,
	FADT_PM1A_EVT_BLK = 56, FADT_PM1A_CNT_BLK = 64, FADT_PM1_EVT_LEN = 88, FADT_PM1_CNT_LEN = 89,
	FADT_P_LVL2_LAT = 96, FADT_P_LVL3_LAT = 98, FADT_IAPC_BOOT_ARCH = 109, FADT_FLAGS = 112,
	FADT_RESET_REG = 116, FADT_RESET_VALUE = 128, FADT_MINOR_VERSION = 131,
	FADT_X_FIRMWARE_CTRL = 132, FADT_X_DSDT = 140, FADT_X_PM1A_EVT_BLK = 148,
	FADT_X_PM1A_CNT_BLK = 172,
};

#define FADT_F_WBINVD        (1u << 0)
#define FADT_F_PROC_C1       (1u << 2)
#define FADT_F_PWR_BUTTON    (1u << 4)  /* set: no fixed-feature power button */
#define FADT_F_SLP_BUTTON    (1u << 5)  /* set: no fixed-feature sleep button */
#define FADT_F_FIX_RTC       (1u << 6)  /* set: no RTC wake status in PM1 */
#define FADT_F_RESET_REG_SUP (1u << 10)

#define BOOT_ARCH_LEGACY_DEVICES (1u << 0)
#define BOOT_ARCH_8042           (1u << 1)

/* Latencies above these limits tell the OS that C2 and C3 are not supported. */
#define P_LVL2_LAT_NONE 101
#define P_LVL3_LAT_NONE 1001

#define GAS_SYSTEM_IO    1
#define GAS_ACCESS_BYTE  1
#define GAS_ACCESS_WORD  2

/* MADT structure types and flags (ACPI 6.0 section 5.2.12). */
enum { MADT_LAPIC = 0, MADT_IOAPIC = 1, MADT_INT_OVERRIDE = 2, MADT_LAPIC_NMI = 4 };
#define MADT_PCAT_COMPAT  (1u << 0)
#define MADT_LAPIC_ENABLED (1u << 0)
#define MADT_LAPIC_LEN    8
#define MADT_IOAPIC_LEN   12
#define MADT_OVERRIDE_LEN 10
#define MADT_NMI_LEN      6
/* MPS INTI flags: polarity bits 1:0, trigger mode bits 3:2. */
#define INTI_CONFORMS       0x0
#define INTI_ACTIVE_HIGH    0x1
#define INTI_LEVEL          (0x3 << 2)
#define ACPI_ALL_PROCESSORS 0xff

#define ISA_BUS 0
#define ISA_IRQ_PIT 0
#define GSI_PIT 2

/* IO port descriptor (ACPI 6.0 section 6.4.2.5) and end tag: the pvpanic device's _CRS. */
#define RES_IO_PORT_TAG  0x47
#define RES_IO_DECODE16  0x01
#define RES_END_TAG      0x79
/* Extended interrupt descriptor (ACPI 6.0 section 6.4.3.6), for the event device's _CRS. */
#define RES_EXT_IRQ_TAG  0x89
#define RES_IRQ_CONSUMER (1u << 0)
#define RES_IRQ_EDGE     (1u << 1)
#define ACPI_NOTIFY_CHANGED 0x80 /* the first device-specific Notify value */
/* Large address-space descriptors, for the PCI root bridge's _CRS. */
#define RES_DWORD_ADDRESS_TAG 0x87
#define RES_WORD_ADDRESS_TAG  0x88
#define RES_ADDRESS_MEMORY    0
#define RES_ADDRESS_BUS       2
#define RES_ADDRESS_MIN_MAX_FIXED 0x0c /* _MIF and _MAF: the window is exactly this range */
#define RES_MEMORY_READ_WRITE 0x01

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint8_t checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + p[i]);
	return (uint8_t)(0 - sum);
}

/* Builds the tables in a host image of [LAYOUT_ACPI_RSDP, LAYOUT_ACPI_END). */
struct image {
	uint8_t *buf;
	size_t cap;
	size_t used;
};

static uint64_t gpa_of(size_t off) { return LAYOUT_ACPI_RSDP + off; }

/* Reserves len bytes at the given alignment; returns the offset or 0 (never valid: the RSDP is there). */
static size_t image_alloc(struct image *im, size_t len, size_t align)
{
	size_t off = ALIGN_UP(im->used, align);
	if (off > im->cap || len > im->cap - off)
		return 0;
	im->used = off + len;
	return off;
}

static void put_header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	put32(t + 4, len);
	t[8] = rev;
	memcpy(t + 10, OEM_ID, 6);
	memcpy(t + 16, OEM_TABLE_ID, 8);
	put32(t + 24, OEM_REVISION);
	memcpy(t + 28, CREATOR_ID, 4);
	put32(t + 32, CREATOR_REVISION);
}

static void seal_table(uint8_t *t)
{
	uint32_t len = (uint32_t)(t[4] | t[5] << 8 | t[6] << 16 | (uint32_t)t[7] << 24);
	t[9] = 0;
	t[9] = checksum(t, len);
}

static void put_gas(uint8_t *p, uint8_t bit_width, uint8_t access, uint64_t port)
{
	p[0] = GAS_SYSTEM_IO;
	p[1] = bit_width;
	p[2] = 0; /* bit offset */
	p[3] = access;
	put64(p + 4, port);
}

static size_t write_fadt(struct image *im, size_t facs, size_t dsdt)
{
	size_t off = image_alloc(im, FADT_LEN, 8);
	if (!off)
		return 0;
	uint8_t *t = im->buf + off;
	put_header(t, "FACP", FADT_LEN, FADT_REVISION);
	put32(t + FADT_FIRMWARE_CTRL, (uint32_t)gpa_of(facs));
	put32(t + FADT_DSDT, (uint32_t)gpa_of(dsdt));
	put16(t + FADT_SCI_INT, ACPI_SCI_IRQ);
	put32(t + FADT_SMI_CMD, 0); /* no SMM: the platform is always in ACPI mode */
	put32(t + FADT_PM1A_EVT_BLK, PORT_ACPI_PM_BASE + ACPI_PM1_STS_OFF);
	put32(t + FADT_PM1A_CNT_BLK, PORT_ACPI_PM_BASE + ACPI_PM1_CNT_OFF);
	t[FADT_PM1_EVT_LEN] = ACPI_PM1_EVT_LEN;
	t[FADT_PM1_CNT_LEN] = ACPI_PM1_CNT_LEN;
	/* No PM timer (optional since ACPI 5.0A): kernels use the TSC, HPET-less PIT or kvmclock. */
	put16(t + FADT_P_LVL2_LAT, P_LVL2_LAT_NONE);
	put16(t + FADT_P_LVL3_LAT, P_LVL3_LAT_NONE);
	/* Legacy devices present, i8042 included: otherwise Linux skips probing the keyboard controller. */
	put16(t + FADT_IAPC_BOOT_ARCH, BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_8042);
	put32(t + FADT_FLAGS, FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_PWR_BUTTON | FADT_F_SLP_BUTTON |
				      FADT_F_FIX_RTC | FADT_F_RESET_REG_SUP);
	put_gas(t + FADT_RESET_REG, 8, GAS_ACCESS_BYTE, PORT_ACPI_PM_BASE + ACPI_PM_RESET_OFF);
	t[FADT_RESET_VALUE] = ACPI_PM_RESET_VALUE;
	t[FADT_MINOR_VERSION] = 0;
	put64(t + FADT_X_FIRMWARE_CTRL, gpa_of(facs));
	put64(t + FADT_X_DSDT, gpa_of(dsdt));
	put_gas(t + FADT_X_PM1A_EVT_BLK, ACPI_PM1_EVT_LEN * 8, GAS_ACCESS_WORD, PORT_ACPI_PM_BASE + ACPI_PM1_STS_OFF);
	put_gas(t + FADT_X_PM1A_CNT_BLK, ACPI_PM1_CNT_LEN * 8, GAS_ACCESS_WORD, PORT_ACPI_PM_BASE + ACPI_PM1_CNT_OFF);
	seal_table(t);
	return off;
}

static size_t write_facs(struct image *im)
{
	/* The FACS has no checksum and must be 64-byte aligned. */
	size_t off = image_alloc(im, FACS_LEN, 64);
	if (!off)
		return 0;
	uint8_t *t = im->buf + off;
	memcpy(t, "FACS", 4);
	put32(t + 4, FACS_LEN);
	t[32] = FACS_VERSION;
	return off;
}

/* Name(\_Sx_, Package {SLP_TYPa, SLP_TYPb, reserved, reserved}) */
static void sleep_state(struct aml *a, const char *name, unsigned int slp_typ)
{
	aml_name(a, name);
	size_t pkg = aml_package_begin(a, 4);
	aml_integer(a, slp_typ);
	aml_integer(a, slp_typ);
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_end(a, pkg);
}

/*
 * PCI bus 0's root bridge. With ACPI, Linux enumerates PCI only below root bridges the DSDT
 * declares; this one decodes bus 0, the configuration ports 0xCF8-0xCFF and the MMIO window
 * vmon allocates BARs from (src/bus/pci.c). No _PRT: devices use MSI-X, not INTx.
 */
static void pci_root_bridge(struct aml *a)
{
	size_t dev = aml_device_begin(a, "PCI0");
	aml_name(a, "_HID");
	aml_string(a, "PNP0A03");
	aml_name(a, "_UID");
	aml_integer(a, 0);
	aml_name(a, "_SEG");
	aml_integer(a, 0);
	aml_name(a, "_BBN");
	aml_integer(a, 0);
	const uint32_t win_min = (uint32_t)LAYOUT_PCI_MMIO_START, win_max = (uint32_t)(LAYOUT_IOAPIC - 1);
	uint8_t crs[16 + 8 + 26 + 2];
	uint8_t *p = crs;
	/* Word Address Space Descriptor: bus numbers 0..0 (ACPI 6.0 6.4.3.5.3). */
	p[0] = RES_WORD_ADDRESS_TAG;
	put16(p + 1, 13);
	p[3] = RES_ADDRESS_BUS;
	p[4] = RES_ADDRESS_MIN_MAX_FIXED;
	p[5] = 0;
	put16(p + 6, 0);  /* granularity */
	put16(p + 8, 0);  /* minimum */
	put16(p + 10, 0); /* maximum */
	put16(p + 12, 0); /* translation */
	put16(p + 14, 1); /* length */
	p += 16;
	/* The configuration mechanism #1 ports, consumed by the bridge itself. */
	p[0] = RES_IO_PORT_TAG;
	p[1] = RES_IO_DECODE16;
	put16(p + 2, 0xcf8);
	put16(p + 4, 0xcf8);
	p[6] = 1;
	p[7] = 8;
	p += 8;
	/* DWord Address Space Descriptor: the 32-bit MMIO window for BARs (ACPI 6.0 6.4.3.5.2). */
	p[0] = RES_DWORD_ADDRESS_TAG;
	put16(p + 1, 23);
	p[3] = RES_ADDRESS_MEMORY;
	p[4] = RES_ADDRESS_MIN_MAX_FIXED;
	p[5] = RES_MEMORY_READ_WRITE; /* non-cacheable */
	put32(p + 6, 0);        /* granularity */
	put32(p + 10, win_min);
	put32(p + 14, win_max);
	put32(p + 18, 0);       /* translation */
	put32(p + 22, win_max - win_min + 1);
	p += 26;
	p[0] = RES_END_TAG;
	p[1] = 0;
	aml_name(a, "_CRS");
	aml_buffer(a, crs, sizeof(crs));
	aml_end(a, dev);
}

/*
 * The VM generation ID (devices/vmgenid.h): the device Linux's vmgenid driver binds to (by _HID;
 * _CID is the name the specification gives it), with the buffer's address in ADDR as a package
 * of its low and high 32 bits.
 */
static void vmgenid_device(struct aml *a)
{
	size_t dev = aml_device_begin(a, "VGEN");
	aml_name(a, "_HID");
	aml_string(a, "VMGENCTR");
	aml_name(a, "_CID");
	aml_string(a, "VM_Gen_Counter");
	aml_name(a, "_DDN");
	aml_string(a, "VM_Gen_Counter");
	size_t m = aml_method_begin(a, "ADDR", 0);
	aml_return(a);
	size_t pkg = aml_package_begin(a, 2);
	aml_integer(a, LAYOUT_VMGENID & 0xffffffffu);
	aml_integer(a, LAYOUT_VMGENID >> 32);
	aml_end(a, pkg);
	aml_end(a, m);
	aml_end(a, dev);
}

/*
 * A Generic Event Device: its interrupt runs _EVT with the interrupt's number, which tells the
 * generation ID device that the ID changed (Notify 0x80, what the vmgenid driver waits for).
 */
static void event_device(struct aml *a)
{
	size_t dev = aml_device_begin(a, "GED0");
	aml_name(a, "_HID");
	aml_string(a, "ACPI0013");
	aml_name(a, "_UID");
	aml_integer(a, 0);
	uint8_t crs[9 + 2];
	crs[0] = RES_EXT_IRQ_TAG;
	put16(crs + 1, 6);
	crs[3] = RES_IRQ_CONSUMER | RES_IRQ_EDGE; /* active high, exclusive */
	crs[4] = 1;                               /* one interrupt */
	put32(crs + 5, LAYOUT_GED_GSI);
	crs[9] = RES_END_TAG;
	crs[10] = 0;
	aml_name(a, "_CRS");
	aml_buffer(a, crs, sizeof(crs));
	size_t m = aml_method_begin(a, "_EVT", 1);
	size_t cond = aml_if_begin(a);
	aml_lequal(a);
	aml_arg(a, 0);
	aml_integer(a, LAYOUT_GED_GSI);
	aml_notify(a, "\\_SB_.VGEN", ACPI_NOTIFY_CHANGED);
	aml_end(a, cond);
	aml_end(a, m);
	aml_end(a, dev);
}

static void dsdt_body(struct aml *a)
{
	/* S0 (working) is what the OS writes back when it leaves a sleep state; acpi_pm ignores it. */
	sleep_state(a, "\\_S0_", 0);
	/* Soft-off: acpi_pm powers the VM off on this SLP_TYP. */
	sleep_state(a, "\\_S5_", ACPI_PM_SLP_TYP_S5);

	size_t sb = aml_scope_begin(a, "\\_SB_");
	size_t dev = aml_device_begin(a, "PEVT");
	aml_name(a, "_HID");
	aml_string(a, "QEMU0001"); /* the ID Linux's pvpanic driver binds to */
	const uint8_t crs[] = {
		RES_IO_PORT_TAG, RES_IO_DECODE16,
		PORT_PVPANIC & 0xff, PORT_PVPANIC >> 8, /* minimum base */
		PORT_PVPANIC & 0xff, PORT_PVPANIC >> 8, /* maximum base */
		1,                                      /* alignment */
		PVPANIC_PORT_LEN,                       /* length */
		RES_END_TAG, 0,                         /* checksum 0: treated as valid */
	};
	aml_name(a, "_CRS");
	aml_buffer(a, crs, sizeof(crs));
	aml_name(a, "_STA");
	aml_integer(a, 0x0f); /* present, enabled, shown in UI, functioning */
	aml_end(a, dev);
	pci_root_bridge(a);
	vmgenid_device(a);
	event_device(a);
	aml_end(a, sb);
}

static size_t write_dsdt(struct image *im)
{
	size_t off = image_alloc(im, HEADER_LEN, 8);
	if (!off)
		return 0;
	struct aml a;
	aml_init(&a, im->buf + im->used, im->cap - im->used);
	dsdt_body(&a);
	if (!aml_ok(&a))
		return 0;
	im->used += a.len;
	uint8_t *t = im->buf + off;
	put_header(t, "DSDT", (uint32_t)(HEADER_LEN + a.len), DSDT_REVISION);
	seal_table(t);
	return off;
}

static uint8_t *put_override(uint8_t *p, uint8_t irq, uint32_t gsi, uint16_t flags)
{
	p[0] = MADT_INT_OVERRIDE;
	p[1] = MADT_OVERRIDE_LEN;
	p[2] = ISA_BUS;
	p[3] = irq;
	put32(p + 4, gsi);
	put16(p + 8, flags);
	return p + MADT_OVERRIDE_LEN;
}

static size_t write_madt(struct image *im, unsigned int ncpus)
{
	size_t len = HEADER_LEN + 8 + (size_t)ncpus * MADT_LAPIC_LEN + MADT_IOAPIC_LEN + 2 * MADT_OVERRIDE_LEN +
		     MADT_NMI_LEN;
	size_t off = image_alloc(im, len, 8);
	if (!off)
		return 0;
	uint8_t *t = im->buf + off;
	put_header(t, "APIC", (uint32_t)len, MADT_REVISION);
	put32(t + 36, (uint32_t)LAYOUT_LAPIC);
	put32(t + 40, MADT_PCAT_COMPAT); /* there are 8259 PICs to mask */

	uint8_t *p = t + 44;
	for (unsigned int i = 0; i < ncpus; i++) {
		p[0] = MADT_LAPIC;
		p[1] = MADT_LAPIC_LEN;
		p[2] = (uint8_t)i; /* ACPI processor UID */
		p[3] = (uint8_t)i; /* APIC ID: KVM numbers vCPUs' APICs by index */
		put32(p + 4, MADT_LAPIC_ENABLED);
		p += MADT_LAPIC_LEN;
	}

	p[0] = MADT_IOAPIC;
	p[1] = MADT_IOAPIC_LEN;
	p[2] = (uint8_t)ncpus; /* the first ID after the CPUs' */
	p[3] = 0;
	put32(p + 4, (uint32_t)LAYOUT_IOAPIC);
	put32(p + 8, 0); /* GSI base */
	p += MADT_IOAPIC_LEN;

	/* As on PC chipsets, the PIT's IRQ 0 is wired to I/O APIC pin 2 (pin 0 belongs to the 8259). */
	p = put_override(p, ISA_IRQ_PIT, GSI_PIT, INTI_CONFORMS);
	/* The SCI is a shared, level-triggered, active-high line, unlike ISA's default. */
	p = put_override(p, ACPI_SCI_IRQ, ACPI_SCI_IRQ, INTI_ACTIVE_HIGH | INTI_LEVEL);

	p[0] = MADT_LAPIC_NMI;
	p[1] = MADT_NMI_LEN;
	p[2] = ACPI_ALL_PROCESSORS;
	put16(p + 3, INTI_CONFORMS);
	p[5] = 1; /* LINT1 */

	seal_table(t);
	return off;
}

static size_t write_xsdt(struct image *im, const size_t *tables, size_t n)
{
	size_t len = HEADER_LEN + 8 * n;
	size_t off = image_alloc(im, len, 8);
	if (!off)
		return 0;
	uint8_t *t = im->buf + off;
	put_header(t, "XSDT", (uint32_t)len, 1);
	for (size_t i = 0; i < n; i++)
		put64(t + HEADER_LEN + 8 * i, gpa_of(tables[i]));
	seal_table(t);
	return off;
}

static void write_rsdp(struct image *im, size_t xsdt)
{
	uint8_t *r = im->buf; /* offset 0 is LAYOUT_ACPI_RSDP */
	memcpy(r, "RSD PTR ", 8);
	memcpy(r + 9, OEM_ID, 6);
	r[15] = 2; /* ACPI 2.0+ RSDP: the XSDT is used, the RSDT address may be 0 */
	put32(r + 16, 0);
	put32(r + 20, RSDP_LEN);
	put64(r + 24, gpa_of(xsdt));
	r[8] = checksum(r, RSDP_V1_LEN);
	r[32] = checksum(r, RSDP_LEN);
}

/* Lays the tables out; returns 0 or -ENOSPC. The XSDT comes last so it can list the others. */
static int build(struct image *im, unsigned int ncpus)
{
	im->used = LAYOUT_ACPI_TABLES - LAYOUT_ACPI_RSDP;
	size_t facs = write_facs(im);
	size_t dsdt = write_dsdt(im);
	size_t fadt = facs && dsdt ? write_fadt(im, facs, dsdt) : 0;
	size_t madt = fadt ? write_madt(im, ncpus) : 0;
	if (!madt)
		return -ENOSPC;
	const size_t listed[XSDT_ENTRIES] = { fadt, madt };
	size_t xsdt = write_xsdt(im, listed, XSDT_ENTRIES);
	if (!xsdt)
		return -ENOSPC;
	write_rsdp(im, xsdt);
	return 0;
}

_Static_assert(LAYOUT_ACPI_TABLES - LAYOUT_ACPI_RSDP >= RSDP_LEN, "the RSDP overlaps the tables");
_Static_assert(LAYOUT_ACPI_RSDP % 16 == 0, "the RSDP must be 16-byte aligned to be found");

int acpi_write_tables(struct guest_mem *mem, unsigned int ncpus, uint64_t *rsdp_gpa)
{
	if (ncpus == 0 || ncpus > ACPI_MAX_CPUS)
		return -EINVAL;
	struct image im = { .cap = LAYOUT_ACPI_END - LAYOUT_ACPI_RSDP };
	im.buf = calloc(1, im.cap);
	if (!im.buf)
		return -ENOMEM;
	int rc = build(&im, ncpus);
	if (rc < 0) {
		log_error(COMP, "the ACPI tables for %u vCPUs do not fit below 0x%llx", ncpus,
			  (unsigned long long)LAYOUT_ACPI_END);
	} else {
		rc = guest_mem_write(mem, LAYOUT_ACPI_RSDP, im.buf, im.used);
		if (rc < 0)
			log_error(COMP, "cannot write the ACPI tables at 0x%llx: guest RAM does not cover it; give the VM more memory",
				  (unsigned long long)LAYOUT_ACPI_RSDP);
	}
	free(im.buf);
	if (rc == 0 && rsdp_gpa)
		*rsdp_gpa = LAYOUT_ACPI_RSDP;
	return rc;
}
