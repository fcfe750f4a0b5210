/*
 * Loading a bzImage (Linux x86 boot protocol 2.08+, 64-bit kernels). The compressed payload is
 * decompressed on the host and its vmlinux loaded like an ELF kernel; a payload vmon cannot
 * decompress is left to the kernel's own decompressor instead.
 */
#ifndef VMON_BOOT_BZIMAGE_H
#define VMON_BOOT_BZIMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "boot/kernel.h"
#include "memory/guest_mem.h"

/* Setup header offsets and flags used by vmon (Documentation/arch/x86/boot.rst). */
#define BZ_SETUP_SECTS      0x1f1
#define BZ_HEADER_MAGIC_OFF 0x202 /* "HdrS" */
#define BZ_VERSION          0x206
#define BZ_INITRD_ADDR_MAX  0x22c
#define BZ_XLOADFLAGS       0x236
#define BZ_PAYLOAD_OFFSET   0x248
#define BZ_PAYLOAD_LENGTH   0x24c
#define BZ_PREF_ADDRESS     0x258
#define BZ_INIT_SIZE        0x260
#define BZ_XLF_KERNEL_64    (1u << 0)

/* Where the protected-mode part goes when the kernel decompresses itself, and its 64-bit entry. */
#define BZ_PM_LOAD_ADDR     0x100000ULL
#define BZ_PM_ENTRY64_OFF   0x200

/* True when data carries the boot protocol's "HdrS" signature at 0x202. */
bool bzimage_has_header(const uint8_t *data, size_t len);

/*
 * Loads the bzImage in data (read from path, named in messages) into guest memory and fills
 * every field of out. Returns 0, or a negative errno with one sentence in err: -ENOEXEC (too
 * old, 32-bit only, truncated), -EBADMSG (corrupt payload), -E2BIG (does not fit in RAM), ...
 */
int bzimage_load(struct guest_mem *mem, const uint8_t *data, size_t len, const char *path,
		 struct kernel_image *out, char *err, size_t errlen);

#endif
