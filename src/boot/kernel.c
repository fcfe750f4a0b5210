/* kernel_load(): reads the kernel file and hands it to the loader for its format. */
#include "boot/kernel.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "boot/bzimage.h"
#include "boot/elf_loader.h"
#include "lib/user_file.h"
#include "lib/util.h"

/* A vmlinux carries no header limit; 4 GiB - 1 is the highest byte a 32-bit ramdisk_image can reach. */
#define ELF_INITRD_ADDR_MAX 0xffffffffULL

/* Well above any kernel image, even a vmlinux with debug information. */
#define KERNEL_FILE_MAX (1024 * 1024 * 1024)

static int read_error(const char *path, int rc, char *err, size_t errlen)
{
	switch (rc) {
	case -ENOENT:
		snprintf(err, errlen, "kernel %s does not exist; check the path", path);
		break;
	case -EACCES:
	case -EPERM:
		snprintf(err, errlen, "kernel %s is not readable (permission denied)", path);
		break;
	case -EISDIR:
		snprintf(err, errlen, "kernel %s is a directory, not a kernel image", path);
		break;
	case -EINVAL:
		not_regular_file_error(path, "kernel", err, errlen);
		break;
	case -EFBIG:
		snprintf(err, errlen, "kernel %s is larger than %d MiB, which no kernel image is: check the path", path,
			 KERNEL_FILE_MAX >> 20);
		break;
	default:
		snprintf(err, errlen, "kernel %s cannot be read: %s", path, strerror(-rc));
		break;
	}
	return rc;
}

int kernel_load(struct guest_mem *mem, const char *path, struct kernel_image *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	uint8_t *data;
	size_t len;
	int rc = read_file(path, KERNEL_FILE_MAX, &data, &len);
	if (rc < 0)
		return read_error(path, rc, err, errlen);

	if (len == 0) {
		snprintf(err, errlen, "kernel %s is empty", path);
		rc = -ENOEXEC;
	} else if (elf_has_magic(data, len)) {
		char what[PATH_MAX + 16];
		snprintf(what, sizeof(what), "kernel %s", path);
		rc = elf_load(mem, data, len, what, out, err, errlen);
		if (rc == 0) {
			out->initrd_addr_max = ELF_INITRD_ADDR_MAX;
			snprintf(out->format, sizeof(out->format), "ELF vmlinux");
		}
	} else if (bzimage_has_header(data, len)) {
		rc = bzimage_load(mem, data, len, path, out, err, errlen);
	} else {
		snprintf(err, errlen,
			 "kernel %s is not a Linux kernel: expected an ELF vmlinux or a bzImage "
			 "(with \"HdrS\" at offset 0x202)",
			 path);
		rc = -ENOEXEC;
	}
	free(data);
	if (rc < 0) {
		struct kernel_image empty = { 0 };
		*out = empty;
	}
	return rc;
}
