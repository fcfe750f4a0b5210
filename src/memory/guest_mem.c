#include "memory/guest_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/memfd.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/user_file.h"
#include "lib/util.h"
#include "memory/hugepages.h"
#include "memory/write_track.h"

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

/* Both regions start on a 2 MiB boundary, so RAM of whole hugepages splits into whole hugepages. */
_Static_assert(GUEST_MEM_LOW_LIMIT % GUEST_MEM_HUGE_PAGE == 0 && GUEST_MEM_HIGH_BASE % GUEST_MEM_HUGE_PAGE == 0,
	       "guest RAM regions must start on a hugepage boundary");

static int memfd_ram(uint64_t ram_size, bool huge, uint8_t **host, char *err, size_t errlen)
{
	int fd = memfd_create("vmon-guest-ram", MFD_CLOEXEC | (huge ? MFD_HUGETLB | MFD_HUGE_2MB : 0));
	if (fd < 0) {
		int e = errno;
		if (huge && (e == EINVAL || e == ENOENT || e == ENODEV)) {
			snprintf(err, errlen, "hugepages=on: this host's kernel has no hugetlbfs with 2 MiB pages "
					      "(CONFIG_HUGETLBFS); run without hugepages=on");
			return -EOPNOTSUPP;
		}
		snprintf(err, errlen, "cannot create the memfd for guest RAM: %s", strerror(e));
		return -e;
	}
	if (ftruncate(fd, (off_t)ram_size) < 0) {
		int e = -errno;
		close(fd);
		e = e == -EFBIG || e == -EINVAL ? -ENOMEM : e;
		snprintf(err, errlen, "cannot size the memfd for guest RAM: %s", strerror(-e));
		return e;
	}
	/*
	 * Ordinary memfd: MAP_NORESERVE, as guest RAM is touched on demand, so a large guest on a
	 * host with less free memory still starts; MAP_SHARED lets snapshots and other processes see
	 * the memfd. Hugepages are reserved here instead, all of them: an unreserved one the host ran
	 * out of would kill vmon with SIGBUS when the guest first touched it.
	 */
	*host = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_SHARED | (huge ? 0 : MAP_NORESERVE), fd, 0);
	if (*host == MAP_FAILED) {
		int e = -errno;
		close(fd);
		if (huge && e == -ENOMEM)
			hugepages_shortage_message(ram_size, err, errlen);
		else
			snprintf(err, errlen, "cannot map guest RAM: %s", strerror(-e));
		return e;
	}
	return fd;
}

int guest_mem_init_backed(struct guest_mem *mem, uint64_t ram_size, enum guest_mem_backing backing, char *err,
			  size_t errlen)
{
	memset(mem, 0, sizeof(*mem));
	mem->fd = -1;
	if (ram_size == 0 || ram_size % (4 * KiB)) {
		snprintf(err, errlen, "guest RAM of %llu bytes is not a whole number of 4 KiB pages",
			 (unsigned long long)ram_size);
		return -EINVAL;
	}
	if (backing == GUEST_MEM_HUGETLB && ram_size % GUEST_MEM_HUGE_PAGE) {
		snprintf(err, errlen, "hugepages=on: guest RAM of %llu bytes is not a whole number of 2 MiB pages; "
				      "give --memory in multiples of 2M",
			 (unsigned long long)ram_size);
		return -EINVAL;
	}
	uint8_t *host;
	int fd = -1;
	if (backing == GUEST_MEM_MERGEABLE) {
		host = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (host == MAP_FAILED) {
			int e = -errno;
			snprintf(err, errlen, "cannot map guest RAM: %s", strerror(-e));
			return e;
		}
		if (madvise(host, ram_size, MADV_MERGEABLE) < 0) {
			int e = errno;
			munmap(host, ram_size);
			snprintf(err, errlen, "merge=on: this host's kernel cannot share pages (madvise MADV_MERGEABLE: %s; "
					      "it needs CONFIG_KSM); run without merge=on",
				 strerror(e));
			return -EOPNOTSUPP;
		}
		mem->mergeable = true;
	} else {
		fd = memfd_ram(ram_size, backing == GUEST_MEM_HUGETLB, &host, err, errlen);
		if (fd < 0)
			return fd;
	}
	layout(mem, host, ram_size, fd);
	mem->backing = backing;
	return 0;
}

