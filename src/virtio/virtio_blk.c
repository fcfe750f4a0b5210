#include "virtio/virtio_blk.h"

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "backends/disk_image.h"
#include "config/config_disk.h"
#include "lib/log.h"
#include "lib/util.h"

#define COMP "virtio-blk"
#define PCI_CLASS_STORAGE_SCSI 0x010000
#define MAX_SEGMENTS (VIRTIO_BLK_SEG_MAX + 2)
/* Hole punching works in file-system blocks: tell the guest to discard in 4 KiB units. */
#define DISCARD_ALIGNMENT_SECTORS 8

/* Device configuration layout (virtio 1.x 5.2.4), up to the write-zeroes fields. */
enum {
	CFG_CAPACITY = 0, CFG_SIZE_MAX = 8, CFG_SEG_MAX = 12, CFG_BLK_SIZE = 20, CFG_NUM_QUEUES = 34,
	CFG_MAX_DISCARD_SECTORS = 36, CFG_MAX_DISCARD_SEG = 40, CFG_DISCARD_ALIGNMENT = 44, CFG_SIZE = 60,
};

/* One request slot; there are as many as queue entries, so in-flight work is bounded. */
struct blk_req {
	struct disk_request io;
	struct virtio_blk *blk;
	struct blk_req *next_free;
	uint8_t *status;
	uint32_t used_len;
	uint32_t type;
	uint16_t head;
	struct iovec iov[MAX_SEGMENTS];
};

struct virtio_blk {
	struct virtio_device *vdev;
	struct disk_image *disk;
	struct event_loop *loop;
	bool fd_watched;
	bool readonly;
	uint64_t capacity;                 /* sectors */
	uint8_t id[VIRTIO_BLK_ID_BYTES];
	uint8_t config[CFG_SIZE];
	struct virtio_device_ops ops;      /* per disk: the features depend on readonly */

	/* Loop thread only. */
	struct blk_req *free_list;
	bool starved;   /* stopped taking requests because every slot was busy */
	bool dropping;  /* reset or teardown: completions are thrown away, not pushed */
	bool pushed;    /* used entries added since the last notification */
	bool recheck;   /* look at the queue at the next disk event (after a pause or a restore) */

	_Atomic uint64_t requests, read_bytes, write_bytes, flushes, discards, errors;
	struct log_ratelimit rl;
	struct blk_req reqs[VIRTIO_BLK_QUEUE_SIZE];
};

static uint32_t get_le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t get_le64(const uint8_t *p) { return get_le32(p) | (uint64_t)get_le32(p + 4) << 32; }
static void put_le16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_le32(uint8_t *p, uint32_t v) { put_le16(p, (uint16_t)v); put_le16(p + 2, (uint16_t)(v >> 16)); }
static void put_le64(uint8_t *p, uint64_t v) { put_le32(p, (uint32_t)v); put_le32(p + 4, (uint32_t)(v >> 32)); }

/* ---- request parsing ---- */

/*
 * Rewrites c->iov[0..) to describe len bytes that start skip bytes into segments
 * [first, first + count). In place: entry n is written only after entry i >= n was read.
 */
static unsigned int slice(struct vq_chain *c, unsigned int first, unsigned int count, uint64_t skip, uint64_t len)
{
	unsigned int n = 0;
	for (unsigned int i = first; i < first + count && len > 0; i++) {
		struct iovec s = c->iov[i];
		if (skip >= s.iov_len) {
			skip -= s.iov_len;
			continue;
		}
		s.iov_base = (uint8_t *)s.iov_base + skip;
		s.iov_len -= skip;
		skip = 0;
		if (s.iov_len > len)
			s.iov_len = len;
		len -= s.iov_len;
		c->iov[n++] = s;
	}
	return n;
}

static bool in_range(uint64_t sector, uint64_t sectors, uint64_t capacity)
{
	return sector <= capacity && sectors <= capacity - sector;
}

