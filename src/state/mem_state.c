#include "state/mem_state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "lib/user_file.h"
#include "lib/log.h"
#include "lib/util.h"
#include "memory/kvm_slots.h"
#include "memory/present_pages.h"
#include "vm/vm.h"

#define PAGE 4096u
#define CHUNK_PAGES PRESENT_PAGES_CHUNK /* 2 MiB per pass */
#define MEM_MAGIC "VMONMEM1"
#define MEM_VERSION 1u
#define PROGRESS_STEP (256 * MiB)

struct mem_trailer {
	char magic[8];
	uint32_t version;
	uint32_t page_size;
	uint64_t ram_size;
	uint64_t snapshot_id;
	uint32_t crc;   /* CRC32 of the fields up to ram_crc, with crc = 0 */
	uint32_t flags; /* 0 in files of vmon releases that wrote no RAM checksum */
	/*
	 * CRC32 of the ram_size bytes of RAM before the trailer, if flags has MEM_FLAG_RAM_CRC. Past
	 * the trailer's own checksum, so older vmon releases still read these files; a damaged
	 * ram_crc shows as a mismatch under vmon restore --verify.
	 */
	uint32_t ram_crc;
};

#define MEM_FLAG_RAM_CRC 1u
#define TRAILER_CRC_LEN offsetof(struct mem_trailer, ram_crc)

static uint32_t trailer_crc(struct mem_trailer t)
{
	t.crc = 0;
	return (uint32_t)crc32(0L, (const Bytef *)&t, TRAILER_CRC_LEN);
}

/*
 * CRC32 of guest RAM, which the memory file holds with its all-zero pages left as holes: runs of
 * zeros are added with crc32_combine, a MiB at a time, rather than by reading them.
 */
static const uint8_t zero_page[PAGE];

static uLong crc_zeros(uLong crc, uint64_t len)
{
	static uLong zero_mib_crc;
	static bool have_zero_mib_crc;
	if (!have_zero_mib_crc) {
		uLong c = crc32(0L, Z_NULL, 0);
		for (unsigned int i = 0; i < MiB / PAGE; i++)
			c = crc32(c, zero_page, PAGE);
		zero_mib_crc = c;
		have_zero_mib_crc = true;
	}
	for (; len >= MiB; len -= MiB)
		crc = crc32_combine(crc, zero_mib_crc, (z_off_t)MiB);
	for (; len > 0; len -= MIN(len, (uint64_t)PAGE))
		crc = crc32(crc, zero_page, (uInt)MIN(len, (uint64_t)PAGE));
	return crc;
}

static uLong crc_data(uLong crc, const uint8_t *p, size_t len)
{
	for (size_t n; len > 0; p += n, len -= n) {
		n = MIN(len, (size_t)1 << 30); /* zlib takes uInt lengths */
		crc = crc32(crc, p, (uInt)n);
	}
	return crc;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;
	for (unsigned int i = 0; i < PAGE / 8; i++)
		if (w[i])
			return false;
	return true;
}

