/*
 * ACPI tables for a PC-like platform: RSDP, XSDT, FADT (full, not hardware-reduced, so the
 * legacy PIC/PIT/i8042/RTC stay in use), FACS, DSDT (\_S0_, \_S5_, the pvpanic device, the PCI
 * root bridge, the VM generation ID and the Generic Event Device that notifies it)
 * and MADT. ISA IRQ 0 (the PIT) is declared on I/O APIC pin 2, IRQ 9 (SCI) level/active high.
 */
#ifndef VMON_ARCH_X86_ACPI_H
#define VMON_ARCH_X86_ACPI_H

#include <stdint.h>

#include "memory/guest_mem.h"

/* APIC IDs 0..ncpus-1 plus the I/O APIC (ID ncpus) must stay below the xAPIC broadcast ID. */
#define ACPI_MAX_CPUS 254

/* SCI_INT in the FADT: the ISA IRQ the PM1 event block would raise (level, active high). */
#define ACPI_SCI_IRQ 9

/*
 * Writes the RSDP at LAYOUT_ACPI_RSDP and the other tables from LAYOUT_ACPI_TABLES, all below
 * LAYOUT_ACPI_END, and stores the RSDP's guest-physical address in *rsdp_gpa (for
 * boot_params.acpi_rsdp_addr). Returns 0, -EINVAL for ncpus 0 or above ACPI_MAX_CPUS,
 * -ENOSPC if the tables do not fit, -EFAULT when that area is not guest RAM, or -ENOMEM.
 */
int acpi_write_tables(struct guest_mem *mem, unsigned int ncpus, uint64_t *rsdp_gpa);

#endif
