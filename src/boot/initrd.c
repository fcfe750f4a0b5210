/*
 * initrd_load(): the initrd goes at the top of low RAM, like a bootloader would put it, so it
 * stays clear of the kernel and of the memory the kernel allocates early from below.
 *
 * An empty initrd file is refused: the kernel would boot as if there were none and fail much
 * later with "VFS: Unable to mount root fs", far from the real mistake (usually a failed
 * image build). Leave out --initrd to boot without one.
 */
#include "boot/kernel.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/user_file.h"
#include "lib/util.h"

#define INITRD_ALIGN (4 * KiB)
/* Boot protocol: a header that gives no initrd_addr_max means this limit. */
#define INITRD_ADDR_MAX_DEFAULT 0x37ffffffULL

static int open_error(const char *path, int rc, char *err, size_t errlen)
{
	if (rc == -ENOENT)
		snprintf(err, errlen, "initrd %s does not exist; check the path", path);
	else if (rc == -EACCES || rc == -EPERM)
		snprintf(err, errlen, "initrd %s is not readable (permission denied)", path);
	else
		snprintf(err, errlen, "initrd %s cannot be opened: %s", path, strerror(-rc));
	return rc;
}

static double mib(uint64_t bytes) { return (double)bytes / (double)MiB; }

/* Picks the guest address, or explains why the initrd does not fit. */
static int place(const struct guest_mem *mem, const char *path, const struct kernel_image *k, uint64_t size,
		 uint64_t *gpa, char *err, size_t errlen)
{
	uint64_t addr_max = k->initrd_addr_max ? k->initrd_addr_max : INITRD_ADDR_MAX_DEFAULT;
	uint64_t hard_limit = MIN(addr_max + 1, GUEST_MEM_LOW_LIMIT);
	uint64_t limit = MIN(guest_mem_low_end(mem), hard_limit);
	uint64_t base = ALIGN_UP(k->load_end, INITRD_ALIGN);
	if (size <= limit && ALIGN_DOWN(limit - size, INITRD_ALIGN) >= base) {
		*gpa = ALIGN_DOWN(limit - size, INITRD_ALIGN);
		return 0;
	}
	uint64_t needed = base + ALIGN_UP(size, INITRD_ALIGN);
	if (needed > hard_limit)
		snprintf(err, errlen,
			 "initrd %s (%.1f MiB) does not fit between the end of the kernel (%.1f MiB) and the "
			 "highest address the kernel accepts for an initrd (%.1f MiB); use a smaller initrd",
			 path, mib(size), mib(k->load_end), mib(hard_limit));
	else
		snprintf(err, errlen,
			 "initrd %s (%.1f MiB) does not fit in guest RAM above the kernel (which ends at "
			 "%.1f MiB); it needs --memory of at least %" PRIu64 "M",
			 path, mib(size), mib(k->load_end), (uint64_t)MEMORY_OPTION_MIB(needed));
	return -E2BIG;
}

int initrd_load(struct guest_mem *mem, const char *path, const struct kernel_image *k, uint64_t *gpa,
		uint64_t *size, char *err, size_t errlen)
{
	int fd = open_regular_file(path, "initrd", O_RDONLY, err, errlen);
	if (fd == -EISDIR) {
		snprintf(err, errlen, "initrd %s is a directory; give a cpio archive (build one with "
			 "`find . | cpio -o -H newc`)", path);
		return fd;
	}
	if (fd == -EINVAL)
		return fd; /* err names the file type */
	if (fd < 0)
		return open_error(path, fd, err, errlen);
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "initrd %s cannot be read: %s", path, strerror(-rc));
		goto out;
	}
	if (st.st_size == 0) {
		snprintf(err, errlen, "initrd %s is empty; give a cpio archive or leave out --initrd", path);
		rc = -EINVAL;
		goto out;
	}
	uint64_t len = (uint64_t)st.st_size;
	uint64_t addr;
	if ((rc = place(mem, path, k, len, &addr, err, errlen)) < 0)
		goto out;
	uint8_t *dst = gpa_to_host_write(mem, addr, len); /* place() kept it inside low RAM */
	uint64_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, dst + got, len - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			snprintf(err, errlen, "initrd %s cannot be read: %s", path,
				 n < 0 ? strerror(-rc) : "the file became shorter while it was read");
			goto out;
		}
		got += (uint64_t)n;
	}
	guest_mem_wrote(mem, dst, len);
	*gpa = addr;
	*size = len;
out:
	close(fd);
	return rc;
}
