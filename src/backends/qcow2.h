/*
 * qcow2 images (QEMU's format, versions 2 and 3), read and written synchronously with
 * pread/pwrite on the calling thread. Metadata is written through at once (no dirty bit, no lazy
 * refcounts), in an order that can only leak clusters on a crash, never point at a free one:
 * refcounts are raised before a table points at a cluster and lowered after it stopped pointing.
 *
 * Everything in the image is untrusted: every offset and size is checked before use and an image
 * that fails a check is refused at open (one error line naming the file and the problem), or a
 * request that meets a bad table entry fails with -EIO. Backing files (qcow2 or raw) are opened
 * read-only with a shared lock, relative names from the image's directory, at most
 * QCOW2_MAX_CHAIN layers deep. Not supported (refused naming the feature): encryption, external
 * data files, extended L2 entries, compression other than zlib, unknown incompatible features,
 * images not closed cleanly (dirty bit), writing to images with internal snapshots.
 * Not thread-safe.
 */
#ifndef VMON_BACKENDS_QCOW2_H
#define VMON_BACKENDS_QCOW2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QCOW2_MAX_CHAIN 16

struct qcow2;

/*
 * A layer that is open already, to serve as the backing file of an image being opened instead of
 * the file its header names: a running disk's frozen top becoming an overlay's backing file, on
 * a thread that may not open files outside the snapshot directory (Landlock). Exactly one of
 * qcow2 or raw_fd (>= 0). The new image owns it once qcow2_open() succeeds; on failure the
 * caller still does.
 */
struct qcow2_layer {
	struct qcow2 *qcow2;
	int raw_fd;
	uint64_t raw_size;
};

struct qcow2_options {
	bool readonly;
	bool no_backing;    /* refuse images with a backing file (fuzzing: never open other files) */
	unsigned int depth; /* layers already above this one (0 for the top) */
	const struct qcow2_layer *below; /* the backing layer, open already (or NULL) */
};

/* True when buf (at least 4 bytes) starts with the qcow2 magic "QFI\xfb". */
bool qcow2_probe(const uint8_t *buf, size_t len);

/*
 * Opens the qcow2 image on fd (owned from now on, closed on failure too; locked by the caller),
 * whose name is path and whose size is file_size bytes.
 */
int qcow2_open(int fd, const char *path, uint64_t file_size, const struct qcow2_options *opt, struct qcow2 **out);
void qcow2_close(struct qcow2 *q);
/*
 * Turns an open image into a layer that is only read from now on (it becomes a backing file):
 * flushed, and its file lock shared so other VMs may open it read-only. 0 or -errno; on failure
 * the image is still writable.
 */
int qcow2_make_readonly(struct qcow2 *q);
/* Undoes qcow2_make_readonly() (a switch that failed): exclusive lock and writable again. */
int qcow2_make_writable(struct qcow2 *q);
/* Sets the image file's lock (flock: LOCK_EX, LOCK_SH, LOCK_UN) without waiting. 0 or -errno (-EWOULDBLOCK: held by another). */
int qcow2_set_lock(struct qcow2 *q, int how);

uint64_t qcow2_size(const struct qcow2 *q); /* the virtual disk size in bytes */

/* Byte ranges inside the virtual size; 0 or a negative errno. */
int qcow2_read(struct qcow2 *q, uint64_t off, void *buf, uint64_t len);
int qcow2_write(struct qcow2 *q, uint64_t off, const void *buf, uint64_t len);
/* The range reads as zeros afterwards; whole clusters become zero clusters (freed where possible). */
int qcow2_write_zeroes(struct qcow2 *q, uint64_t off, uint64_t len);
/* A hint: whole clusters in the range are freed (and read as zeros, or from the backing file in
 * a version 2 image); partial clusters are left as they are. */
int qcow2_discard(struct qcow2 *q, uint64_t off, uint64_t len);
int qcow2_flush(struct qcow2 *q);

/*
 * Creates path (which must not exist: O_EXCL) as an empty version 3 qcow2 image, 64 KiB clusters,
 * on top of backing: every cluster reads from it until written. backing_format is "raw",
 * "qcow2" or NULL (probed; recorded in the image either way, so the backing file's own bytes
 * never choose its format). The virtual size is the backing image's. The backing file's name is
 * recorded relative when it lies in path's directory, else absolute. The file and its directory
 * are fsynced before this returns; on failure nothing is left at path. 0 or -errno (logged).
 */
int qcow2_create_overlay(const char *path, const char *backing, const char *backing_format);
/*
 * The same with the backing file's format and virtual size given, so the backing file is not
 * opened (the caller has it open already and may not open it again).
 */
int qcow2_create_overlay_sized(const char *path, const char *backing, const char *backing_format, uint64_t size);

#endif
