#include "arch/x86/boot_params.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "lib/util.h"

/* The boot protocol fixes these offsets; check the system header agrees. */
_Static_assert(sizeof(struct boot_params) == 4096, "boot_params is one page");
_Static_assert(offsetof(struct boot_params, acpi_rsdp_addr) == 0x070, "acpi_rsdp_addr");
_Static_assert(offsetof(struct boot_params, ext_ramdisk_image) == 0x0c0, "ext_ramdisk_image");
_Static_assert(offsetof(struct boot_params, ext_ramdisk_size) == 0x0c4, "ext_ramdisk_size");
_Static_assert(offsetof(struct boot_params, ext_cmd_line_ptr) == 0x0c8, "ext_cmd_line_ptr");
_Static_assert(offsetof(struct boot_params, e820_entries) == 0x1e8, "e820_entries");
_Static_assert(offsetof(struct boot_params, hdr) == SETUP_HEADER_OFFSET, "setup header");
_Static_assert(offsetof(struct boot_params, e820_table) == 0x2d0, "e820_table");
_Static_assert(offsetof(struct boot_params, hdr.cmd_line_ptr) == 0x228, "cmd_line_ptr");
_Static_assert(offsetof(struct boot_params, hdr.cmdline_size) == 0x238, "cmdline_size");
_Static_assert(sizeof(struct boot_e820_entry) == 20, "e820 entry");

/* The VM generation ID's buffer sits in the BIOS area the map below marks reserved: never guest RAM. */
_Static_assert(LAYOUT_VMGENID >= E820_LOW_RAM_END && LAYOUT_VMGENID + 16 <= LAYOUT_HIMEM, "vmgenid buffer reserved");

/* Header bytes 0x200-0x201 are a short jump over the header; its target ends the header. */
#define SETUP_JUMP_OFFSET 0x201
#define SETUP_HEADER_FIXED_END 0x202

static int e820_add(struct boot_e820_entry *out, int max, int *n, uint64_t addr, uint64_t end, uint32_t type)
{
	if (end <= addr)
		return 0;
	if (*n >= max)
		return -ENOSPC;
	out[*n] = (struct boot_e820_entry){ .addr = addr, .size = end - addr, .type = type };
	(*n)++;
	return 0;
}

int e820_build(const struct guest_mem *mem, struct boot_e820_entry *out, int max)
{
	if (mem->nregions < 1)
		return -EINVAL;
	uint64_t low_end = guest_mem_low_end(mem);
	int n = 0;
	int rc = e820_add(out, max, &n, 0, MIN(low_end, E820_LOW_RAM_END), E820_TYPE_RAM);
	if (!rc)
		rc = e820_add(out, max, &n, E820_LOW_RAM_END, LAYOUT_HIMEM, E820_TYPE_RESERVED);
	if (!rc)
		rc = e820_add(out, max, &n, LAYOUT_HIMEM, low_end, E820_TYPE_RAM);
	for (int i = 1; i < mem->nregions && !rc; i++) {
		const struct guest_mem_region *r = &mem->regions[i];
		rc = e820_add(out, max, &n, r->gpa, r->gpa + r->size, E820_TYPE_RAM);
	}
	return rc < 0 ? rc : n;
}

/* Copies the kernel's own setup header, only as far as the kernel says it goes. */
static int copy_setup_header(struct boot_params *bp, const struct kernel_image *k, char *err, size_t errlen)
{
	uint8_t *raw = (uint8_t *)bp;
	size_t end = SETUP_HEADER_FIXED_END + k->setup_header[SETUP_JUMP_OFFSET - SETUP_HEADER_OFFSET];
	end = MIN(MAX(end, (size_t)SETUP_HEADER_FIXED_END), (size_t)(SETUP_HEADER_OFFSET + SETUP_HEADER_SIZE));
	memcpy(raw + SETUP_HEADER_OFFSET, k->setup_header, end - SETUP_HEADER_OFFSET);
	if (bp->hdr.header != BOOT_HDR_MAGIC)
		return err_fail(err, errlen, -EINVAL,
			    "the %s has no \"HdrS\" setup header signature; it is not a Linux bzImage vmon can boot",
			    k->format[0] ? k->format : "kernel");
	return 0;
}

