/*
 * The Linux "zero page" (struct boot_params) and the kernel command line: what the 64-bit boot
 * protocol hands the kernel in RSI, including the e820 memory map.
 */
#ifndef VMON_ARCH_X86_BOOT_PARAMS_H
#define VMON_ARCH_X86_BOOT_PARAMS_H

#include <asm/bootparam.h>
#include <stddef.h>
#include <stdint.h>

#include "boot/kernel.h"
#include "memory/guest_mem.h"

#define E820_TYPE_RAM      1
#define E820_TYPE_RESERVED 2

/* Start of the EBDA: below it is conventional RAM, from it to 1 MiB the BIOS area. */
#define E820_LOW_RAM_END 0x9fc00ULL

/* Linux's COMMAND_LINE_SIZE on x86 (incl. the NUL), assumed when the kernel has no header. */
#define BOOT_CMDLINE_SIZE_DEFAULT 2048

#define BOOT_HDR_MAGIC 0x53726448u /* "HdrS" */
#define BOOT_FLAG_MAGIC 0xaa55
#define BOOT_PROTOCOL_BUILT 0x020f /* 2.15, the version vmon claims when it builds the header */
#define BOOT_LOADER_TYPE_UNDEFINED 0xff
#define BOOT_HEAP_END_PTR 0xfe00

/*
 * Writes boot_params at LAYOUT_BOOT_PARAMS and cmdline at LAYOUT_CMDLINE. k supplies the
 * bzImage setup header when it has one; initrd_size 0 means no initrd; acpi_rsdp_gpa 0 means
 * the kernel finds the RSDP by scanning. On failure writes one sentence to err and returns a
 * negative errno (-E2BIG for a command line longer than the kernel accepts).
 */
int boot_params_write(struct guest_mem *mem, const struct kernel_image *k, const char *cmdline,
		      uint64_t initrd_gpa, uint64_t initrd_size, uint64_t acpi_rsdp_gpa, char *err, size_t errlen);

/*
 * The e820 map of mem: low RAM, the reserved EBDA/BIOS area, RAM from 1 MiB to the MMIO hole,
 * RAM above 4 GiB. Returns the number of entries or -ENOSPC when max is too small.
 */
int e820_build(const struct guest_mem *mem, struct boot_e820_entry *out, int max);

#endif
