/*
 * The CPU state of the Linux x86 64-bit boot protocol: flat segments from a boot GDT, paging on
 * with an identity map of the first 4 GiB, RSI pointing at boot_params. Freestanding test guests
 * are entered the same way.
 */
#ifndef VMON_ARCH_X86_LONG_MODE_H
#define VMON_ARCH_X86_LONG_MODE_H

#include <stdint.h>

#include "memory/guest_mem.h"

/* Selectors of the boot GDT, as the boot protocol names them. */
#define BOOT_CS 0x10
#define BOOT_DS 0x18
#define BOOT_GDT_ENTRIES 4

/* Descriptors of the boot GDT (index = selector >> 3). */
#define GDT_ENTRY_CODE64 0x00af9b000000ffffULL /* present, DPL0, execute/read, accessed, L, G */
#define GDT_ENTRY_DATA   0x00cf93000000ffffULL /* present, DPL0, read/write, accessed, D/B, G */

#define CR0_PE (1ULL << 0)
#define CR0_MP (1ULL << 1)
#define CR0_ET (1ULL << 4)
#define CR0_NE (1ULL << 5)
#define CR0_PG (1ULL << 31)
#define CR4_PAE (1ULL << 5)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)

#define PTE_PRESENT (1ULL << 0)
#define PTE_WRITE   (1ULL << 1)
#define PTE_LARGE   (1ULL << 7)

/*
 * Writes the boot GDT (LAYOUT_GDT), an empty IDT (LAYOUT_IDT) and identity page tables for
 * [0, 4 GiB) with 2 MiB pages (LAYOUT_PML4/PDPT/PD). Returns 0 or -EFAULT when guest RAM does
 * not cover those pages.
 */
int long_mode_write_tables(struct guest_mem *mem);

/*
 * Puts the bootstrap vCPU in 64-bit mode at entry with RSI = boot_params_gpa: segment, control
 * and descriptor-table registers, general registers, FPU. Returns 0 or a negative errno.
 */
int long_mode_setup_bsp(int vcpu_fd, uint64_t entry, uint64_t boot_params_gpa);

#endif
