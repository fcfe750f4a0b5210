#include "backends/disk_image.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/qcow2.h"
#include "lib/log.h"

#define COMP "disk"

struct disk_image {
	enum disk_format format;
	struct disk_uring *raw;   /* DISK_FORMAT_RAW */
	bool guard_first_sector;  /* probed as raw and writable: see disk_image.h */

	struct qcow2 *qcow2;      /* DISK_FORMAT_QCOW2 */
	char *path;
	bool readonly;
	int efd;
	unsigned int depth, in_flight;
	struct disk_request *done_head, **done_tail; /* finished, done() not yet run */
	struct log_ratelimit rl;
};

uint64_t disk_image_size(const struct disk_image *d)
{
	return d->raw ? disk_uring_size(d->raw) : qcow2_size(d->qcow2) & ~(uint64_t)(DISK_SECTOR_SIZE - 1);
}
bool disk_image_readonly(const struct disk_image *d) { return d->raw ? disk_uring_readonly(d->raw) : d->readonly; }
const char *disk_image_path(const struct disk_image *d) { return d->raw ? disk_uring_path(d->raw) : d->path; }
enum disk_format disk_image_format(const struct disk_image *d) { return d->format; }
int disk_image_event_fd(const struct disk_image *d) { return d->raw ? disk_uring_event_fd(d->raw) : d->efd; }
unsigned int disk_image_in_flight(const struct disk_image *d)
{
	return d->raw ? disk_uring_in_flight(d->raw) : d->in_flight;
}

static int open_qcow2(struct disk_image *d, int fd, const char *path, uint64_t bytes, bool readonly)
{
	if (d->efd < 0)
		d->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	free(d->path);
	if (d->efd < 0 || !(d->path = strdup(path))) {
		int err = d->efd < 0 ? errno : ENOMEM;
		close(fd);
		log_error(COMP, "disk image %s: cannot set up: %s", path, strerror(err));
		return -err;
	}
	struct qcow2_options opt = { .readonly = readonly };
	int rc = qcow2_open(fd, path, bytes, &opt, &d->qcow2);
	if (rc)
		return rc;
	if (qcow2_size(d->qcow2) < DISK_SECTOR_SIZE) {
		log_error(COMP, "qcow2 image %s has a virtual size under 512 bytes: resize it (qemu-img resize)", path);
		return -EINVAL;
	}
	return 0;
}

int disk_image_open(const char *path, enum disk_format format, bool readonly, unsigned int depth,
		    struct disk_image **out)
{
	if (depth == 0 || depth > 4096)
		return -EINVAL;
	struct disk_image *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->efd = -1;
	d->readonly = readonly;
	d->depth = depth;
	d->done_tail = &d->done_head;
	uint64_t bytes = 0;
	int fd = disk_file_open(path, readonly, &bytes);
	if (fd < 0) {
		free(d);
		return fd;
	}
	uint8_t magic[4] = { 0 };
	bool looks_qcow2 = pread(fd, magic, sizeof(magic), 0) == sizeof(magic) && qcow2_probe(magic, sizeof(magic));
	int rc;
	if (format == DISK_FORMAT_QCOW2 && !looks_qcow2) {
		close(fd);
		log_error(COMP, "disk image %s was given as format=qcow2 but has no qcow2 header: drop format=qcow2 "
				"or give the right file", path);
		rc = -EINVAL;
	} else if (format == DISK_FORMAT_QCOW2 || (format == DISK_FORMAT_AUTO && looks_qcow2)) {
		d->format = DISK_FORMAT_QCOW2;
		rc = open_qcow2(d, fd, path, bytes, readonly);
	} else {
		d->format = DISK_FORMAT_RAW;
		d->guard_first_sector = format == DISK_FORMAT_AUTO && !readonly;
		rc = disk_uring_open_fd(fd, path, bytes, readonly, depth, &d->raw);
	}
	if (rc) {
		disk_image_close(d);
		return rc;
	}
	*out = d;
	return 0;
}

uint64_t disk_image_max_file_size(const char *path, enum disk_format format)
{
	struct stat st;
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return 0;
	uint64_t n = (uint64_t)st.st_size;
	int fd = format == DISK_FORMAT_RAW ? -1 : open(path, O_RDONLY | O_CLOEXEC);
	uint8_t h[32];
	if (fd >= 0 && pread(fd, h, sizeof(h), 0) == sizeof(h) && qcow2_probe(h, sizeof(h))) {
		uint64_t virt = 0;
		for (int i = 24; i < 32; i++)
			virt = virt << 8 | h[i];
		uint64_t extra = (virt > (UINT64_MAX >> 2) ? (UINT64_MAX >> 2) : virt) * 2 + (64ULL << 20);
		n = n > UINT64_MAX - extra ? UINT64_MAX : n + extra;
	}
	if (fd >= 0)
		close(fd);
	return n;
}

void disk_image_close(struct disk_image *d)
{
	if (!d)
		return;
	if (d->raw)
		disk_uring_close(d->raw);
	else
		disk_image_drain(d);
	qcow2_close(d->qcow2);
	if (d->efd >= 0)
		close(d->efd);
	free(d->path);
	free(d);
}

