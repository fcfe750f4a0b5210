/* Kernel and initrd loading: ELF vmlinux and bzImage, with bzImage payloads decompressed on the host. */
#ifndef VMON_BOOT_KERNEL_H
#define VMON_BOOT_KERNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memory/guest_mem.h"

/* Bytes 0x1f1..0x290 of a bzImage: struct setup_header, copied into boot_params as is. */
/* The --memory value (in M) to advise for bytes of RAM: --memory takes multiples of 2M. */
#define MEMORY_OPTION_MIB(bytes) (((bytes) + 2 * 1024 * 1024 - 1) / (2 * 1024 * 1024) * 2)

#define SETUP_HEADER_OFFSET 0x1f1
#define SETUP_HEADER_SIZE   (0x290 - 0x1f1)

struct kernel_image {
	uint64_t entry;       /* guest-physical address of the 64-bit entry point */
	uint64_t load_start;  /* guest-physical range the kernel occupies, incl. its bss/init */
	uint64_t load_end;
	bool has_setup_header;
	uint8_t setup_header[SETUP_HEADER_SIZE];
	uint64_t initrd_addr_max; /* highest address the initrd may end at (from the header, or 4 GiB) */
	char format[64];      /* what was loaded, for messages: "ELF vmlinux", "bzImage (xz payload)", ... */
};

/*
 * Loads the kernel at path into guest memory. On failure writes one sentence naming the file
 * and what is wrong with it into err and returns a negative errno.
 */
int kernel_load(struct guest_mem *mem, const char *path, struct kernel_image *out, char *err, size_t errlen);

/*
 * Loads the initrd at the top of low RAM, page aligned, above the kernel and below
 * k->initrd_addr_max. Returns 0 and its address/size, or -E2BIG when it does not fit (err says
 * how much memory it needs).
 */
int initrd_load(struct guest_mem *mem, const char *path, const struct kernel_image *k, uint64_t *gpa,
		uint64_t *size, char *err, size_t errlen);

#endif
