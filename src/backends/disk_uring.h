/*
 * A raw disk image (a regular file or a block device) read and written asynchronously through
 * io_uring. The virtio-blk device submits requests on the event-loop thread; the ring signals
 * completions on an eventfd (io_uring_register_eventfd) that the event loop watches, and
 * disk_uring_complete() then runs each request's done callback, on that same thread.
 *
 * Opening takes an advisory lock on the image (flock: exclusive for read-write, shared for
 * read-only), so two vmon processes cannot both write one image, or one write what another
 * reads. The image is opened O_CLOEXEC and without O_DIRECT (the host page cache is used):
 * durability comes from flushes, which are fdatasync (IORING_OP_FSYNC with DATASYNC), or from
 * per-write RWF_DSYNC when the guest asked for a write-through disk.
 *
 * Short transfers are continued (the iovec array is advanced in place and resubmitted), so a
 * request's done callback sees either success for the whole range or a negative errno.
 * Not thread-safe: one thread submits and completes.
 */
#ifndef VMON_BACKENDS_DISK_URING_H
#define VMON_BACKENDS_DISK_URING_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#define DISK_SECTOR_SIZE 512

struct disk_uring;

enum disk_op { DISK_READ, DISK_WRITE, DISK_FLUSH, DISK_DISCARD, DISK_WRITE_ZEROES };

/* One request, owned by the caller and untouched by it until done() runs. */
struct disk_request {
	enum disk_op op;
	uint64_t offset;      /* bytes (READ, WRITE, DISCARD) */
	struct iovec *iov;    /* READ/WRITE buffers; rewritten while in flight, as given again when done() runs */
	int iovcnt;
	uint64_t len;         /* DISCARD, WRITE_ZEROES: bytes; READ/WRITE: set by the backend from iov */
	bool dsync;           /* WRITE: complete only once the data is on stable storage (write-through) */
	/* Called from disk_uring_complete()/disk_uring_drain(): result 0 or a negative errno. */
	void (*done)(struct disk_request *req, int result);

	/* The backend's. */
	uint64_t moved;       /* bytes transferred so far */
	struct iovec *iov_given;  /* iov and iovcnt as queued ... */
	int iovcnt_given;
	struct iovec *clipped;    /* ... and the one entry a short transfer shortened, with its value */
	struct iovec clipped_was;
	unsigned int retries;
	struct disk_request *next; /* backends that finish requests synchronously keep them in a list */
	int result;                /* ... with their result until done() runs */
};

/*
 * Opens path (O_CLOEXEC, read-write or read-only), refuses what is not a regular file or block
 * device, takes the advisory lock described above and finds the size in bytes. Errors are logged
 * as one sentence naming the path. Returns the descriptor or a negative errno.
 */
int disk_file_open(const char *path, bool readonly, uint64_t *bytes);

/*
 * Opens the image at path and sets up a ring for up to depth requests in flight. Errors are
 * logged as one sentence naming the path (missing, a directory, unreadable, locked by another
 * process, not writable, empty). A size that is not a multiple of 512 bytes is rounded down with
 * a warning (the tail is not visible to the guest). Returns 0 and *out, or a negative errno.
 */
int disk_uring_open(const char *path, bool readonly, unsigned int depth, struct disk_uring **out);
/* The same on an fd from disk_file_open() (owned from now on, closed even on failure). */
int disk_uring_open_fd(int fd, const char *path, uint64_t bytes, bool readonly, unsigned int depth,
		       struct disk_uring **out);
/* Waits for requests still in flight (their done callbacks run), then closes everything. */
void disk_uring_close(struct disk_uring *d);

/* Usable size in bytes (a multiple of DISK_SECTOR_SIZE). */
uint64_t disk_uring_size(const struct disk_uring *d);
bool disk_uring_readonly(const struct disk_uring *d);
const char *disk_uring_path(const struct disk_uring *d);
/* The completion eventfd to watch for EPOLLIN. */
int disk_uring_event_fd(const struct disk_uring *d);
/*
 * A second descriptor of the image's open file (close-on-exec), sharing its file lock: the image
 * can be read through it after disk_uring_close(), without opening the path again. -errno.
 */
int disk_uring_dup_fd(const struct disk_uring *d);
unsigned int disk_uring_in_flight(const struct disk_uring *d);

/*
 * Queues a request; it reaches the kernel at the next disk_uring_submit(). Returns 0, -EBUSY
 * when depth requests are already in flight, or -EINVAL for a request the backend cannot
 * express (a write or discard on a read-only image, too many iovecs). done is not called when
 * this fails.
 */
int disk_uring_queue(struct disk_uring *d, struct disk_request *req);
/*
 * The checks every disk back end makes before it queues a request (the -EINVAL cases above),
 * and the request's total length from its iovecs. Returns 0 or -EINVAL.
 */
int disk_request_prepare(struct disk_request *req, bool readonly);
/* Hands queued requests to the kernel. Returns 0 or a negative errno (logged, rate-limited). */
int disk_uring_submit(struct disk_uring *d);

/* Makes the event fd readable, so the loop calls back even with nothing finished. */
void disk_uring_wake(struct disk_uring *d);
/* Runs the done callback of every finished request (call when the event fd is readable). */
void disk_uring_complete(struct disk_uring *d);
/* Submits what is queued and waits until nothing is in flight, completing everything. */
void disk_uring_drain(struct disk_uring *d);

#endif
