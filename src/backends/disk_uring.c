#include "backends/disk_uring.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"

#define COMP "disk"
/* An -EAGAIN/-EINTR completion is resubmitted at most this often before it is an error. */
#define MAX_RETRIES 16

struct disk_uring {
	char *path;
	int fd;
	int efd;
	bool readonly;
	bool ring_ready;
	uint64_t size;
	unsigned int depth;
	unsigned int in_flight;
	struct io_uring ring;
	struct log_ratelimit rl;
};

uint64_t disk_uring_size(const struct disk_uring *d) { return d->size; }
bool disk_uring_readonly(const struct disk_uring *d) { return d->readonly; }
const char *disk_uring_path(const struct disk_uring *d) { return d->path; }
int disk_uring_event_fd(const struct disk_uring *d) { return d->efd; }
unsigned int disk_uring_in_flight(const struct disk_uring *d) { return d->in_flight; }

int disk_uring_dup_fd(const struct disk_uring *d)
{
	int fd = fcntl(d->fd, F_DUPFD_CLOEXEC, 0);
	return fd < 0 ? -errno : fd;
}

static int open_error(const char *path, bool readonly, int err)
{
	switch (err) {
	case ENOENT:
		log_error(COMP, "disk image %s does not exist: create it first (e.g. truncate -s 1G %s) or fix the path",
			  path, path);
		break;
	case EISDIR:
		log_error(COMP, "disk image %s is a directory: give the path of an image file or a block device", path);
		break;
	case EACCES:
	case EPERM:
		if (readonly)
			log_error(COMP, "disk image %s cannot be read (%s): fix its permissions", path, strerror(err));
		else
			log_error(COMP, "disk image %s cannot be opened for writing (%s): fix its permissions or add ,readonly",
				  path, strerror(err));
		break;
	case EROFS:
		log_error(COMP, "disk image %s is on a read-only file system: add ,readonly to use it read-only", path);
		break;
	case EBUSY:
		log_error(COMP, "block device %s is in use on the host (mounted?): unmount it or add ,readonly", path);
		break;
	default:
		log_error(COMP, "cannot open disk image %s: %s", path, strerror(err));
		break;
	}
	return -err;
}

