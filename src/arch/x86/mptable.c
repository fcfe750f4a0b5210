#include "arch/x86/mptable.h"

#include <errno.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "lib/log.h"

#define COMP "mptable"

/* Sizes and codes from the MP specification 1.4, chapter 4. */
#define MPF_LEN          16
#define MPC_HEADER_LEN   44
#define MPC_CPU_LEN      20
#define MPC_ENTRY_LEN     8 /* bus, I/O APIC, I/O interrupt and local interrupt entries */

#define MP_SPEC_REV_1_4   4

enum { MPC_PROCESSOR = 0, MPC_BUS = 1, MPC_IOAPIC = 2, MPC_IOINTSRC = 3, MPC_LINTSRC = 4 };
enum { MP_INT = 0, MP_NMI = 1, MP_SMI = 2, MP_EXTINT = 3 };

#define CPU_ENABLED      0x01
#define CPU_BOOTPROCESSOR 0x02
#define IOAPIC_ENABLED   0x01
#define LAPIC_VERSION    0x14 /* integrated local APIC, as KVM's reports */
#define IOAPIC_VERSION   0x11
/* Family 6 and the FPU and APIC feature bits: only printed by kernels, but must look real. */
#define CPU_SIGNATURE    0x00000600
#define CPU_FEATURES     ((1u << 0) | (1u << 9))

#define PCI_BUS_ID 0
#define ISA_BUS_ID 1
#define ISA_IRQS 16
#define LAPIC_ALL 0xff

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

static uint8_t checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + p[i]);
	return (uint8_t)(0 - sum);
}

/*
 * ISA IRQ 2 is the PIC cascade: nothing is routed from it, and IRQ 0 takes its pin, so there
 * are 15 I/O interrupt entries. Add 2 buses, the I/O APIC and LINT0/LINT1.
 */
#define FIXED_ENTRIES (2 + 1 + (ISA_IRQS - 1) + 2)
#define TABLE_SIZE(ncpus) (MPF_LEN + MPC_HEADER_LEN + (size_t)(ncpus)*MPC_CPU_LEN + MPC_ENTRY_LEN * FIXED_ENTRIES)

_Static_assert(TABLE_SIZE(MPTABLE_MAX_CPUS) <= LAYOUT_EBDA_END - LAYOUT_MPTABLE, "MPTABLE_MAX_CPUS does not fit");
_Static_assert(TABLE_SIZE(MPTABLE_MAX_CPUS + 1) > LAYOUT_EBDA_END - LAYOUT_MPTABLE, "MPTABLE_MAX_CPUS is too small");

static uint8_t *put_intsrc(uint8_t *p, uint8_t type, uint8_t irqtype, uint8_t bus, uint8_t bus_irq,
			   uint8_t dst_id, uint8_t dst_pin)
{
	p[0] = type;
	p[1] = irqtype;
	put16(p + 2, 0); /* polarity and trigger conform to the bus: ISA is edge, active high */
	p[4] = bus;
	p[5] = bus_irq;
	p[6] = dst_id;
	p[7] = dst_pin;
	return p + MPC_ENTRY_LEN;
}

int mptable_write(struct guest_mem *mem, unsigned int ncpus)
{
	if (ncpus == 0)
		return -EINVAL;
	if (ncpus > MPTABLE_MAX_CPUS)
		return -ENOSPC;

	uint8_t buf[LAYOUT_EBDA_END - LAYOUT_MPTABLE];
	memset(buf, 0, sizeof(buf));
	uint8_t *mpf = buf, *mpc = buf + MPF_LEN;
	const uint8_t ioapic_id = (uint8_t)ncpus;

	uint8_t *p = mpc + MPC_HEADER_LEN;
	unsigned int entries = 0;
	for (unsigned int i = 0; i < ncpus; i++, entries++) {
		p[0] = MPC_PROCESSOR;
		p[1] = (uint8_t)i; /* local APIC id: vCPU index, as KVM assigns */
		p[2] = LAPIC_VERSION;
		p[3] = CPU_ENABLED | (i == 0 ? CPU_BOOTPROCESSOR : 0);
		put32(p + 4, CPU_SIGNATURE);
		put32(p + 8, CPU_FEATURES);
		p += MPC_CPU_LEN;
	}

	p[0] = MPC_BUS;
	p[1] = PCI_BUS_ID;
	memcpy(p + 2, "PCI   ", 6);
	p += MPC_ENTRY_LEN;
	p[0] = MPC_BUS;
	p[1] = ISA_BUS_ID;
	memcpy(p + 2, "ISA   ", 6);
	p += MPC_ENTRY_LEN;
	entries += 2;

	p[0] = MPC_IOAPIC;
	p[1] = ioapic_id;
	p[2] = IOAPIC_VERSION;
	p[3] = IOAPIC_ENABLED;
	put32(p + 4, (uint32_t)LAYOUT_IOAPIC);
	p += MPC_ENTRY_LEN;
	entries++;

	for (unsigned int irq = 0; irq < ISA_IRQS; irq++) {
		if (irq == 2)
			continue;
		/* The PIT's IRQ 0 is wired to pin 2, as on PC chipsets and in the ACPI MADT override. */
		uint8_t pin = irq == 0 ? 2 : (uint8_t)irq;
		p = put_intsrc(p, MPC_IOINTSRC, MP_INT, ISA_BUS_ID, (uint8_t)irq, ioapic_id, pin);
		entries++;
	}

	/* Virtual-wire mode: the 8259 PIC drives LINT0 of every CPU, NMIs come in on LINT1. */
	p = put_intsrc(p, MPC_LINTSRC, MP_EXTINT, ISA_BUS_ID, 0, LAPIC_ALL, 0);
	p = put_intsrc(p, MPC_LINTSRC, MP_NMI, ISA_BUS_ID, 0, LAPIC_ALL, 1);
	entries += 2;

	const size_t mpc_len = (size_t)(p - mpc);
	memcpy(mpc, "PCMP", 4);
	put16(mpc + 4, (uint16_t)mpc_len);
	mpc[6] = MP_SPEC_REV_1_4;
	memcpy(mpc + 8, "VMON    ", 8);
	memcpy(mpc + 16, "VMON PC     ", 12);
	put16(mpc + 34, (uint16_t)entries);
	put32(mpc + 36, (uint32_t)LAYOUT_LAPIC);
	mpc[7] = checksum(mpc, mpc_len);

	memcpy(mpf, "_MP_", 4);
	put32(mpf + 4, (uint32_t)(LAYOUT_MPTABLE + MPF_LEN));
	mpf[8] = 1; /* length in 16-byte units */
	mpf[9] = MP_SPEC_REV_1_4;
	/* feature byte 1 = 0: a configuration table is present, no default configuration */
	mpf[10] = checksum(mpf, MPF_LEN);

	int rc = guest_mem_write(mem, LAYOUT_MPTABLE, buf, sizeof(buf));
	if (rc < 0)
		log_error(COMP, "cannot write the MP table at 0x%llx: guest RAM does not cover it; give the VM more memory",
			  (unsigned long long)LAYOUT_MPTABLE);
	return rc;
}