/* A write that would start the first sector with the qcow2 magic (see disk_image.h). */
static bool writes_qcow2_magic(const struct disk_request *req)
{
	if (req->op != DISK_WRITE || req->offset >= 4)
		return false;
	uint8_t head[4];
	size_t n = 0, want = sizeof(head) - req->offset;
	for (int i = 0; i < req->iovcnt && n < want; i++) {
		size_t k = req->iov[i].iov_len < want - n ? req->iov[i].iov_len : want - n;
		memcpy(head + req->offset + n, req->iov[i].iov_base, k);
		n += k;
	}
	if (n < want)
		return false;
	/* Bytes before the write's start keep the magic's shape only if they already match it. */
	static const uint8_t magic[4] = { 'Q', 'F', 'I', 0xfb };
	return !memcmp(head + req->offset, magic + req->offset, want);
}

static int run_qcow2(struct disk_image *d, struct disk_request *req)
{
	uint64_t off = req->offset;
	int rc = 0;
	switch (req->op) {
	case DISK_READ:
	case DISK_WRITE:
		for (int i = 0; !rc && i < req->iovcnt; i++) {
			rc = req->op == DISK_READ ? qcow2_read(d->qcow2, off, req->iov[i].iov_base, req->iov[i].iov_len)
						  : qcow2_write(d->qcow2, off, req->iov[i].iov_base, req->iov[i].iov_len);
			off += req->iov[i].iov_len;
		}
		if (!rc && req->op == DISK_WRITE && req->dsync)
			rc = qcow2_flush(d->qcow2);
		return rc;
	case DISK_FLUSH:
		return qcow2_flush(d->qcow2);
	case DISK_DISCARD:
		return qcow2_discard(d->qcow2, req->offset, req->len);
	case DISK_WRITE_ZEROES:
		return qcow2_write_zeroes(d->qcow2, req->offset, req->len);
	}
	return -EINVAL;
}

int disk_image_queue(struct disk_image *d, struct disk_request *req)
{
	if (d->guard_first_sector && req->op == DISK_WRITE && writes_qcow2_magic(req)) {
		log_warn_ratelimited(&d->rl, COMP, "disk image %s: refused a guest write that would make the raw image "
				     "look like qcow2 (its format was probed); give --disk %s,format=raw to allow it",
				     disk_uring_path(d->raw), disk_uring_path(d->raw));
		return -EPERM;
	}
	if (d->raw)
		return disk_uring_queue(d->raw, req);
	if (d->in_flight >= d->depth)
		return -EBUSY;
	int rc = disk_request_prepare(req, d->readonly);
	if (rc)
		return rc;
	rc = run_qcow2(d, req);
	if (rc)
		log_warn_ratelimited(&d->rl, COMP, "qcow2 image %s: a request at byte %llu failed: %s", d->path,
				     (unsigned long long)req->offset, strerror(-rc));
	req->moved = rc ? 0 : req->len;
	req->result = rc;
	req->next = NULL;
	*d->done_tail = req;
	d->done_tail = &req->next;
	d->in_flight++;
	return 0;
}

int disk_image_submit(struct disk_image *d) { return d->raw ? disk_uring_submit(d->raw) : 0; }

void disk_image_wake(struct disk_image *d)
{
	if (d->raw) {
		disk_uring_wake(d->raw);
		return;
	}
	uint64_t one = 1;
	if (write(d->efd, &one, sizeof(one)) < 0)
		log_warn_ratelimited(&d->rl, COMP, "disk image %s: writing the completion eventfd: %s", d->path,
				     strerror(errno));
}

/* Runs done() of every finished qcow2 request; ones queued meanwhile wait for the next round. */
static void finish_qcow2(struct disk_image *d)
{
	struct disk_request *req = d->done_head;
	d->done_head = NULL;
	d->done_tail = &d->done_head;
	while (req) {
		struct disk_request *next = req->next;
		d->in_flight--;
		req->done(req, req->result);
		req = next;
	}
}

