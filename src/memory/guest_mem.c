#include "memory/guest_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/user_file.h"
#include "lib/util.h"

/* Splits one mapping of ram_size bytes into the region below the MMIO hole and the one above 4 GiB. */
static void layout(struct guest_mem *mem, uint8_t *host, uint64_t ram_size, int fd)
{
	mem->fd = fd;
	mem->ram_size = ram_size;
	uint64_t low = MIN(ram_size, GUEST_MEM_LOW_LIMIT);
	mem->regions[0] = (struct guest_mem_region){ .gpa = 0, .size = low, .host = host, .fd_offset = 0 };
	mem->nregions = 1;
	if (ram_size > low) {
		mem->regions[1] = (struct guest_mem_region){
			.gpa = GUEST_MEM_HIGH_BASE, .size = ram_size - low, .host = host + low, .fd_offset = low
		};
		mem->nregions = 2;
	}
}

int guest_mem_init(struct guest_mem *mem, uint64_t ram_size)
{
	memset(mem, 0, sizeof(*mem));
	mem->fd = -1;
	if (ram_size == 0 || ram_size % (4 * KiB))
		return -EINVAL;

	int fd = memfd_create("vmon-guest-ram", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)ram_size) < 0) {
		int e = -errno;
		close(fd);
		return e == -EFBIG || e == -EINVAL ? -ENOMEM : e;
	}
	/*
	 * MAP_NORESERVE: guest RAM is touched on demand, so a large guest on a host with less
	 * free memory still starts; MAP_SHARED lets snapshots and other processes see the memfd.
	 */
	uint8_t *host = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (host == MAP_FAILED) {
		int e = -errno;
		close(fd);
		return e;
	}
	madvise(host, ram_size, MADV_MERGEABLE);

	layout(mem, host, ram_size, fd);
	return 0;
}

int guest_mem_init_from_file(struct guest_mem *mem, uint64_t ram_size, const char *path)
{
	memset(mem, 0, sizeof(*mem));
	mem->fd = -1;
	if (ram_size == 0 || ram_size % (4 * KiB))
		return -EINVAL;
	int fd = open_regular_file(path, NULL, O_RDONLY, NULL, 0);
	if (fd < 0)
		return fd;
	struct stat st;
	int e = fstat(fd, &st) < 0 ? -errno : (uint64_t)st.st_size < ram_size ? -EINVAL : 0;
	if (e) {
		close(fd);
		return e;
	}
	/* Writable private mapping of a read-only file: the guest's writes go to anonymous copies. */
	uint8_t *host = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
	if (host == MAP_FAILED) {
		e = -errno;
		close(fd);
		return e;
	}
	layout(mem, host, ram_size, fd);
	mem->file_backed = true;
	return 0;
}

void guest_mem_destroy(struct guest_mem *mem)
{
	if (mem->nregions > 0 && mem->regions[0].host)
		munmap(mem->regions[0].host, mem->ram_size);
	if (mem->fd >= 0)
		close(mem->fd);
	memset(mem, 0, sizeof(*mem));
	mem->fd = -1;
}

void *gpa_to_host(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	if (len == 0)
		return NULL;
	for (int i = 0; i < mem->nregions; i++) {
		const struct guest_mem_region *r = &mem->regions[i];
		/* Written to avoid overflow: gpa - r->gpa only evaluated when gpa >= r->gpa. */
		if (gpa >= r->gpa && gpa - r->gpa < r->size && len <= r->size - (gpa - r->gpa))
			return r->host + (gpa - r->gpa);
	}
	return NULL;
}

int guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len)
{
	void *p = gpa_to_host(mem, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(dst, p, len);
	return 0;
}

int guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = gpa_to_host(mem, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(p, src, len);
	return 0;
}

int guest_mem_discard(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	if (len == 0 || gpa + len < gpa)
		return -EFAULT;
	uint64_t start = ALIGN_UP(gpa, 4 * KiB), end = ALIGN_DOWN(gpa + len, 4 * KiB);
	if (!gpa_to_host(mem, gpa, len))
		return -EFAULT;
	if (end <= start)
		return 0;
	uint8_t *host = gpa_to_host(mem, start, end - start);
	if ((uintptr_t)host % (4 * KiB))
		return -EINVAL; /* RAM not mapped on page boundaries: only test rigs do that */
	/* madvise, not fallocate(PUNCH_HOLE): the same hole, and every thread's filter allows it. */
	int advice = mem->fd >= 0 && !mem->file_backed ? MADV_REMOVE : MADV_DONTNEED;
	return madvise(host, end - start, advice) < 0 ? -errno : 0;
}

uint64_t guest_mem_low_end(const struct guest_mem *mem)
{
	return mem->nregions ? mem->regions[0].size : 0;
}