static uint8_t parse_rw(struct vq_chain *c, uint64_t capacity, struct virtio_blk_request *r)
{
	if (r->type == VIRTIO_BLK_T_IN) {
		/* header | data (writable) | status */
		if (c->out_len != VIRTIO_BLK_HDR_SIZE)
			return VIRTIO_BLK_S_IOERR;
		r->data_len = c->in_len - 1u;
		r->ndata = slice(c, c->n_out, c->n_in, 0, r->data_len);
		r->used_len = (uint32_t)r->data_len + 1;
	} else {
		/* header | data (readable) | status */
		if (c->in_len != 1)
			return VIRTIO_BLK_S_IOERR;
		r->data_len = c->out_len - (uint64_t)VIRTIO_BLK_HDR_SIZE;
		r->ndata = slice(c, 0, c->n_out, VIRTIO_BLK_HDR_SIZE, r->data_len);
	}
	r->data = c->iov;
	if (r->data_len % DISK_SECTOR_SIZE || !in_range(r->sector, r->data_len / DISK_SECTOR_SIZE, capacity))
		return VIRTIO_BLK_S_IOERR;
	r->offset = r->sector * DISK_SECTOR_SIZE;
	r->len = r->data_len;
	return VIRTIO_BLK_S_OK;
}

/* One discard segment (max_discard_seg is 1). */
static uint8_t parse_discard(struct vq_chain *c, uint64_t capacity, struct virtio_blk_request *r)
{
	uint64_t payload = c->out_len - (uint64_t)VIRTIO_BLK_HDR_SIZE;
	if (payload != VIRTIO_BLK_DISCARD_SEG_SIZE)
		return VIRTIO_BLK_S_IOERR; /* none, a partial segment, or more segments than max_discard_seg */
	uint8_t seg[VIRTIO_BLK_DISCARD_SEG_SIZE];
	if (vq_chain_read(c, VIRTIO_BLK_HDR_SIZE, seg, sizeof(seg)) != sizeof(seg))
		return VIRTIO_BLK_S_IOERR;
	uint64_t sector = get_le64(seg);
	uint32_t sectors = get_le32(seg + 8), flags = get_le32(seg + 12);
	/* Unknown flags, and "unmap", which only write-zeroes may carry, are refused as the spec asks. */
	if (flags)
		return VIRTIO_BLK_S_UNSUPP;
	if (sectors > VIRTIO_BLK_MAX_DISCARD_SECTORS || !in_range(sector, sectors, capacity))
		return VIRTIO_BLK_S_IOERR;
	r->offset = sector * DISK_SECTOR_SIZE;
	r->len = (uint64_t)sectors * DISK_SECTOR_SIZE;
	return VIRTIO_BLK_S_OK;
}