int guest_mem_init(struct guest_mem *mem, uint64_t ram_size)
{
	char err[256];
	return guest_mem_init_backed(mem, ram_size, GUEST_MEM_MEMFD, err, sizeof(err));
}

int guest_mem_make_mergeable(struct guest_mem *mem)
{
	if (!mem->nregions || madvise(mem->regions[0].host, mem->ram_size, MADV_MERGEABLE) < 0)
		return mem->nregions ? -errno : -EINVAL;
	mem->mergeable = true;
	return 0;
}

uint64_t guest_mem_page_size(const struct guest_mem *mem)
{
	return mem->backing == GUEST_MEM_HUGETLB ? GUEST_MEM_HUGE_PAGE : 4 * KiB;
}

uint64_t guest_mem_discardable(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	uint64_t unit = guest_mem_page_size(mem);
	if (gpa + len < gpa)
		return 0;
	uint64_t start = ALIGN_UP(gpa, unit), end = ALIGN_DOWN(gpa + len, unit);
	return end > start ? end - start : 0;
}

const char *guest_mem_backing_name(const struct guest_mem *mem)
{
	if (mem->file_backed)
		return "snapshot_file";
	switch (mem->backing) {
	case GUEST_MEM_MEMFD: return "memfd";
	case GUEST_MEM_MERGEABLE: return "merge";
	case GUEST_MEM_HUGETLB: return "hugepages";
	}
	return "memfd";
}

/*
 * ---- RAM mapped from files, known to the SIGBUS handler ----
 * A private mapping reads the file for every page the guest has not written; if the file shrinks,
 * touching such a page gives SIGBUS. vmon's own accesses (devices, snapshots) would then die as a
 * crash; the handler turns that into one line naming the file and a documented exit status.
 * A slot is in use while start is non-zero: set last when added, cleared first when removed.
 */
#define FILE_MAPPINGS_MAX 4

struct file_mapping {
	_Atomic(uintptr_t) start;
	uint64_t len;
	bool lost; /* post-copy RAM (guest_mem_watch_lost_pages), not a file */
	int fd;
	const char *path;
	uint64_t size;
};

static const char lost_message[] =
	"vmon: the VM touched guest RAM that post-copy could not bring from the source before it failed: the VM "
	"is lost (its newest pages exist only on the source); start it again from its disks\n";

static struct file_mapping file_mappings[FILE_MAPPINGS_MAX];
static pthread_mutex_t file_mappings_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t sigbus_once = PTHREAD_ONCE_INIT;
static struct sigaction previous_sigbus;

/* Appends s to buf (async-signal-safe); returns the new length. */
static size_t put_str(char *buf, size_t len, size_t pos, const char *s)
{
	while (*s && pos + 1 < len)
		buf[pos++] = *s++;
	buf[pos] = 0;
	return pos;
}

static size_t put_u64(char *buf, size_t len, size_t pos, uint64_t v)
{
	char digits[24];
	int n = 0;
	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	char s[24];
	for (int i = 0; i < n; i++)
		s[i] = digits[n - 1 - i];
	s[n] = 0;
	return put_str(buf, len, pos, s);
}

/* The one sentence for a shrunk file, built without stdio so the SIGBUS handler can use it. */
static void format_shrunk(char *buf, size_t len, const char *path, uint64_t now, uint64_t was)
{
	size_t pos = put_str(buf, len, 0, "guest RAM is mapped from ");
	pos = put_str(buf, len, pos, path);
	pos = put_str(buf, len, pos, ", which has shrunk to ");
	pos = put_u64(buf, len, pos, now);
	pos = put_str(buf, len, pos, " bytes (was ");
	pos = put_u64(buf, len, pos, was);
	put_str(buf, len, pos, "): the snapshot's memory file must not change while a VM restored from it runs");
}

