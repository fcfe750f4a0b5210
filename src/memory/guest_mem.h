/*
 * Guest RAM and the one translation from guest-physical addresses to host pointers.
 * Everything that touches guest memory on behalf of the guest goes through gpa_to_host(),
 * which refuses any range that is not entirely inside one RAM region.
 */
#ifndef VMON_MEMORY_GUEST_MEM_H
#define VMON_MEMORY_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* RAM above this address is placed above 4 GiB, leaving a hole for MMIO (PCI, IOAPIC, LAPIC). */
#define GUEST_MEM_LOW_LIMIT 0xC0000000ULL
#define GUEST_MEM_HIGH_BASE 0x100000000ULL
#define GUEST_MEM_MAX_REGIONS 2
/* hugetlbfs pages (--memory SIZE,hugepages=on): the unit of allocation and of discard. */
#define GUEST_MEM_HUGE_PAGE (2ULL << 20)

/* How the host backs guest RAM (--memory SIZE[,merge=on|hugepages=on], docs/usage.md). */
enum guest_mem_backing {
	GUEST_MEM_MEMFD = 0, /* a memfd mapped shared: the default */
	/*
	 * Private anonymous memory marked MADV_MERGEABLE: the host's KSM merges only private
	 * anonymous pages, so a memfd would never be shared.
	 */
	GUEST_MEM_MERGEABLE,
	GUEST_MEM_HUGETLB, /* a memfd of 2 MiB hugetlbfs pages, all reserved when RAM is mapped */
};

struct guest_mem_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *host;     /* mapping of this region */
	uint64_t fd_offset; /* offset of this region in the backing memfd */
	/*
	 * One bit per 4 KiB page vmon itself wrote while write tracking was on (write_track.h);
	 * NULL until tracking first starts, then kept until guest_mem_destroy().
	 */
	uint64_t *written;
};

struct guest_mem {
	struct guest_mem_region regions[GUEST_MEM_MAX_REGIONS];
	int nregions;
	uint64_t ram_size; /* total bytes of RAM, all regions */
	int fd;            /* memfd backing all of RAM, or -1 */
	enum guest_mem_backing backing;
	bool mergeable;    /* marked MADV_MERGEABLE (GUEST_MEM_MERGEABLE, or a file mapping asked to be) */
	/*
	 * RAM restored from a snapshot: fd is the snapshot's memory file, mapped MAP_PRIVATE, so it
	 * holds RAM as it was at the snapshot and not the guest's writes since.
	 */
	bool file_backed;
	char *path;         /* the file RAM is mapped from (file_backed), for messages */
	uint64_t file_size; /* its size when it was mapped */
	/* Write tracking is on (write_track.h): read with __atomic by every thread that writes RAM. */
	bool tracking_writes;
};

/*
 * Exit status of vmon when it touches guest RAM mapped from a file that has since shrunk (the
 * page is gone: SIGBUS). Documented in docs/usage.md with the statuses of src/cli/cli.h.
 */
#define GUEST_MEM_EXIT_FILE_SHRUNK 3
/* Exit status of vmon when the guest or vmon touches a page post-copy lost with its source. */
#define GUEST_MEM_EXIT_LOST 1

/*
 * Allocates ram_size bytes of guest RAM backed by a memfd and lays it out below and above
 * the MMIO hole. Returns 0 or a negative errno (-ENOMEM when the host cannot give it).
 */
int guest_mem_init(struct guest_mem *mem, uint64_t ram_size);
/*
 * Like guest_mem_init, with RAM backed as asked. On error one sentence in err says what the host
 * lacks and how to fix it: too few free hugepages (-ENOMEM, with the vm.nr_hugepages to set), a
 * size that is not whole 2 MiB pages (-EINVAL), a kernel without hugetlbfs or KSM (-EOPNOTSUPP).
 */
int guest_mem_init_backed(struct guest_mem *mem, uint64_t ram_size, enum guest_mem_backing backing, char *err,
			  size_t errlen);
/*
 * Marks RAM mapped from a file (a restored snapshot) MADV_MERGEABLE: the pages the guest writes
 * are private anonymous copies, which KSM may merge. 0 or -errno.
 */
int guest_mem_make_mergeable(struct guest_mem *mem);
/* The host pages behind guest RAM, the smallest piece guest_mem_discard gives back: 4 KiB, or 2 MiB for hugetlb RAM. */
uint64_t guest_mem_page_size(const struct guest_mem *mem);
/* Bytes of whole pages (guest_mem_page_size) inside [gpa, gpa+len): what guest_mem_discard gives back. */
uint64_t guest_mem_discardable(const struct guest_mem *mem, uint64_t gpa, uint64_t len);
/* "memfd", "merge" (private, KSM), "hugepages", or "snapshot_file" (restored): for GET /vm. */
const char *guest_mem_backing_name(const struct guest_mem *mem);
/*
 * Maps the first ram_size bytes of the file at path as guest RAM, privately (MAP_PRIVATE): pages
 * are read from the file when the guest first touches them and the guest's writes never reach
 * the file, so the time this takes does not depend on ram_size and several VMs can share one
 * file. Same layout as guest_mem_init. Returns 0, -errno if the file cannot be opened or mapped,
 * or -EINVAL if it is shorter than ram_size.
 */