static int write_all(int fd, const uint8_t *p, size_t len, off_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/*
 * RAM mapped from a snapshot's memory file reads the file for every page the guest has not
 * written: if the file shrank, those pages are gone (the scan would see holes past the end and
 * write an empty snapshot), so refuse before copying anything.
 */
static int check_backing_file(const struct guest_mem *mem, char *err, size_t errlen)
{
	uint64_t now;
	if (!guest_mem_file_shrunk(mem, &now))
		return 0;
	return err_fail(err, errlen, -EIO,
		    "the memory file %s this VM was restored from has shrunk to %llu bytes while the VM ran "
		    "(its RAM needs %llu): the guest memory it held is lost, so no snapshot was written; "
		    "never truncate or rewrite a snapshot's memory file while a VM restored from it runs",
		    mem->path, (unsigned long long)now, (unsigned long long)mem->ram_size);
}

int mem_state_write(const struct guest_mem *mem, int fd, uint64_t snapshot_id, char *err, size_t errlen)
{
	uint64_t total = mem->ram_size;
	int brc = check_backing_file(mem, err, errlen);
	if (brc)
		return brc;
	if (ftruncate(fd, (off_t)(total + MEM_TRAILER_SIZE)) < 0)
		return err_fail(err, errlen, -errno, "cannot size the memory file: %s", strerror(errno));
	/* Untouched RAM is neither read (which would allocate it) nor written (present_pages.h). */
	struct present_pages ps;
	present_pages_open(&ps, mem);
	uint64_t written = 0, next_report = PROGRESS_STEP;
	bool report = total >= 2 * PROGRESS_STEP;
	int rc = 0;
	bool want[CHUNK_PAGES];
	uLong ram_crc = crc32(0L, Z_NULL, 0);
	uint64_t zeros = 0; /* zero bytes since the last data, not yet in ram_crc */
	for (int r = 0; r < mem->nregions && !rc; r++) {
		const struct guest_mem_region *reg = &mem->regions[r];
		for (uint64_t o = 0; o < reg->size && !rc; o += (uint64_t)CHUNK_PAGES * PAGE) {
			unsigned int n = (unsigned int)MIN((uint64_t)CHUNK_PAGES, (reg->size - o) / PAGE);
			const uint8_t *host = reg->host + o;
			uint64_t file_off = reg->fd_offset + o;
			present_pages_scan(&ps, reg, o, n, want);
			/* Runs of non-zero pages go out in one write each; the checksum follows the file. */
			unsigned int i = 0;
			while (i < n && !rc) {
				if (!want[i] || page_is_zero(host + (uint64_t)i * PAGE)) {
					zeros += PAGE;
					i++;
					continue;
				}
				unsigned int j = i + 1;
				while (j < n && want[j] && !page_is_zero(host + (uint64_t)j * PAGE))
					j++;
				ram_crc = crc_data(crc_zeros(ram_crc, zeros), host + (uint64_t)i * PAGE,
						   (size_t)(j - i) * PAGE);
				zeros = 0;
				rc = write_all(fd, host + (uint64_t)i * PAGE, (size_t)(j - i) * PAGE,
					       (off_t)(file_off + (uint64_t)i * PAGE));
				written += (uint64_t)(j - i) * PAGE;
				i = j;
			}
			uint64_t done = reg->fd_offset + o + (uint64_t)n * PAGE;
			if (report && done >= next_report) {
				log_info("snapshot", "guest memory: %llu of %llu MiB scanned, %llu MiB written",
					 (unsigned long long)(done / MiB), (unsigned long long)(total / MiB),
					 (unsigned long long)(written / MiB));
				next_report += PROGRESS_STEP;
			}
		}
	}
	present_pages_close(&ps);
	if (rc)
		return err_fail(err, errlen, rc, "cannot write the memory file: %s", strerror(-rc));

	uint8_t page[MEM_TRAILER_SIZE];
	memset(page, 0, sizeof(page));
	struct mem_trailer t = { .version = MEM_VERSION, .page_size = PAGE, .ram_size = total,
				 .snapshot_id = snapshot_id, .flags = MEM_FLAG_RAM_CRC,
				 .ram_crc = (uint32_t)crc_zeros(ram_crc, zeros) };
	memcpy(t.magic, MEM_MAGIC, sizeof(t.magic));
	t.crc = trailer_crc(t);
	memcpy(page, &t, sizeof(t));
	if ((rc = write_all(fd, page, sizeof(page), (off_t)total)))
		return err_fail(err, errlen, rc, "cannot write the memory file: %s", strerror(-rc));
	log_debug("snapshot", "guest memory: %llu MiB of %llu MiB held data", (unsigned long long)(written / MiB),
		  (unsigned long long)(total / MiB));
	return 0;
}

int mem_state_check(const char *path, uint64_t ram_size, uint64_t snapshot_id, char *err, size_t errlen)
{
	int fd = open_regular_file(path, "the snapshot's memory file", O_RDONLY, err, errlen);
	if (fd < 0)
		return fd;
	off_t size = lseek(fd, 0, SEEK_END);
	struct mem_trailer t;
	int rc = 0;
	if (size < 0 || (uint64_t)size != ram_size + MEM_TRAILER_SIZE)
		rc = err_fail(err, errlen, -EINVAL,
			  "the memory file %s has %lld bytes where %llu were expected: it is truncated or belongs to "
			  "another snapshot",
			  path, (long long)size, (unsigned long long)(ram_size + MEM_TRAILER_SIZE));
	else if (pread(fd, &t, sizeof(t), (off_t)ram_size) != (ssize_t)sizeof(t))
		rc = err_fail(err, errlen, -EIO, "cannot read the memory file %s: %s", path, strerror(errno));
	else if (memcmp(t.magic, MEM_MAGIC, sizeof(t.magic)) || t.crc != trailer_crc(t))
		rc = err_fail(err, errlen, -EINVAL, "the memory file %s is corrupted (bad trailer)", path);
	else if (t.version != MEM_VERSION || t.page_size != PAGE)
		rc = err_fail(err, errlen, -EPROTO, "the memory file %s has format version %u; this vmon reads version %u", path,
			  t.version, MEM_VERSION);
	else if (t.snapshot_id != snapshot_id || t.ram_size != ram_size)
		rc = err_fail(err, errlen, -EINVAL,
			  "the memory file %s belongs to another snapshot than the state file next to it: the snapshot "
			  "directory was damaged or mixed up",
			  path);
	close(fd);
	return rc;
}

/* CRC32 of the first len bytes of fd, reading only its data extents. 0 or -errno. */
static int crc_file(int fd, uint64_t len, uint32_t *out)
{
	size_t buflen = (size_t)CHUNK_PAGES * PAGE;
	uint8_t *buf = malloc(buflen);
	if (!buf)
		return -ENOMEM;
	uLong crc = crc32(0L, Z_NULL, 0);
	uint64_t at = 0;
	int rc = 0;
	while (at < len && !rc) {
		off_t data = lseek(fd, (off_t)at, SEEK_DATA);
		off_t hole = data < 0 ? -1 : lseek(fd, data, SEEK_HOLE);
		if (data < 0 && errno != ENXIO) {
			rc = -errno;
			break;
		}
		uint64_t start = data < 0 ? len : MIN((uint64_t)data, len);
		uint64_t end = hole < 0 ? len : MIN((uint64_t)hole, len);
		crc = crc_zeros(crc, start - at);
		for (at = start; at < end && !rc;) {
			ssize_t n = pread(fd, buf, (size_t)MIN((uint64_t)buflen, end - at), (off_t)at);
			if (n <= 0)
				rc = n < 0 ? (errno == EINTR ? 0 : -errno) : -EIO;
			else {
				crc = crc32(crc, buf, (uInt)n);
				at += (uint64_t)n;
			}
		}
	}
	free(buf);
	*out = (uint32_t)crc;
	return rc;
}

int mem_state_verify(const char *path, uint64_t ram_size, char *err, size_t errlen)
{
	int fd = open_regular_file(path, "the snapshot's memory file", O_RDONLY, err, errlen);
	if (fd < 0)
		return fd;
	struct mem_trailer t;
	uint32_t crc = 0;
	int rc = 0;
	errno = 0;
	if (pread(fd, &t, sizeof(t), (off_t)ram_size) != (ssize_t)sizeof(t))
		rc = err_fail(err, errlen, -EIO, "cannot read the memory file %s: %s", path,
			  errno ? strerror(errno) : "it is truncated");
	else if (!(t.flags & MEM_FLAG_RAM_CRC))
		rc = err_fail(err, errlen, -ENODATA,
			  "the memory file %s has no checksum to verify: the snapshot was written by an older vmon; "
			  "restore it without --verify, or take a new snapshot",
			  path);
	else if ((rc = crc_file(fd, ram_size, &crc)))
		rc = err_fail(err, errlen, rc, "cannot read the memory file %s: %s", path, strerror(-rc));
	else if (crc != t.ram_crc)
		rc = err_fail(err, errlen, -EBADMSG,
			  "memory file %s does not match the checksum written with the snapshot: it was changed or "
			  "damaged",
			  path);
	close(fd);
	return rc;
}

static int set_slots(struct vm *vm, bool remove)
{
	for (int i = 0; i < vm->mem.nregions; i++) {
		int rc = kvm_slot_set(vm->vm_fd, &vm->mem, i, false, remove);
		if (rc)
			return rc;
	}
	return 0;
}

int mem_state_map(struct vm *vm, const char *path, char *err, size_t errlen)
{
	uint64_t ram = vm->mem.ram_size;
	int rc = set_slots(vm, true);
	if (rc)
		return err_fail(err, errlen, rc, "KVM would not release the VM's memory slots: %s", strerror(-rc));
	bool merge = vm->mem.mergeable;
	guest_mem_destroy(&vm->mem);
	rc = guest_mem_init_from_file(&vm->mem, ram, path);
	if (rc)
		return err_fail(err, errlen, rc, "cannot map the memory file %s: %s", path, strerror(-rc));
	/* merge=on still holds: what the restored guest writes are private pages KSM may merge. */
	if (merge && (rc = guest_mem_make_mergeable(&vm->mem)))
		return err_fail(err, errlen, rc, "cannot offer the restored guest memory to KSM (merge=on): %s", strerror(-rc));
	rc = set_slots(vm, false);
	if (rc)
		return err_fail(err, errlen, rc, "KVM refused the snapshot's guest memory: %s", strerror(-rc));
	return 0;
}

int mem_state_adopt(struct vm *vm, struct guest_mem *ram, char *err, size_t errlen)
{
	if (ram->ram_size != vm->mem.ram_size)
		return err_fail(err, errlen, -EINVAL, "the received guest RAM (%llu bytes) is not the VM's (%llu bytes)",
				(unsigned long long)ram->ram_size, (unsigned long long)vm->mem.ram_size);
	int rc = set_slots(vm, true);
	if (rc)
		return err_fail(err, errlen, rc, "KVM would not release the VM's memory slots: %s", strerror(-rc));
	guest_mem_destroy(&vm->mem);
	vm->mem = *ram;
	memset(ram, 0, sizeof(*ram));
	ram->fd = -1;
	rc = set_slots(vm, false);
	if (rc)
		return err_fail(err, errlen, rc, "KVM refused the received guest memory: %s", strerror(-rc));
	return 0;
}