static void on_sigbus(int sig, siginfo_t *info, void *ctx)
{
	(void)ctx;
	uintptr_t addr = (uintptr_t)info->si_addr;
	for (int i = 0; i < FILE_MAPPINGS_MAX && info->si_code > 0; i++) {
		const struct file_mapping *m = &file_mappings[i];
		uintptr_t start = atomic_load(&m->start);
		if (!start || addr < start || addr - start >= m->len)
			continue;
		if (m->lost) {
			ssize_t w = write(STDERR_FILENO, lost_message, sizeof(lost_message) - 1);
			(void)w;
			_exit(GUEST_MEM_EXIT_LOST);
		}
		struct stat st;
		uint64_t now = fstat(m->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
		char msg[PATH_MAX + 256];
		size_t pos = put_str(msg, sizeof(msg), 0, "vmon: ");
		format_shrunk(msg + pos, sizeof(msg) - pos, m->path, now, m->size);
		pos = put_str(msg, sizeof(msg), strlen(msg), "\n");
		ssize_t w = write(STDERR_FILENO, msg, pos);
		(void)w;
		_exit(GUEST_MEM_EXIT_FILE_SHRUNK);
	}
	/*
	 * Not guest RAM: hand the signal to whoever had it (the default action, or a sanitizer's
	 * report). A fault recurs when the instruction runs again; a sent signal is raised again.
	 */
	sigaction(sig, &previous_sigbus, NULL);
	if (info->si_code <= 0)
		raise(sig);
}

static void install_sigbus_handler(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &previous_sigbus);
}

static void watch_mapping(const struct guest_mem *mem, bool lost)
{
	pthread_once(&sigbus_once, install_sigbus_handler);
	pthread_mutex_lock(&file_mappings_lock);
	for (int i = 0; i < FILE_MAPPINGS_MAX; i++) {
		struct file_mapping *m = &file_mappings[i];
		if (atomic_load(&m->start))
			continue;
		m->lost = lost;
		m->len = mem->ram_size;
		m->fd = mem->fd;
		m->path = mem->path;
		m->size = mem->file_size;
		atomic_store(&m->start, (uintptr_t)mem->regions[0].host);
		break;
	}
	pthread_mutex_unlock(&file_mappings_lock);
}

static void watch_file_mapping(const struct guest_mem *mem)
{
	watch_mapping(mem, false);
}

void guest_mem_watch_lost_pages(const struct guest_mem *mem)
{
	if (mem->nregions)
		watch_mapping(mem, true);
}

static void unwatch_file_mapping(const struct guest_mem *mem)
{
	pthread_mutex_lock(&file_mappings_lock);
	for (int i = 0; i < FILE_MAPPINGS_MAX; i++)
		if (atomic_load(&file_mappings[i].start) == (uintptr_t)mem->regions[0].host)
			atomic_store(&file_mappings[i].start, 0);
	pthread_mutex_unlock(&file_mappings_lock);
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
	mem->path = strdup(path);
	mem->file_size = (uint64_t)st.st_size;
	if (!mem->path) {
		guest_mem_destroy(mem);
		return -ENOMEM;
	}
	watch_file_mapping(mem);
	return 0;
}

bool guest_mem_file_shrunk(const struct guest_mem *mem, uint64_t *now)
{
	struct stat st;
	if (!mem->file_backed || fstat(mem->fd, &st) < 0)
		return false;
	*now = (uint64_t)st.st_size;
	return *now < mem->ram_size;
}

int guest_mem_check_file(const struct guest_mem *mem, char *err, size_t errlen)
{
	uint64_t now;
	if (!guest_mem_file_shrunk(mem, &now))
		return 0;
	format_shrunk(err, errlen, mem->path, now, mem->file_size);
	return -EIO;
}