int guest_mem_init_from_file(struct guest_mem *mem, uint64_t ram_size, const char *path);
/*
 * For RAM mapped from a file: has the file shrunk below the RAM it backs, so pages the guest has
 * not written are gone? Sets *now to its size. False for memfd RAM or when fstat fails.
 */
bool guest_mem_file_shrunk(const struct guest_mem *mem, uint64_t *now);
/*
 * -EIO with one sentence in err naming the file if guest_mem_file_shrunk(), else 0. For a vCPU
 * whose KVM_RUN failed with EFAULT: the page it touched could not be read from the file.
 */
int guest_mem_check_file(const struct guest_mem *mem, char *err, size_t errlen);
/*
 * For a vCPU whose KVM_RUN failed with EFAULT: -EIO with one sentence in err when the backing
 * explains it (a shrunk snapshot file, as guest_mem_check_file; hugetlb RAM whose page the
 * balloon gave back and the host's pool can no longer give again), else 0.
 */
int guest_mem_explain_fault(const struct guest_mem *mem, char *err, size_t errlen);
/*
 * Post-copy RAM (one contiguous mapping, as guest_mem_init makes): once post-copy fails, the pages
 * that never arrived are poisoned, and a thread touching one gets SIGBUS (a vCPU's from KVM). The
 * handler then ends vmon with one sentence and GUEST_MEM_EXIT_LOST, not a crash. Undone by
 * guest_mem_destroy().
 */
void guest_mem_watch_lost_pages(const struct guest_mem *mem);
void guest_mem_destroy(struct guest_mem *mem);

/*
 * Reading and writing are two forms, so a reviewer sees which an access is and migration sees
 * every page vmon writes (KVM's dirty log only sees the vCPUs' writes):
 * - gpa_to_host() gives a read-only pointer;
 * - gpa_to_host_write() gives a writable one; after writing through it (or through an iovec
 *   built from it), the writer calls guest_mem_wrote() or guest_mem_wrote_iov(). Marking comes
 *   after the bytes are in place, never before: a page marked first could be fetched and sent
 *   between the mark and the write, and the write would then be lost;
 * - guest_mem_write() copies and marks in one call.
 */

/* Host pointer for reading [gpa, gpa+len), or NULL if any byte is outside guest RAM or len is 0. */
const void *gpa_to_host(const struct guest_mem *mem, uint64_t gpa, uint64_t len);
/* The same range, for writing: call guest_mem_wrote() once the bytes are written. */
void *gpa_to_host_write(const struct guest_mem *mem, uint64_t gpa, uint64_t len);

/* Copies between guest RAM and host buffers; 0 or -EFAULT when out of range. */
int guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len);
int guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len);

/* Marks the pages of [host, host+len) written; the slow half of guest_mem_wrote(). */
void write_track_mark(const struct guest_mem *mem, const void *host, uint64_t len);

/*
 * vmon wrote [host, host+len) of guest RAM (a pointer from gpa_to_host_write() or a virtqueue
 * segment): while write tracking is on, its pages are marked for migration. Off, this is one
 * predictable branch; write_track_start() makes the writers' view of the switch safe without a
 * fence here (see there). Any thread may call it.
 */
static inline void guest_mem_wrote(const struct guest_mem *mem, const void *host, uint64_t len)
{
	/* The bytes are stored before the switch is read: keeps the compiler from moving them after. */
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	if (__builtin_expect(__atomic_load_n(&mem->tracking_writes, __ATOMIC_ACQUIRE), 0))
		write_track_mark(mem, host, len);
}

/* guest_mem_wrote() for the first len bytes of iov[0..iovcnt) (data a read or recv put there). */
void guest_mem_wrote_iov(const struct guest_mem *mem, const struct iovec *iov, unsigned int iovcnt, uint64_t len);

/*
 * Gives the pages inside [gpa, gpa+len) back to the host (the balloon and free page reporting):
 * only whole pages of guest_mem_page_size() (4 KiB, or 2 MiB for hugetlb RAM) are given back
 * and partial pages at either end are kept, so a range that is not page-aligned never loses data
 * around it. Memfd and hugetlb RAM get a hole punched in the file (MADV_REMOVE; MADV_DONTNEED
 * would only unmap it, the memfd keeping the pages); private anonymous RAM (merge=on) and RAM
 * restored from a snapshot (a private file mapping) drop their private pages (MADV_DONTNEED), so
 * the page reads as zero or as the snapshot's content again from the shared page cache.
 * Returns 0, -EFAULT when the range is not inside one RAM region, or the madvise error.
 */
int guest_mem_discard(const struct guest_mem *mem, uint64_t gpa, uint64_t len);
/*
 * Makes [gpa, gpa+len) read as zero, giving back to the host what guest_mem_discard can (the
 * rest is written with zeros). 0 or -EFAULT when the range is not inside one RAM region.
 */
int guest_mem_zero(const struct guest_mem *mem, uint64_t gpa, uint64_t len);

/* End of the RAM region that starts at 0 (the usable low memory). */
uint64_t guest_mem_low_end(const struct guest_mem *mem);

#endif