static int open_locked(const char *path, bool readonly, uint64_t *bytes)
{
	struct stat st;
	bool is_blk = stat(path, &st) == 0 && S_ISBLK(st.st_mode);
	int flags = (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	if (is_blk && !readonly)
		flags |= O_EXCL; /* fails while the host has the device mounted */
	int fd = open(path, flags);
	if (fd < 0)
		return open_error(path, readonly, errno);
	int rc = 0;
	if (fstat(fd, &st) < 0)
		rc = open_error(path, readonly, errno);
	else if (S_ISDIR(st.st_mode))
		rc = open_error(path, readonly, EISDIR);
	else if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		log_error(COMP, "disk image %s is neither a regular file nor a block device", path);
		rc = -EINVAL;
	} else if (flock(fd, (readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		int err = errno;
		if (err == EWOULDBLOCK)
			log_error(COMP, "disk image %s is in use by another process (another VM has it locked%s): stop "
					"that VM or give this one a copy of the image",
				  path, readonly ? " for writing" : "");
		else
			log_error(COMP, "cannot lock disk image %s: %s", path, strerror(err));
		rc = -(err == EWOULDBLOCK ? EBUSY : err);
	} else {
		*bytes = (uint64_t)st.st_size;
		if (S_ISBLK(st.st_mode) && ioctl(fd, BLKGETSIZE64, bytes) < 0) {
			rc = -errno;
			log_error(COMP, "cannot read the size of block device %s: %s", path, strerror(-rc));
		}
	}
	if (rc) {
		close(fd);
		return rc;
	}
	return fd;
}

int disk_file_open(const char *path, bool readonly, uint64_t *bytes)
{
	int fd = open_locked(path, readonly, bytes);
	if (fd >= 0 && *bytes < DISK_SECTOR_SIZE) {
		close(fd);
		log_error(COMP, "disk image %s is smaller than one 512-byte sector: give it a size (e.g. truncate -s 1G %s)",
			  path, path);
		return -EINVAL;
	}
	return fd;
}

static int size_image(struct disk_uring *d, const char *path, uint64_t bytes);

/* Opens, type-checks, locks and sizes the image. */
static int open_image(struct disk_uring *d, const char *path)
{
	uint64_t bytes = 0;
	d->fd = disk_file_open(path, d->readonly, &bytes);
	if (d->fd < 0)
		return d->fd;
	return size_image(d, path, bytes);
}

static int size_image(struct disk_uring *d, const char *path, uint64_t bytes)
{
	if (bytes < DISK_SECTOR_SIZE) {
		log_error(COMP, "disk image %s is smaller than one 512-byte sector: give it a size (e.g. truncate -s 1G %s)",
			  path, path);
		return -EINVAL;
	}
	if (bytes % DISK_SECTOR_SIZE)
		log_warn(COMP, "disk image %s is %llu bytes, not a multiple of 512: the guest sees only the first %llu "
			       "bytes",
			 path, (unsigned long long)bytes, (unsigned long long)(bytes - bytes % DISK_SECTOR_SIZE));
	d->size = bytes - bytes % DISK_SECTOR_SIZE;
	return 0;
}

static int setup_ring(struct disk_uring *d)
{
	int rc = io_uring_queue_init(d->depth, &d->ring, 0);
	if (rc < 0) {
		log_error(COMP, "cannot set up io_uring for disk image %s: %s (io_uring may be disabled on this host: "
				"see sysctl kernel.io_uring_disabled)",
			  d->path, strerror(-rc));
		return rc;
	}
	d->ring_ready = true;
	d->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->efd < 0) {
		rc = -errno;
		log_error(COMP, "cannot create the completion eventfd for disk image %s: %s", d->path, strerror(-rc));
		return rc;
	}
	rc = io_uring_register_eventfd(&d->ring, d->efd);
	if (rc < 0)
		log_error(COMP, "cannot register the completion eventfd for disk image %s: %s", d->path, strerror(-rc));
	return rc;
}

static int open_common(const char *path, int fd, uint64_t bytes, bool readonly, unsigned int depth,
		       struct disk_uring **out)
{
	if (depth == 0 || depth > 4096) {
		if (fd >= 0)
			close(fd);
		return -EINVAL;
	}
	struct disk_uring *d = calloc(1, sizeof(*d));
	if (!d || !(d->path = strdup(path))) {
		free(d);
		if (fd >= 0)
			close(fd);
		return -ENOMEM;
	}
	d->fd = fd;
	d->efd = -1;
	d->readonly = readonly;
	d->depth = depth;
	int rc = fd < 0 ? open_image(d, path) : size_image(d, path, bytes);
	if (!rc)
		rc = setup_ring(d);
	if (rc) {
		disk_uring_close(d);
		return rc;
	}
	*out = d;
	return 0;
}

int disk_uring_open(const char *path, bool readonly, unsigned int depth, struct disk_uring **out)
{
	return open_common(path, -1, 0, readonly, depth, out);
}

int disk_uring_open_fd(int fd, const char *path, uint64_t bytes, bool readonly, unsigned int depth,
		       struct disk_uring **out)
{
	return open_common(path, fd, bytes, readonly, depth, out);
}

void disk_uring_close(struct disk_uring *d)
{
	if (!d)
		return;
	if (d->ring_ready) {
		disk_uring_drain(d);
		io_uring_queue_exit(&d->ring);
	}
	if (d->efd >= 0)
		close(d->efd);
	if (d->fd >= 0)
		close(d->fd); /* drops the flock */
	free(d->path);
	free(d);
}

/* Fills an SQE for what remains of req. */
static int prep(struct disk_uring *d, struct disk_request *req)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&d->ring);
	if (!sqe) {
		io_uring_submit(&d->ring);
		if (!(sqe = io_uring_get_sqe(&d->ring)))
			return -EBUSY;
	}
	switch (req->op) {
	case DISK_READ:
		io_uring_prep_readv(sqe, d->fd, req->iov, (unsigned int)req->iovcnt, req->offset + req->moved);
		break;
	case DISK_WRITE:
		io_uring_prep_writev(sqe, d->fd, req->iov, (unsigned int)req->iovcnt, req->offset + req->moved);
		if (req->dsync)
			sqe->rw_flags = RWF_DSYNC;
		break;
	case DISK_FLUSH:
		io_uring_prep_fsync(sqe, d->fd, IORING_FSYNC_DATASYNC);
		break;
	case DISK_DISCARD:
		io_uring_prep_fallocate(sqe, d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, req->offset, req->len);
		break;
	case DISK_WRITE_ZEROES:
		io_uring_prep_fallocate(sqe, d->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, req->offset, req->len);
		break;
	}
	io_uring_sqe_set_data(sqe, req);
	return 0;
}

int disk_request_prepare(struct disk_request *req, bool readonly)
{
	if (readonly && req->op != DISK_READ && req->op != DISK_FLUSH)
		return -EINVAL;
	if (req->op == DISK_READ || req->op == DISK_WRITE) {
		if (req->iovcnt < 0 || req->iovcnt > IOV_MAX)
			return -EINVAL;
		req->len = 0;
		for (int i = 0; i < req->iovcnt; i++)
			req->len += req->iov[i].iov_len;
	}
	return 0;
}

