/*
 * A disk image as virtio-blk sees it: a raw file or block device served by io_uring
 * (disk_uring.h, unchanged hot path), or a qcow2 image (qcow2.h) whose requests run synchronously
 * with pread/pwrite on the calling (event loop) thread and complete at the next
 * disk_image_complete(), reported through the same kind of eventfd. The request protocol is
 * disk_uring.h's: queue, submit, complete on the event fd, drain.
 *
 * Format: given (DISK_FORMAT_RAW/QCOW2), or probed from the first bytes (AUTO). Probing is what
 * makes raw images dangerous: a guest that writes a qcow2 header at the start of its raw disk
 * would have the image opened as qcow2 next time, with a backing file of its choosing (any
 * host file the VM may read). So a writable image *probed* as raw refuses guest writes that put
 * the qcow2 magic into its first sector (-EPERM, logged); given format=raw, the guest may write
 * anything.
 */
#ifndef VMON_BACKENDS_DISK_IMAGE_H
#define VMON_BACKENDS_DISK_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "backends/disk_uring.h"
#include "config/config.h"

struct disk_image;

/*
 * Opens, locks (see disk_uring.h) and probes the image; depth bounds the requests in flight.
 * A qcow2 image given as raw is served as raw (the guest sees the qcow2 file's bytes); a file
 * given as qcow2 without the magic is refused. Errors are logged naming the path and cause.
 */
int disk_image_open(const char *path, enum disk_format format, bool readonly, unsigned int depth,
		    struct disk_image **out);
void disk_image_close(struct disk_image *d);

/*
 * The size the image file at path may reach through vmon's writes, for RLIMIT_FSIZE: a raw
 * image is written in place (its size); a qcow2 image grows as clusters are allocated, up to
 * about its virtual size plus metadata (bounded generously: its size + 2 x virtual + 64 MiB).
 * 0 if it cannot be read.
 */
uint64_t disk_image_max_file_size(const char *path, enum disk_format format);

uint64_t disk_image_size(const struct disk_image *d); /* bytes, a multiple of DISK_SECTOR_SIZE */
bool disk_image_readonly(const struct disk_image *d);
const char *disk_image_path(const struct disk_image *d);
enum disk_format disk_image_format(const struct disk_image *d);
int disk_image_event_fd(const struct disk_image *d);
unsigned int disk_image_in_flight(const struct disk_image *d);

/* As disk_uring_queue() (READ, WRITE, FLUSH, DISCARD, WRITE_ZEROES). */
int disk_image_queue(struct disk_image *d, struct disk_request *req);
int disk_image_submit(struct disk_image *d);
void disk_image_wake(struct disk_image *d);
void disk_image_complete(struct disk_image *d);
void disk_image_drain(struct disk_image *d);
/* Puts everything written so far on stable storage (a migration's switch). 0 or -errno. */
int disk_image_flush(struct disk_image *d);
/*
 * A migration's switch of a writable image: hand_over lets go of the top file's exclusive lock,
 * so the destination vmon can open it; take_back locks it again (a migration that failed),
 * -EWOULDBLOCK when another process took it meanwhile. 0 or -errno.
 */
int disk_image_hand_over(struct disk_image *d);
int disk_image_take_back(struct disk_image *d);

/*
 * Freezes the image's current top file (raw on a file system, or qcow2): flushes it, creates a
 * qcow2 overlay at new_path whose backing file is that top (qcow2_create_overlay()), and serves
 * the image from the overlay from now on, the old top a read-only backing layer below it. A raw
 * image becomes a qcow2 image whose base is the raw file. For a disk with no request in flight
 * (the VM paused, the queues drained): -EBUSY otherwise; -EROFS for a read-only image, -ENOTSUP
 * for a block device. On failure the image stays on its old top and nothing is left at new_path;
 * failures are logged. disk_image_event_fd() changes when a raw image switches: re-register it.
 */
int disk_image_reopen_onto_overlay(struct disk_image *d, const char *new_path);

#endif