static void build_setup_header(struct boot_params *bp)
{
	bp->hdr.boot_flag = BOOT_FLAG_MAGIC;
	bp->hdr.header = BOOT_HDR_MAGIC;
	bp->hdr.version = BOOT_PROTOCOL_BUILT;
	bp->hdr.cmdline_size = BOOT_CMDLINE_SIZE_DEFAULT - 1;
}

/* Longest command line (without the NUL) the kernel reads. */
static size_t cmdline_limit(const struct boot_params *bp)
{
	size_t limit = 255; /* protocols before 2.06 */
	if (bp->hdr.version >= 0x0206 && bp->hdr.cmdline_size)
		limit = bp->hdr.cmdline_size;
	return MIN(limit, (size_t)LAYOUT_CMDLINE_MAX - 1);
}

int boot_params_write(struct guest_mem *mem, const struct kernel_image *k, const char *cmdline,
		      uint64_t initrd_gpa, uint64_t initrd_size, uint64_t acpi_rsdp_gpa, char *err, size_t errlen)
{
	static struct boot_params zero;
	struct boot_params bp = zero;
	if (!cmdline)
		cmdline = "";

	if (k && k->has_setup_header) {
		int rc = copy_setup_header(&bp, k, err, errlen);
		if (rc < 0)
			return rc;
	} else {
		build_setup_header(&bp);
	}

	size_t len = strlen(cmdline);
	size_t limit = cmdline_limit(&bp);
	if (len > limit)
		return err_fail(err, errlen, -E2BIG,
			    "the kernel command line is %zu bytes long but this kernel accepts at most %zu; shorten it",
			    len, limit);

	bp.hdr.type_of_loader = BOOT_LOADER_TYPE_UNDEFINED;
	bp.hdr.loadflags |= LOADED_HIGH | CAN_USE_HEAP;
	bp.hdr.heap_end_ptr = BOOT_HEAP_END_PTR;
	bp.hdr.cmd_line_ptr = (uint32_t)LAYOUT_CMDLINE;
	bp.ext_cmd_line_ptr = (uint32_t)(LAYOUT_CMDLINE >> 32);

	if (initrd_size) {
		if (!gpa_to_host(mem, initrd_gpa, initrd_size))
			return err_fail(err, errlen, -EINVAL,
				    "the initrd at %#llx (%llu bytes) is not inside guest RAM; give the guest more memory",
				    (unsigned long long)initrd_gpa, (unsigned long long)initrd_size);
		bp.hdr.ramdisk_image = (uint32_t)initrd_gpa;
		bp.ext_ramdisk_image = (uint32_t)(initrd_gpa >> 32);
		bp.hdr.ramdisk_size = (uint32_t)initrd_size;
		bp.ext_ramdisk_size = (uint32_t)(initrd_size >> 32);
	}
	if (acpi_rsdp_gpa)
		bp.acpi_rsdp_addr = acpi_rsdp_gpa;

	int n = e820_build(mem, bp.e820_table, E820_MAX_ENTRIES_ZEROPAGE);
	if (n < 0)
		return err_fail(err, errlen, n, "the guest memory map does not fit in the boot parameters: %s", strerror(-n));
	bp.e820_entries = (uint8_t)n;

	if (guest_mem_write(mem, LAYOUT_CMDLINE, cmdline, len + 1) < 0 ||
	    guest_mem_write(mem, LAYOUT_BOOT_PARAMS, &bp, sizeof(bp)) < 0)
		return err_fail(err, errlen, -EFAULT,
			    "guest RAM is too small to hold the boot parameters below 1 MiB; give the guest more memory");
	return 0;
}