int disk_uring_queue(struct disk_uring *d, struct disk_request *req)
{
	if (d->in_flight >= d->depth)
		return -EBUSY;
	int rc = disk_request_prepare(req, d->readonly);
	if (rc)
		return rc;
	req->moved = 0;
	req->retries = 0;
	req->iov_given = req->iov;
	req->iovcnt_given = req->iovcnt;
	req->clipped = NULL;
	rc = prep(d, req);
	if (!rc)
		d->in_flight++;
	return rc;
}

int disk_uring_submit(struct disk_uring *d)
{
	int rc = io_uring_submit(&d->ring);
	if (rc < 0) {
		log_warn_ratelimited(&d->rl, COMP, "disk image %s: submitting I/O failed: %s", d->path, strerror(-rc));
		return rc;
	}
	return 0;
}

/* Puts back the entry a short transfer shortened, if any. */
static void unclip(struct disk_request *req)
{
	if (req->clipped)
		*req->clipped = req->clipped_was;
	req->clipped = NULL;
}

/*
 * Drops the first n bytes of the request's iovec array, shortening at most one entry at a time,
 * so that give_back_iov() can hand the caller its array as it was: a device marks the guest pages
 * a read filled from it (migration's dirty tracking), including those of the first transfers.
 */
static void advance(struct disk_request *req, uint64_t n)
{
	while (n && req->iovcnt > 0 && n >= req->iov[0].iov_len) {
		n -= req->iov[0].iov_len;
		if (req->clipped == req->iov)
			unclip(req);
		req->iov++;
		req->iovcnt--;
	}
	if (n && req->iovcnt > 0) {
		if (req->clipped != req->iov) {
			req->clipped = req->iov;
			req->clipped_was = req->iov[0];
		}
		req->iov[0].iov_base = (uint8_t *)req->iov[0].iov_base + n;
		req->iov[0].iov_len -= n;
	}
}

static void give_back_iov(struct disk_request *req)
{
	unclip(req);
	req->iov = req->iov_given;
	req->iovcnt = req->iovcnt_given;
}

/* Handles one completion; returns true if the request went back to the kernel. */
static bool finish(struct disk_uring *d, struct disk_request *req, int res)
{
	if ((res == -EAGAIN || res == -EINTR) && req->retries < MAX_RETRIES) {
		req->retries++;
		if (!prep(d, req))
			return true;
	}
	bool rw = req->op == DISK_READ || req->op == DISK_WRITE;
	if (rw && res > 0 && req->moved + (uint64_t)res < req->len) {
		/* A short transfer: continue with the rest. */
		req->moved += (uint64_t)res;
		advance(req, (uint64_t)res);
		if (!prep(d, req))
			return true;
		res = -EIO;
	} else if (rw && res >= 0) {
		req->moved += (uint64_t)res;
		if (req->moved < req->len)
			res = -EIO; /* end of file inside the disk: the image shrank under us */
		else
			res = 0;
	}
	if (req->op == DISK_DISCARD && (res == -EOPNOTSUPP || res == -ENOTSUP))
		res = 0; /* discard is a hint: a file system without hole punching keeps the data */
	if (res > 0)
		res = 0;
	if (res < 0)
		log_warn_ratelimited(&d->rl, COMP, "disk image %s: %s failed: %s", d->path,
				     req->op == DISK_READ ? "a read" : req->op == DISK_WRITE ? "a write"
								       : req->op == DISK_FLUSH ? "a flush"
				     : req->op == DISK_DISCARD ? "a discard" : "zeroing a range",
				     strerror(-res));
	d->in_flight--;
	give_back_iov(req);
	req->done(req, res);
	return false;
}

static void reap(struct disk_uring *d)
{
	bool again = false;
	struct io_uring_cqe *cqe;
	while (io_uring_peek_cqe(&d->ring, &cqe) == 0) {
		struct disk_request *req = io_uring_cqe_get_data(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&d->ring, cqe);
		if (req)
			again |= finish(d, req, res);
	}
	if (again)
		disk_uring_submit(d);
}

void disk_uring_wake(struct disk_uring *d)
{
	uint64_t one = 1;
	if (write(d->efd, &one, sizeof(one)) < 0)
		log_warn_ratelimited(&d->rl, COMP, "disk image %s: writing the completion eventfd: %s", d->path,
				     strerror(errno));
}

void disk_uring_complete(struct disk_uring *d)
{
	uint64_t n;
	if (read(d->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_warn_ratelimited(&d->rl, COMP, "disk image %s: reading the completion eventfd: %s", d->path,
				     strerror(errno));
	reap(d);
}

void disk_uring_drain(struct disk_uring *d)
{
	while (d->in_flight > 0) {
		int rc = io_uring_submit_and_wait(&d->ring, 1);
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN) {
			log_error(COMP, "disk image %s: waiting for I/O to finish failed: %s", d->path, strerror(-rc));
			return;
		}
		reap(d);
	}
}
