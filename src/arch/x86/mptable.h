/*
 * Intel MultiProcessor Specification 1.4 tables: how a kernel booted without ACPI (or with
 * acpi=off) finds its CPUs, the I/O APIC and the routing of the legacy ISA interrupts.
 */
#ifndef VMON_ARCH_X86_MPTABLE_H
#define VMON_ARCH_X86_MPTABLE_H

#include "memory/guest_mem.h"

/* The tables must fit in the EBDA's single KiB; each vCPU takes 20 bytes of it. */
#define MPTABLE_MAX_CPUS 40

/*
 * Writes the floating pointer at LAYOUT_MPTABLE and the configuration table right after it.
 * Returns 0, -EINVAL for ncpus 0, -ENOSPC when ncpus vCPUs do not fit below LAYOUT_EBDA_END
 * (the ACPI MADT has no such limit), or -EFAULT when the EBDA is not guest RAM.
 */
int mptable_write(struct guest_mem *mem, unsigned int ncpus);

#endif
