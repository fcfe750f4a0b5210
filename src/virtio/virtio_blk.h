/*
 * virtio-blk: a raw disk image as the guest's /dev/vdX (virtio 1.x section 5.2).
 *
 * One request queue of VIRTIO_BLK_QUEUE_SIZE entries. Requests are read, write, flush, discard
 * and get-id; anything else is answered VIRTIO_BLK_S_UNSUPP. Data moves between guest RAM and
 * the image without copies: the chain's segments become the iovecs of an io_uring request
 * (src/backends/disk_uring.h), and completions come back on the event loop.
 *
 * Offered features: SEG_MAX, BLK_SIZE (512), FLUSH, DISCARD (read-write disks), RO (read-only
 * disks). A write is acknowledged once the host file has it; a flush is acknowledged once
 * fdatasync finished, so after the guest's sync returns the data survives vmon being killed
 * (and, as far as the host's storage keeps its promises, a host crash). A driver that does not
 * negotiate FLUSH gets a write-through disk (each write is RWF_DSYNC).
 *
 * Guest requests are hostile: a bad header, a range beyond the capacity, a length that is not
 * whole sectors, a missing status byte or a write to a read-only disk gets VIRTIO_BLK_S_IOERR;
 * at most one request per queue entry is ever in flight, whatever the guest puts in its ring.
 */
#ifndef VMON_VIRTIO_VIRTIO_BLK_H
#define VMON_VIRTIO_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "virtio/virtio_pci.h"

#define VIRTIO_BLK_QUEUE_SIZE 128
#define VIRTIO_BLK_SEG_MAX (VIRTIO_BLK_QUEUE_SIZE - 2) /* data segments, besides header and status */
#define VIRTIO_BLK_ID_BYTES 20                         /* the get-id answer, and the longest serial */
#define VIRTIO_BLK_MAX_DISCARD_SECTORS (1u << 22)      /* 2 GiB per discard request */

/* Feature bits (virtio 1.x 5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types and status values (virtio 1.x 5.2.6). */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_HDR_SIZE 16     /* le32 type, le32 reserved, le64 sector */
#define VIRTIO_BLK_DISCARD_SEG_SIZE 16 /* le64 sector, le32 num_sectors, le32 flags */
#define VIRTIO_BLK_DISCARD_F_UNMAP 1

struct virtio_blk;

struct virtio_blk_stats {
	uint64_t requests;     /* requests answered, whatever their status */
	uint64_t read_bytes;   /* data read from the image into the guest */
	uint64_t write_bytes;  /* data written by the guest to the image */
	uint64_t flushes;
	uint64_t discards;
	uint64_t errors;       /* requests answered IOERR or UNSUPP, or with no status byte */
};

/*
 * Opens the image in the given format, or probed (see disk_image_open() for the checks and the
 * lock; failures are logged naming the path) and plugs a virtio-blk function into deps->pci. serial (NULL: none) is what get-id
 * returns, at most VIRTIO_BLK_ID_BYTES bytes. Returns 0 and *out, or a negative errno.
 */
int virtio_blk_create(const struct virtio_pci_deps *deps, const char *path, enum disk_format format, bool readonly,
		      const char *serial, struct virtio_blk **out);
/* Unplugs, waits for requests in flight and closes the image. The event loop must be stopped. */
void virtio_blk_destroy(struct virtio_blk *blk);

/*
 * Finishes every request in flight and gives it back to the guest (on the loop thread, waiting
 * for it). For a paused VM, so that a snapshot finds no request half done. Any thread but the
 * loop's.
 */
void virtio_blk_quiesce(struct virtio_blk *blk);

/* The image's current top file (it changes with virtio_blk_switch_to_overlay()) and its format. */
/* Flushes the image to stable storage (a read-only disk: nothing). 0 or -errno. */
int virtio_blk_flush(struct virtio_blk *blk);
/* A migration's switch: the image's write lock let go of, and taken back (disk_image.h). */
int virtio_blk_hand_over(struct virtio_blk *blk);
int virtio_blk_take_back(struct virtio_blk *blk);
const char *virtio_blk_path(const struct virtio_blk *blk);
enum disk_format virtio_blk_format(const struct virtio_blk *blk);
bool virtio_blk_readonly(const struct virtio_blk *blk);

/*
 * Freezes the disk's current top file and continues on a new qcow2 overlay at path above it
 * (disk_image_reopen_onto_overlay()). Only while the VM is paused and its queues drained
 * (vm_pause() quiesces them); the event loop is paused then, so the image can be swapped here.
 */
int virtio_blk_switch_to_overlay(struct virtio_blk *blk, const char *path);

/* Capacity in 512-byte sectors. */
uint64_t virtio_blk_capacity(const struct virtio_blk *blk);
/* Counters, readable from any thread. */
void virtio_blk_get_stats(const struct virtio_blk *blk, struct virtio_blk_stats *out);

/*
 * One request as parsed from its descriptor chain (exposed for the unit tests). Parsing copies
 * the header out, remembers where the status byte is, and rewrites c->iov in place so that
 * data[0..ndata) are exactly the request's data buffers.
 */
struct virtio_blk_request {
	uint32_t type;
	uint64_t sector;
	uint8_t *status;        /* host pointer to the status byte in guest RAM; NULL if the chain has none */
	struct iovec *data;     /* IN, OUT, GET_ID: the data buffers (a prefix of the chain's iov array) */
	unsigned int ndata;
	uint64_t data_len;
	uint64_t offset, len;   /* IN, OUT, DISCARD: the byte range of the image */
	uint32_t used_len;      /* bytes the device will report written into the chain */
};

/*
 * Checks a chain against a disk of capacity sectors and fills *r. Returns VIRTIO_BLK_S_OK when
 * the request is to be carried out, VIRTIO_BLK_S_IOERR for a malformed one (or a write to a
 * read-only disk), VIRTIO_BLK_S_UNSUPP for an unknown type or discard flags it does not know.
 * r->status is set whenever the chain has a writable byte, even when parsing fails.
 */
uint8_t virtio_blk_parse(struct vq_chain *c, uint64_t capacity, bool readonly, struct virtio_blk_request *r);

#endif