void disk_image_complete(struct disk_image *d)
{
	if (d->raw) {
		disk_uring_complete(d->raw);
		return;
	}
	uint64_t n;
	if (read(d->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_warn_ratelimited(&d->rl, COMP, "disk image %s: reading the completion eventfd: %s", d->path,
				     strerror(errno));
	finish_qcow2(d);
}

void disk_image_drain(struct disk_image *d)
{
	if (d->raw) {
		disk_uring_drain(d->raw);
		return;
	}
	while (d->done_head)
		finish_qcow2(d);
}

/*
 * Freezes the current top in place: what the guest wrote is on stable storage and the top is
 * read from now on. Fills *below with the open layer, so the overlay goes above it without the
 * file being opened again: under Landlock the thread that snapshots may open nothing outside the
 * snapshot directories. A raw top keeps its exclusive lock until the switch succeeds.
 */
static int freeze_top(struct disk_image *d, struct qcow2_layer *below)
{
	*below = (struct qcow2_layer){ .raw_fd = -1 };
	if (d->qcow2) {
		int rc = qcow2_make_readonly(d->qcow2);
		below->qcow2 = rc ? NULL : d->qcow2;
		return rc;
	}
	int fd = disk_uring_dup_fd(d->raw);
	if (fd < 0)
		return fd;
	/* io_uring wrote through the page cache of the same inode: fsync of any descriptor flushes it. */
	if (fsync(fd) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	below->raw_fd = fd;
	below->raw_size = disk_uring_size(d->raw);
	return 0;
}

static void thaw_top(struct disk_image *d, struct qcow2_layer *below)
{
	if (d->qcow2 && qcow2_make_writable(d->qcow2))
		log_warn(COMP, "disk image %s: cannot take back its exclusive lock after the failed switch: another "
			       "process may open it now", disk_image_path(d));
	if (below->raw_fd >= 0)
		close(below->raw_fd);
}

/* The overlay at new_path, open, its backing layer below: the image now serves it. */
static int open_overlay(struct disk_image *d, const char *new_path, struct qcow2_layer *below)
{
	char *path = strdup(new_path);
	if (d->efd < 0)
		d->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!path || d->efd < 0) {
		free(path);
		return -ENOMEM;
	}
	uint64_t bytes = 0;
	int fd = disk_file_open(new_path, false, &bytes);
	if (fd < 0) {
		free(path);
		return fd;
	}
	struct qcow2_options opt = { .below = below };
	struct qcow2 *q;
	int rc = qcow2_open(fd, new_path, bytes, &opt, &q);
	if (rc) {
		free(path);
		return rc;
	}
	if (d->raw) {
		disk_uring_close(d->raw); /* its fd goes; the duplicate below keeps the file and its lock */
		d->raw = NULL;
		if (flock(below->raw_fd, LOCK_SH | LOCK_NB) < 0)
			log_warn(COMP, "disk image %s: cannot share its lock now that it is read-only: %s", new_path,
				 strerror(errno));
	}
	free(d->path);
	d->path = path;
	d->qcow2 = q;
	d->format = DISK_FORMAT_QCOW2;
	d->guard_first_sector = false; /* the overlay names its backing format: no probing any more */
	return 0;
}

int disk_image_reopen_onto_overlay(struct disk_image *d, const char *new_path)
{
	const char *path = disk_image_path(d);
	if (disk_image_readonly(d)) {
		log_error(COMP, "disk image %s is read-only: it needs no overlay to be frozen", path);
		return -EROFS;
	}
	if (disk_image_in_flight(d)) {
		log_error(COMP, "disk image %s has requests in flight: the VM must be paused and its disks drained "
				"before switching to an overlay", path);
		return -EBUSY;
	}
	struct stat st;
	char top[PATH_MAX];
	if (stat(path, &st) < 0 || !realpath(path, top)) {
		int err = errno;
		log_error(COMP, "disk image %s cannot be found any more: %s", path, strerror(err));
		return -err;
	}
	if (!S_ISREG(st.st_mode)) {
		log_error(COMP, "disk image %s is not a file on a file system (a block device?): it cannot become the "
				"backing file of a qcow2 overlay; snapshot with --disks=none and copy the device yourself",
			  path);
		return -ENOTSUP;
	}
	bool was_qcow2 = d->format == DISK_FORMAT_QCOW2;
	uint64_t size = was_qcow2 ? qcow2_size(d->qcow2) : disk_uring_size(d->raw);
	struct qcow2_layer below;
	int rc = freeze_top(d, &below);
	if (rc) {
		log_error(COMP, "disk image %s: flushing it before the switch to an overlay failed: %s", path,
			  strerror(-rc));
		return rc;
	}
	rc = qcow2_create_overlay_sized(new_path, top, was_qcow2 ? "qcow2" : "raw", size);
	if (!rc && (rc = open_overlay(d, new_path, &below))) {
		unlink(new_path);
		log_error(COMP, "disk image %s: the new overlay %s could not be opened (%s); the VM continues on the "
				"old image", top, new_path, strerror(-rc));
	}
	if (rc) {
		thaw_top(d, &below);
		return rc;
	}
	log_info(COMP, "disk image %s is now a read-only layer; new writes go to the overlay %s", top, new_path);
	return 0;
}

static int set_top_lock(struct disk_image *d, int how)
{
	if (d->qcow2)
		return qcow2_set_lock(d->qcow2, how);
	/* A second descriptor shares the open file's flock: locking through it locks the image. */
	int fd = disk_uring_dup_fd(d->raw);
	if (fd < 0)
		return fd;
	int rc = flock(fd, how | LOCK_NB) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

int disk_image_hand_over(struct disk_image *d)
{
	return disk_image_readonly(d) ? 0 : set_top_lock(d, LOCK_UN);
}

int disk_image_take_back(struct disk_image *d)
{
	return disk_image_readonly(d) ? 0 : set_top_lock(d, LOCK_EX);
}

int disk_image_flush(struct disk_image *d)
{
	if (d->qcow2)
		return qcow2_flush(d->qcow2);
	int fd = disk_uring_dup_fd(d->raw);
	if (fd < 0)
		return fd;
	int rc = fdatasync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}
