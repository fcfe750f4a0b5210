#include "memory/present_pages.h"

#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include "lib/util.h"

#define PAGE 4096u
#define PM_PRESENT(e) (((e) >> 63) & 1)
#define PM_SWAPPED(e) (((e) >> 62) & 1)
#define PM_FILE(e) (((e) >> 61) & 1) /* a file page or shared memory, not a private copy */

/* The memfd's extents tell which pages hold data: not for hugetlbfs, nor without a memfd. */
static bool has_fd_extents(const struct guest_mem *mem)
{
	return mem->fd >= 0 && mem->backing != GUEST_MEM_HUGETLB;
}

void present_pages_open(struct present_pages *pp, const struct guest_mem *mem)
{
	*pp = (struct present_pages){ .mem = mem, .pagemap_fd = -1 };
	if (mem->file_backed || !has_fd_extents(mem))
		pp->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
}

void present_pages_close(struct present_pages *pp)
{
	if (pp->pagemap_fd >= 0)
		close(pp->pagemap_fd);
	pp->pagemap_fd = -1;
}

static bool in_fd_data(struct present_pages *pp, off_t off)
{
	if (off >= pp->data_start && off < pp->data_end)
		return true;
	if (off < pp->data_start)
		return false;
	off_t s = lseek(pp->mem->fd, off, SEEK_DATA);
	if (s < 0) { /* ENXIO: no data after off */
		pp->data_start = pp->data_end = (off_t)INT64_MAX;
		return false;
	}
	off_t e = lseek(pp->mem->fd, s, SEEK_HOLE);
	pp->data_start = s;
	pp->data_end = e < 0 ? (off_t)INT64_MAX : e;
	return off >= pp->data_start && off < pp->data_end;
}

void present_pages_scan(struct present_pages *pp, const struct guest_mem_region *reg, uint64_t o, unsigned int n,
			bool *want)
{
	const struct guest_mem *mem = pp->mem;
	const uint8_t *host = reg->host + o;
	uint64_t off = reg->fd_offset + o;
	uint64_t pm[PRESENT_PAGES_CHUNK];
	bool have_pm = false;
	if (pp->pagemap_fd >= 0) {
		off_t at = (off_t)((uintptr_t)host / PAGE * sizeof(uint64_t));
		have_pm = pread(pp->pagemap_fd, pm, n * sizeof(uint64_t), at) == (ssize_t)(n * sizeof(uint64_t));
	}
	for (unsigned int i = 0; i < n; i++) {
		bool in_use = !have_pm || PM_PRESENT(pm[i]) || PM_SWAPPED(pm[i]); /* unknown: read it */
		if (!has_fd_extents(mem))
			want[i] = in_use;
		else if (in_fd_data(pp, (off_t)(off + (uint64_t)i * PAGE)))
			want[i] = true;
		else /* Present or swapped and not a file page: the guest wrote it since the restore. */
			want[i] = mem->file_backed && in_use && !(have_pm && PM_FILE(pm[i]));
	}
}

void present_pages_mark(const struct guest_mem *mem, int r, uint64_t *bits)
{
	const struct guest_mem_region *reg = &mem->regions[r];
	struct present_pages pp;
	bool want[PRESENT_PAGES_CHUNK];
	present_pages_open(&pp, mem);
	for (uint64_t o = 0; o < reg->size; o += (uint64_t)PRESENT_PAGES_CHUNK * PAGE) {
		unsigned int n = (unsigned int)MIN((uint64_t)PRESENT_PAGES_CHUNK, (reg->size - o) / PAGE);
		present_pages_scan(&pp, reg, o, n, want);
		for (unsigned int i = 0; i < n; i++) {
			uint64_t page = o / PAGE + i;
			if (want[i])
				bits[page / 64] |= 1ull << (page % 64);
		}
	}
	present_pages_close(&pp);
}