int guest_mem_explain_fault(const struct guest_mem *mem, char *err, size_t errlen)
{
	if (mem->backing != GUEST_MEM_HUGETLB || mem->file_backed)
		return guest_mem_check_file(mem, err, errlen);
	snprintf(err, errlen, "KVM could not get a 2 MiB page of guest RAM (hugepages=on): a page the balloon gave "
			      "back to the host is wanted again and the host's hugepage pool is empty; keep spare pages "
			      "in vm.nr_hugepages on hosts that balloon hugepage guests");
	return -EIO;
}

void guest_mem_destroy(struct guest_mem *mem)
{
	if (mem->nregions)
		unwatch_file_mapping(mem); /* a snapshot's file, or post-copy's RAM */
	if (mem->nregions > 0 && mem->regions[0].host)
		munmap(mem->regions[0].host, mem->ram_size);
	if (mem->fd >= 0)
		close(mem->fd);
	write_track_release(mem);
	free(mem->path);
	memset(mem, 0, sizeof(*mem));
	mem->fd = -1;
}

/* Host address of [gpa, gpa+len) if it lies in one region; checked once for both forms. */
static uint8_t *translate(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
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

const void *gpa_to_host(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	return translate(mem, gpa, len);
}

void *gpa_to_host_write(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	return translate(mem, gpa, len);
}

int guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len)
{
	const void *p = gpa_to_host(mem, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(dst, p, len);
	return 0;
}

int guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = gpa_to_host_write(mem, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(p, src, len);
	guest_mem_wrote(mem, p, len);
	return 0;
}

void guest_mem_wrote_iov(const struct guest_mem *mem, const struct iovec *iov, unsigned int iovcnt, uint64_t len)
{
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	if (!__atomic_load_n(&mem->tracking_writes, __ATOMIC_ACQUIRE))
		return;
	for (unsigned int i = 0; i < iovcnt && len > 0; i++) {
		uint64_t n = MIN((uint64_t)iov[i].iov_len, len);
		if (n)
			write_track_mark(mem, iov[i].iov_base, n);
		len -= n;
	}
}

int guest_mem_discard(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	if (len == 0 || gpa + len < gpa)
		return -EFAULT;
	uint64_t unit = guest_mem_page_size(mem);
	/* Regions start on a hugepage boundary, so a unit-aligned gpa is a unit-aligned offset. */
	uint64_t start = ALIGN_UP(gpa, unit), end = ALIGN_DOWN(gpa + len, unit);
	if (!gpa_to_host(mem, gpa, len))
		return -EFAULT;
	if (end <= start)
		return 0;
	uint8_t *host = gpa_to_host_write(mem, start, end - start);
	if ((uintptr_t)host % unit)
		return -EINVAL; /* RAM not mapped on page boundaries: only test rigs do that */
	/* madvise, not fallocate(PUNCH_HOLE): the same hole, and every thread's filter allows it. */
	int advice = mem->fd >= 0 && !mem->file_backed ? MADV_REMOVE : MADV_DONTNEED;
	if (madvise(host, end - start, advice) < 0)
		return -errno;
	/* The pages now read as zero (or as the snapshot): a migrating guest must find the same there. */
	guest_mem_wrote(mem, host, end - start);
	return 0;
}

int guest_mem_zero(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	uint8_t *host = gpa_to_host_write(mem, gpa, len);
	if (!host)
		return -EFAULT;
	uint64_t unit = guest_mem_page_size(mem);
	uint64_t start = ALIGN_UP(gpa, unit), end = ALIGN_DOWN(gpa + len, unit);
	/* A discarded page of a snapshot's file mapping reads the snapshot again, not zeros. */
	if (mem->file_backed || end <= start || guest_mem_discard(mem, gpa, len)) {
		memset(host, 0, len);
	} else {
		memset(host, 0, start - gpa);
		memset(host + (end - gpa), 0, gpa + len - end);
	}
	guest_mem_wrote(mem, host, len);
	return 0;
}

uint64_t guest_mem_low_end(const struct guest_mem *mem)
{
	return mem->nregions ? mem->regions[0].size : 0;
}