uint8_t virtio_blk_parse(struct vq_chain *c, uint64_t capacity, bool readonly, struct virtio_blk_request *r)
{
	memset(r, 0, sizeof(*r));
	if (c->n_in == 0 || c->in_len == 0)
		return VIRTIO_BLK_S_IOERR; /* nowhere to put the status: the caller can only give the chain back */
	const struct iovec *last = &c->iov[c->n_out + c->n_in - 1];
	r->status = (uint8_t *)last->iov_base + last->iov_len - 1;
	r->used_len = 1;

	uint8_t hdr[VIRTIO_BLK_HDR_SIZE];
	if (c->out_len < VIRTIO_BLK_HDR_SIZE || vq_chain_read(c, 0, hdr, sizeof(hdr)) != sizeof(hdr))
		return VIRTIO_BLK_S_IOERR;
	r->type = get_le32(hdr);
	r->sector = get_le64(hdr + 8);

	switch (r->type) {
	case VIRTIO_BLK_T_IN:
		return parse_rw(c, capacity, r);
	case VIRTIO_BLK_T_OUT:
		return readonly ? VIRTIO_BLK_S_IOERR : parse_rw(c, capacity, r);
	case VIRTIO_BLK_T_FLUSH:
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_GET_ID:
		r->data_len = c->in_len - 1u;
		r->ndata = slice(c, c->n_out, c->n_in, 0, r->data_len);
		r->data = c->iov;
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_DISCARD:
		return readonly ? VIRTIO_BLK_S_IOERR : parse_discard(c, capacity, r);
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

/* ---- request execution (loop thread) ---- */

static void release(struct virtio_blk *blk, struct blk_req *req)
{
	req->next_free = blk->free_list;
	blk->free_list = req;
}

/* Writes the status, gives the chain back and frees the slot. */
static void answer(struct virtio_blk *blk, struct blk_req *req, uint8_t status)
{
	if (req->status) {
		*req->status = status;
		guest_mem_wrote(virtio_pci_mem(blk->vdev), req->status, 1);
	}
	virtio_pci_push(blk->vdev, 0, req->head, req->status ? req->used_len : 0);
	blk->pushed = true;
	atomic_fetch_add(&blk->requests, 1);
	if (status != VIRTIO_BLK_S_OK || !req->status)
		atomic_fetch_add(&blk->errors, 1);
	release(blk, req);
}

static void on_io_done(struct disk_request *io, int result)
{
	struct blk_req *req = (struct blk_req *)((char *)io - offsetof(struct blk_req, io));
	struct virtio_blk *blk = req->blk;
	/* The disk wrote into the guest's buffers, even for a request that failed part way or is dropped. */
	if (io->op == DISK_READ)
		guest_mem_wrote_iov(virtio_pci_mem(blk->vdev), io->iov, (unsigned int)io->iovcnt, io->len);
	if (blk->dropping) {
		release(blk, req);
		return;
	}
	if (!result && req->type == VIRTIO_BLK_T_IN)
		atomic_fetch_add(&blk->read_bytes, io->len);
	else if (!result && req->type == VIRTIO_BLK_T_OUT)
		atomic_fetch_add(&blk->write_bytes, io->len);
	answer(blk, req, result ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
}

static void get_id(struct virtio_blk *blk, struct blk_req *req, const struct virtio_blk_request *r)
{
	uint32_t n = 0;
	for (unsigned int i = 0; i < r->ndata && n < VIRTIO_BLK_ID_BYTES; i++) {
		uint32_t k = (uint32_t)MIN(r->data[i].iov_len, (size_t)(VIRTIO_BLK_ID_BYTES - n));
		memcpy(r->data[i].iov_base, blk->id + n, k);
		n += k;
	}
	guest_mem_wrote_iov(virtio_pci_mem(blk->vdev), r->data, r->ndata, n);
	req->used_len = n + 1;
}

/* Starts the request in a popped chain: answered now, or handed to the disk. */
static void start(struct virtio_blk *blk, struct blk_req *req, struct vq_chain *c)
{
	struct virtio_blk_request r;
	uint8_t st = virtio_blk_parse(c, blk->capacity, blk->readonly, &r);
	req->head = c->head;
	req->status = r.status;
	req->used_len = r.used_len;
	req->type = r.type;
	if (st != VIRTIO_BLK_S_OK) {
		answer(blk, req, st);
		return;
	}
	struct disk_request *io = &req->io;
	*io = (struct disk_request){ .offset = r.offset, .len = r.len, .iov = r.data, .iovcnt = (int)r.ndata,
				     .done = on_io_done };
	switch (r.type) {
	case VIRTIO_BLK_T_GET_ID:
		get_id(blk, req, &r);
		answer(blk, req, VIRTIO_BLK_S_OK);
		return;
	case VIRTIO_BLK_T_IN:
		io->op = DISK_READ;
		break;
	case VIRTIO_BLK_T_OUT:
		io->op = DISK_WRITE;
		/* A driver without FLUSH cannot ask for durability: give it a write-through disk. */
		io->dsync = !virtio_pci_has_feature(blk->vdev, VIRTIO_BLK_F_FLUSH);
		break;
	case VIRTIO_BLK_T_FLUSH:
		atomic_fetch_add(&blk->flushes, 1);
		if (blk->readonly) {
			answer(blk, req, VIRTIO_BLK_S_OK);
			return;
		}
		io->op = DISK_FLUSH;
		break;
	case VIRTIO_BLK_T_DISCARD:
		atomic_fetch_add(&blk->discards, 1);
		io->op = DISK_DISCARD;
		break;
	}
	if ((io->op == DISK_READ || io->op == DISK_WRITE || io->op == DISK_DISCARD) && r.len == 0) {
		answer(blk, req, VIRTIO_BLK_S_OK);
		return;
	}
	int rc = disk_image_queue(blk->disk, io);
	if (rc) {
		log_warn_ratelimited(&blk->rl, COMP, "%s: cannot queue a request: %s", disk_image_path(blk->disk),
				     strerror(-rc));
		answer(blk, req, VIRTIO_BLK_S_IOERR);
	}
}

static void notify_if_pushed(struct virtio_blk *blk)
{
	if (blk->pushed) {
		blk->pushed = false;
		virtio_pci_notify(blk->vdev, 0);
	}
}

/* Takes requests while there are free slots; returns like virtio_pci_pop(). */
static int take_requests(struct virtio_blk *blk)
{
	int rc = 0;
	while (blk->free_list) {
		struct blk_req *req = blk->free_list;
		struct vq_chain c = { .iov = req->iov, .iov_cap = MAX_SEGMENTS };
		rc = virtio_pci_pop(blk->vdev, 0, &c);
		if (rc <= 0)
			break;
		blk->free_list = req->next_free;
		start(blk, req, &c);
	}
	return rc;
}

static void process(struct virtio_blk *blk)
{
	struct virtqueue *vq = virtio_pci_queue(blk->vdev, 0);
	do {
		blk->starved = false;
		for (;;) {
			vq_disable_notify(vq);
			if (take_requests(blk) < 0)
				break; /* the ring is broken; the transport reported NEEDS_RESET */
			if (!blk->free_list) {
				/* Every slot busy: the next completion comes back here, notifications still off. */
				blk->starved = true;
				break;
			}
			if (!vq_enable_notify(vq))
				break;
		}
		disk_image_submit(blk->disk);
		/* Reads from the host's page cache finish during submission: answer them now, not after
		 * another trip through the event loop. */
		disk_image_complete(blk->disk);
	} while (blk->starved && blk->free_list);
	notify_if_pushed(blk);
}

static void blk_queue_notify(void *dev, uint16_t q)
{
	if (q == 0)
		process(dev);
}

static void on_disk_event(void *opaque, uint32_t events)
{
	(void)events;
	struct virtio_blk *blk = opaque;
	disk_image_complete(blk->disk);
	if ((blk->starved || blk->recheck) && blk->free_list && virtio_pci_running(blk->vdev)) {
		blk->recheck = false;
		process(blk);
	} else {
		notify_if_pushed(blk);
	}
}

/* Requests may wait in the ring with no notification to come: look once the loop runs again. */
static void recheck_later(struct virtio_blk *blk)
{
	blk->recheck = true;
	disk_image_wake(blk->disk);
}

static void blk_reset(void *dev)
{
	struct virtio_blk *blk = dev;
	/* The guest may reuse its buffers as soon as the reset is done: nothing may still write them. */
	blk->dropping = true;
	disk_image_drain(blk->disk);
	blk->dropping = false;
	blk->starved = false;
	blk->recheck = false;
	blk->pushed = false;
}

static void blk_config_read(void *dev, uint32_t off, void *data, uint32_t len)
{
	struct virtio_blk *blk = dev;
	memcpy(data, blk->config + off, len); /* off + len <= CFG_SIZE, checked by the transport */
}

/* ---- snapshots ---- */

#define SAVE_MAGIC 0x424c4b31u /* "BLK1" */

struct saved_blk {
	uint32_t magic;
	uint8_t readonly;
	uint8_t pad[3];
	uint64_t capacity;
};

struct save_call {
	struct virtio_blk *blk;
	unsigned int in_flight;
};

/* Loop thread: whatever is in flight now was popped before the transport saved the queues. */
static void finish_in_flight(void *opaque)
{
	struct save_call *sc = opaque;
	sc->in_flight = disk_image_in_flight(sc->blk->disk);
	if (sc->in_flight) {
		disk_image_drain(sc->blk->disk);
		notify_if_pushed(sc->blk);
	}
	if (sc->blk->starved)
		recheck_later(sc->blk);
}

void virtio_blk_quiesce(struct virtio_blk *blk)
{
	struct save_call sc = { .blk = blk };
	event_loop_call(blk->loop, finish_in_flight, &sc);
}

static long blk_save(void *dev, void *buf, size_t cap)
{
	struct virtio_blk *blk = dev;
	if (cap < sizeof(struct saved_blk))
		return -ENOSPC;
	struct save_call sc = { .blk = blk };
	event_loop_call(blk->loop, finish_in_flight, &sc);
	if (sc.in_flight) {
		/* The saved queues would hold requests that never complete in the restored guest. */
		log_warn(COMP, "%s: %u requests were in flight during the snapshot; they have finished now: take the "
			       "snapshot again",
			 disk_image_path(blk->disk), sc.in_flight);
		return -EBUSY;
	}
	struct saved_blk s = { .magic = SAVE_MAGIC, .readonly = blk->readonly, .capacity = blk->capacity };
	memcpy(buf, &s, sizeof(s));
	return (long)sizeof(s);
}

static int blk_load(void *dev, const void *buf, size_t len)
{
	struct virtio_blk *blk = dev;
	struct saved_blk s;
	if (len != sizeof(s))
		return -EINVAL;
	memcpy(&s, buf, sizeof(s));
	if (s.magic != SAVE_MAGIC)
		return -EINVAL;
	if (s.capacity != blk->capacity || (bool)s.readonly != blk->readonly) {
		log_error(COMP, "disk image %s is now %llu sectors%s, but was %llu sectors%s when the snapshot was taken: "
				"restore with the image the VM had",
			  disk_image_path(blk->disk), (unsigned long long)blk->capacity, blk->readonly ? " read-only" : "",
			  (unsigned long long)s.capacity, s.readonly ? " read-only" : "");
		return -EINVAL;
	}
	recheck_later(blk);
	return 0;
}

/* ---- life cycle ---- */

static const struct virtio_device_ops blk_ops_template = {
	.name = "blk",
	.device_id = VIRTIO_ID_BLOCK,
	.pci_class = PCI_CLASS_STORAGE_SCSI,
	.num_queues = 1,
	.queue_max_size = VIRTIO_BLK_QUEUE_SIZE,
	.config_size = CFG_SIZE,
	.config_read = blk_config_read,
	.queue_notify = blk_queue_notify,
	.reset = blk_reset,
	.save = blk_save,
	.load = blk_load,
};

static void build_config(struct virtio_blk *blk)
{
	put_le64(blk->config + CFG_CAPACITY, blk->capacity);
	put_le32(blk->config + CFG_SEG_MAX, VIRTIO_BLK_SEG_MAX);
	put_le32(blk->config + CFG_BLK_SIZE, DISK_SECTOR_SIZE);
	put_le16(blk->config + CFG_NUM_QUEUES, 1);
	put_le32(blk->config + CFG_MAX_DISCARD_SECTORS, VIRTIO_BLK_MAX_DISCARD_SECTORS);
	put_le32(blk->config + CFG_MAX_DISCARD_SEG, 1);
	put_le32(blk->config + CFG_DISCARD_ALIGNMENT, DISCARD_ALIGNMENT_SECTORS);
}

int virtio_blk_create(const struct virtio_pci_deps *deps, const char *path, enum disk_format format, bool readonly,
		      const char *serial, struct virtio_blk **out)
{
	if (serial && strlen(serial) > VIRTIO_BLK_ID_BYTES) {
		log_error(COMP, "disk %s: serial '%s' is longer than %d bytes", path, serial, VIRTIO_BLK_ID_BYTES);
		return -EINVAL;
	}
	struct virtio_blk *blk = calloc(1, sizeof(*blk));
	if (!blk)
		return -ENOMEM;
	blk->loop = deps->loop;
	blk->readonly = readonly;
	if (serial)
		memcpy(blk->id, serial, strlen(serial));
	for (int i = VIRTIO_BLK_QUEUE_SIZE - 1; i >= 0; i--) {
		blk->reqs[i].blk = blk;
		release(blk, &blk->reqs[i]);
	}
	int rc = disk_image_open(path, format, readonly, VIRTIO_BLK_QUEUE_SIZE, &blk->disk);
	if (rc) {
		free(blk);
		return rc;
	}
	blk->capacity = disk_image_size(blk->disk) / DISK_SECTOR_SIZE;
	build_config(blk);
	blk->ops = blk_ops_template;
	blk->ops.features = VIRTIO_F_BIT(VIRTIO_BLK_F_SEG_MAX) | VIRTIO_F_BIT(VIRTIO_BLK_F_BLK_SIZE) |
			    VIRTIO_F_BIT(VIRTIO_BLK_F_FLUSH) |
			    (readonly ? VIRTIO_F_BIT(VIRTIO_BLK_F_RO) : VIRTIO_F_BIT(VIRTIO_BLK_F_DISCARD));
	rc = event_loop_add_fd(deps->loop, disk_image_event_fd(blk->disk), EPOLLIN, on_disk_event, blk);
	if (!rc) {
		blk->fd_watched = true;
		rc = virtio_pci_create(deps, &blk->ops, blk, &blk->vdev);
	}
	if (rc) {
		virtio_blk_destroy(blk);
		return rc;
	}
	log_info(COMP, "disk %s: %s, %llu sectors (%.1f MiB)%s%s%s", path,
		 config_disk_format_name(disk_image_format(blk->disk)), (unsigned long long)blk->capacity,
		 (double)blk->capacity / 2048.0, readonly ? ", read-only" : "", serial ? ", serial " : "",
		 serial ? serial : "");
	*out = blk;
	return 0;
}

void virtio_blk_destroy(struct virtio_blk *blk)
{
	if (!blk)
		return;
	virtio_pci_destroy(blk->vdev);
	if (blk->fd_watched)
		event_loop_remove_fd(blk->loop, disk_image_event_fd(blk->disk));
	blk->dropping = true; /* the queues are gone: completions only free their slots */
	disk_image_close(blk->disk);
	free(blk);
}

uint64_t virtio_blk_capacity(const struct virtio_blk *blk) { return blk->capacity; }
const char *virtio_blk_path(const struct virtio_blk *blk) { return disk_image_path(blk->disk); }
int virtio_blk_flush(struct virtio_blk *blk) { return blk->readonly ? 0 : disk_image_flush(blk->disk); }
int virtio_blk_hand_over(struct virtio_blk *blk) { return blk->readonly ? 0 : disk_image_hand_over(blk->disk); }
int virtio_blk_take_back(struct virtio_blk *blk) { return blk->readonly ? 0 : disk_image_take_back(blk->disk); }
enum disk_format virtio_blk_format(const struct virtio_blk *blk) { return disk_image_format(blk->disk); }
bool virtio_blk_readonly(const struct virtio_blk *blk) { return blk->readonly; }

int virtio_blk_switch_to_overlay(struct virtio_blk *blk, const char *path)
{
	/* A raw image's completions come on io_uring's eventfd, a qcow2 image's on its own. */
	if (blk->fd_watched)
		event_loop_remove_fd(blk->loop, disk_image_event_fd(blk->disk));
	blk->fd_watched = false;
	int rc = disk_image_reopen_onto_overlay(blk->disk, path);
	int watch = event_loop_add_fd(blk->loop, disk_image_event_fd(blk->disk), EPOLLIN, on_disk_event, blk);
	if (watch) {
		log_error(COMP, "disk %s: cannot watch its completions after the switch: %s", path, strerror(-watch));
		return rc ? rc : watch;
	}
	blk->fd_watched = true;
	return rc;
}

void virtio_blk_get_stats(const struct virtio_blk *blk, struct virtio_blk_stats *out)
{
	out->requests = atomic_load(&blk->requests);
	out->read_bytes = atomic_load(&blk->read_bytes);
	out->write_bytes = atomic_load(&blk->write_bytes);
	out->flushes = atomic_load(&blk->flushes);
	out->discards = atomic_load(&blk->discards);
	out->errors = atomic_load(&blk->errors);
}
