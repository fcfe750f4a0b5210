/*
 * virtio-blk: request parsing on hand-built descriptor chains (every layout a driver may use
 * and every malformed case), then whole requests through the PCI transport, the event loop
 * and io_uring against a real image file, and the image checks made when a disk is opened.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/disk_uring.h"
#include "virtio/virtio_blk.h"

#include "virtio_rig.h"

/* ---- parsing ---- */

#define CAP 64 /* sectors of the disk the parse tests assume */

struct chain {
	struct iovec iov[8];
	struct vq_chain c;
	uint8_t buf[4096];
	size_t used;
};

static void chain_init(struct chain *ch)
{
	memset(ch, 0, sizeof(*ch));
	ch->c.iov = ch->iov;
	ch->c.iov_cap = 8;
}

/* Appends a segment of len bytes (readable ones must come first, as vq_pop() guarantees). */
static uint8_t *seg(struct chain *ch, size_t len, bool writable)
{
	uint8_t *p = ch->buf + ch->used;
	ch->used += len;
	assert_true(ch->used <= sizeof(ch->buf));
	ch->iov[ch->c.n_out + ch->c.n_in] = (struct iovec){ .iov_base = p, .iov_len = len };
	if (writable) {
		ch->c.n_in++;
		ch->c.in_len += (uint32_t)len;
	} else {
		assert_int_equal(ch->c.n_in, 0);
		ch->c.n_out++;
		ch->c.out_len += (uint32_t)len;
	}
	return p;
}

static void put_hdr(uint8_t *p, uint32_t type, uint64_t sector)
{
	memset(p, 0, VIRTIO_BLK_HDR_SIZE);
	memcpy(p, &type, 4);
	memcpy(p + 8, &sector, 8);
}

/* A readable header segment, then the given segments. */
static void hdr_seg(struct chain *ch, uint32_t type, uint64_t sector)
{
	put_hdr(seg(ch, VIRTIO_BLK_HDR_SIZE, false), type, sector);
}

static void a_read_with_the_usual_layout(void **state)
{
	(void)state;
	struct chain ch;
	chain_init(&ch);
	hdr_seg(&ch, VIRTIO_BLK_T_IN, 3);
	uint8_t *d1 = seg(&ch, 512, true);
	uint8_t *d2 = seg(&ch, 1024, true);
	uint8_t *st = seg(&ch, 1, true);
	struct virtio_blk_request r;
	assert_int_equal(virtio_blk_parse(&ch.c, CAP, false, &r), VIRTIO_BLK_S_OK);
	assert_int_equal(r.type, VIRTIO_BLK_T_IN);
	assert_ptr_equal(r.status, st);
	assert_int_equal(r.ndata, 2);
	assert_ptr_equal(r.data[0].iov_base, d1);
	assert_int_equal(r.data[0].iov_len, 512);
	assert_ptr_equal(r.data[1].iov_base, d2);
	assert_int_equal(r.data[1].iov_len, 1024);
	assert_int_equal(r.offset, 3 * 512);
	assert_int_equal(r.len, 1536);
	assert_int_equal(r.used_len, 1537);
}

static void any_layout_is_accepted(void **state)
{
	(void)state;
	/* Header split over two segments; data and status share one writable segment. */
	struct chain ch;
	chain_init(&ch);
	uint8_t hdr[VIRTIO_BLK_HDR_SIZE];
	put_hdr(hdr, VIRTIO_BLK_T_IN, 7);
	memcpy(seg(&ch, 5, false), hdr, 5);
	memcpy(seg(&ch, 11, false), hdr + 5, 11);
	uint8_t *d = seg(&ch, 513, true);
	struct virtio_blk_request r;
	assert_int_equal(virtio_blk_parse(&ch.c, CAP, false, &r), VIRTIO_BLK_S_OK);
	assert_int_equal(r.sector, 7);
	assert_ptr_equal(r.status, d + 512);
	assert_int_equal(r.ndata, 1);
	assert_ptr_equal(r.data[0].iov_base, d);
	assert_int_equal(r.data[0].iov_len, 512);

	/* A write whose header and data share one readable segment. */
	chain_init(&ch);
	uint8_t *w = seg(&ch, VIRTIO_BLK_HDR_SIZE + 1024, false);
	put_hdr(w, VIRTIO_BLK_T_OUT, CAP - 2);
	uint8_t *st = seg(&ch, 1, true);
	assert_int_equal(virtio_blk_parse(&ch.c, CAP, false, &r), VIRTIO_BLK_S_OK);
	assert_ptr_equal(r.status, st);
	assert_int_equal(r.ndata, 1);
	assert_ptr_equal(r.data[0].iov_base, w + VIRTIO_BLK_HDR_SIZE);
	assert_int_equal(r.data[0].iov_len, 1024);
	assert_int_equal(r.offset, (CAP - 2) * 512);
	assert_int_equal(r.used_len, 1);
}

static uint8_t parse_simple(uint32_t type, uint64_t sector, size_t out_data, size_t in_data, bool readonly,
			    struct virtio_blk_request *r)
{
	static struct chain ch;
	chain_init(&ch);
	hdr_seg(&ch, type, sector);
	if (out_data)
		seg(&ch, out_data, false);
	if (in_data)
		seg(&ch, in_data, true);
	seg(&ch, 1, true);
	return virtio_blk_parse(&ch.c, CAP, readonly, r);
}

static void malformed_requests_are_io_errors(void **state)
{
	(void)state;
	struct virtio_blk_request r;
	struct chain ch;

	/* No writable byte at all: nowhere to put a status. */
	chain_init(&ch);
	hdr_seg(&ch, VIRTIO_BLK_T_IN, 0);
	seg(&ch, 512, false);
	assert_int_equal(virtio_blk_parse(&ch.c, CAP, false, &r), VIRTIO_BLK_S_IOERR);
	assert_null(r.status);

	/* A header shorter than 16 bytes: the status still gets written. */
	chain_init(&ch);
	seg(&ch, 8, false);
	uint8_t *st = seg(&ch, 1, true);
	assert_int_equal(virtio_blk_parse(&ch.c, CAP, false, &r), VIRTIO_BLK_S_IOERR);
	assert_ptr_equal(r.status, st);

	/* No header at all, only a status byte. */
	chain_init(&ch);
	seg(&ch, 1, true);
	assert_int_equal(virtio_blk_parse(&ch.c, CAP, false, &r), VIRTIO_BLK_S_IOERR);

	/* Partial sectors. */
	assert_int_equal(parse_simple(VIRTIO_BLK_T_IN, 0, 0, 100, false, &r), VIRTIO_BLK_S_IOERR);
	assert_int_equal(parse_simple(VIRTIO_BLK_T_OUT, 0, 513, 0, false, &r), VIRTIO_BLK_S_IOERR);
	/* A read with readable data, a write with writable data. */
	assert_int_equal(parse_simple(VIRTIO_BLK_T_IN, 0, 512, 512, false, &r), VIRTIO_BLK_S_IOERR);
	assert_int_equal(parse_simple(VIRTIO_BLK_T_OUT, 0, 512, 512, false, &r), VIRTIO_BLK_S_IOERR);

	/* Ranges: the last sector is fine, one past it is not, nor a sector number that wraps. */
	assert_int_equal(parse_simple(VIRTIO_BLK_T_IN, CAP - 1, 0, 512, false, &r), VIRTIO_BLK_S_OK);
	assert_int_equal(parse_simple(VIRTIO_BLK_T_IN, CAP - 1, 0, 1024, false, &r), VIRTIO_BLK_S_IOERR);
	assert_int_equal(parse_simple(VIRTIO_BLK_T_IN, CAP, 0, 512, false, &r), VIRTIO_BLK_S_IOERR);
	assert_int_equal(parse_simple(VIRTIO_BLK_T_OUT, UINT64_MAX, 512, 0, false, &r), VIRTIO_BLK_S_IOERR);
	assert_int_equal(parse_simple(VIRTIO_BLK_T_OUT, UINT64_MAX / 512 + 1, 512, 0, false, &r), VIRTIO_BLK_S_IOERR);

	/* Read-only disks refuse writes and discards, not reads or flushes. */
	assert_int_equal(parse_simple(VIRTIO_BLK_T_OUT, 0, 512, 0, true, &r), VIRTIO_BLK_S_IOERR);
	assert_int_equal(parse_simple(VIRTIO_BLK_T_DISCARD, 0, 16, 0, true, &r), VIRTIO_BLK_S_IOERR);
	assert_int_equal(parse_simple(VIRTIO_BLK_T_IN, 0, 0, 512, true, &r), VIRTIO_BLK_S_OK);
	assert_int_equal(parse_simple(VIRTIO_BLK_T_FLUSH, 0, 0, 0, true, &r), VIRTIO_BLK_S_OK);
}

static void unknown_types_are_unsupported(void **state)
{
	(void)state;
	struct virtio_blk_request r;
	assert_int_equal(parse_simple(VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, 0, false, &r), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(parse_simple(99, 0, 0, 0, false, &r), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(parse_simple(0x80000000u, 0, 0, 0, false, &r), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(r.used_len, 1);
}

static uint8_t parse_discard(uint64_t sector, uint32_t sectors, uint32_t flags, unsigned int nseg,
			     struct virtio_blk_request *r)
{
	static struct chain ch;
	chain_init(&ch);
	hdr_seg(&ch, VIRTIO_BLK_T_DISCARD, 0);
	for (unsigned int i = 0; i < nseg; i++) {
		uint8_t *p = seg(&ch, VIRTIO_BLK_DISCARD_SEG_SIZE, false);
		memcpy(p, &sector, 8);
		memcpy(p + 8, &sectors, 4);
		memcpy(p + 12, &flags, 4);
	}
	seg(&ch, 1, true);
	return virtio_blk_parse(&ch.c, CAP, false, r);
}

static void discard_segments_are_checked(void **state)
{
	(void)state;
	struct virtio_blk_request r;
	assert_int_equal(parse_discard(8, 16, 0, 1, &r), VIRTIO_BLK_S_OK);
	assert_int_equal(r.offset, 8 * 512);
	assert_int_equal(r.len, 16 * 512);
	assert_int_equal(parse_discard(0, CAP, 0, 1, &r), VIRTIO_BLK_S_OK);
	assert_int_equal(parse_discard(1, CAP, 0, 1, &r), VIRTIO_BLK_S_IOERR);      /* past the end */
	assert_int_equal(parse_discard(UINT64_MAX, 2, 0, 1, &r), VIRTIO_BLK_S_IOERR);
	assert_int_equal(parse_discard(0, 8, 0, 2, &r), VIRTIO_BLK_S_IOERR);        /* max_discard_seg is 1 */
	assert_int_equal(parse_discard(0, 8, 0, 0, &r), VIRTIO_BLK_S_IOERR);        /* no segment */
	assert_int_equal(parse_discard(0, 8, VIRTIO_BLK_DISCARD_F_UNMAP, 1, &r), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(parse_discard(0, 8, 0x10, 1, &r), VIRTIO_BLK_S_UNSUPP);
	/* A partial segment. */
	struct chain ch;
	chain_init(&ch);
	hdr_seg(&ch, VIRTIO_BLK_T_DISCARD, 0);
	seg(&ch, 8, false);
	seg(&ch, 1, true);
	assert_int_equal(virtio_blk_parse(&ch.c, CAP, false, &r), VIRTIO_BLK_S_IOERR);
}

static void get_id_takes_the_writable_buffer(void **state)
{
	(void)state;
	struct virtio_blk_request r;
	assert_int_equal(parse_simple(VIRTIO_BLK_T_GET_ID, 0, 0, VIRTIO_BLK_ID_BYTES, false, &r), VIRTIO_BLK_S_OK);
	assert_int_equal(r.data_len, VIRTIO_BLK_ID_BYTES);
	assert_int_equal(r.ndata, 1);
}

/* ---- the device through the transport ---- */

#define RAM (2u << 20)
#define HDRS 0x8000         /* request headers, 32 bytes apart */
#define STATUS_BYTES 0x9000 /* one per request */
#define DATA 0x10000
#define QSZ 16
#define DISK_SECTORS 256

struct rig {
	struct vrig v;
	struct virtio_blk *blk;
	char path[64];
};

static const struct vrig_spec spec = {
	.ram = RAM, .device_id = VIRTIO_ID_BLOCK, .queues = 1, .qsize = QSZ, .max_qsize = VIRTIO_BLK_QUEUE_SIZE
};

static void make_image(char *path, size_t pathlen, size_t bytes)
{
	snprintf(path, pathlen, "/tmp/vmon-blk-test.XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	uint8_t *pattern = malloc(bytes ? bytes : 1);
	for (size_t i = 0; i < bytes; i++)
		pattern[i] = (uint8_t)(i / 512 + 1); /* each sector holds its number + 1 */
	assert_int_equal(write(fd, pattern, bytes), (ssize_t)bytes);
	free(pattern);
	close(fd);
}

static int rig_setup_sized(struct rig *r, bool readonly, unsigned int sectors)
{
	memset(r, 0, sizeof(*r));
	vrig_init(&r->v, &spec);
	make_image(r->path, sizeof(r->path), (size_t)sectors * 512);
	int rc = virtio_blk_create(&r->v.deps, r->path, DISK_FORMAT_AUTO, readonly, "vmon-serial-1", &r->blk);
	if (rc) {
		vrig_free(&r->v);
		unlink(r->path);
		return rc; /* io_uring unavailable: the caller skips */
	}
	vrig_attach(&r->v);
	return 0;
}

static int rig_setup(struct rig *r, bool readonly) { return rig_setup_sized(r, readonly, DISK_SECTORS); }

static void rig_free(struct rig *r)
{
	event_loop_stop(r->v.loop);
	virtio_blk_destroy(r->blk);
	vrig_free(&r->v);
	unlink(r->path);
}

/*
 * Submits header | data (len bytes at DATA + data_off, writable for reads) | status as a
 * 3-descriptor chain (2 if len is 0) and waits for the answer. Returns the status byte.
 */
static uint8_t request(struct rig *r, uint32_t type, uint64_t sector, uint64_t data_off, uint32_t len,
		       bool data_writable, uint32_t *used_len)
{
	struct vrig *v = &r->v;
	uint16_t n = v->q[0].avail_idx;
	uint64_t hdr = HDRS + 32u * (n % QSZ), status = STATUS_BYTES + (n % QSZ);
	put_hdr(v->ram + hdr, type, sector);
	v->ram[status] = 0xee;
	struct seg segs[3] = { { hdr, VIRTIO_BLK_HDR_SIZE, false }, { DATA + data_off, len, data_writable },
			       { status, 1, true } };
	if (!len)
		segs[1] = segs[2];
	uint16_t head = add_chain(v, 0, segs, len ? 3 : 2, true);
	assert_true(wait_used(v, 0, v->q[0].avail_idx));
	uint32_t id, ulen;
	used_elem(v, 0, n, &id, &ulen);
	assert_int_equal(id, head);
	if (used_len)
		*used_len = ulen;
	return v->ram[status];
}

static void file_bytes(const char *path, off_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

static void reads_writes_flushes_and_get_id(void **state)
{
	(void)state;
	struct rig r;
	if (rig_setup(&r, false))
		skip();
	uint64_t f = device_features(&r.v);
	assert_true(f & VIRTIO_F_BIT(VIRTIO_BLK_F_FLUSH));
	assert_true(f & VIRTIO_F_BIT(VIRTIO_BLK_F_DISCARD));
	assert_true(f & VIRTIO_F_BIT(VIRTIO_BLK_F_SEG_MAX));
	assert_true(f & VIRTIO_F_BIT(VIRTIO_BLK_F_BLK_SIZE));
	assert_false(f & VIRTIO_F_BIT(VIRTIO_BLK_F_RO));
	/* Capacity, seg_max and blk_size in the device configuration. */
	uint64_t cap = rd(&r.v, VIRTIO_PCI_DEVICE_OFF, 4) | (uint64_t)rd(&r.v, VIRTIO_PCI_DEVICE_OFF + 4, 4) << 32;
	assert_int_equal(cap, DISK_SECTORS);
	assert_int_equal(rd(&r.v, VIRTIO_PCI_DEVICE_OFF + 12, 4), VIRTIO_BLK_SEG_MAX);
	assert_int_equal(rd(&r.v, VIRTIO_PCI_DEVICE_OFF + 20, 4), 512);
	start_driver(&r.v, VIRTIO_F_BIT(VIRTIO_BLK_F_FLUSH) | VIRTIO_F_BIT(VIRTIO_BLK_F_DISCARD));

	/* Read sectors 10..11: the image's pattern arrives in guest RAM. */
	uint32_t ulen;
	assert_int_equal(request(&r, VIRTIO_BLK_T_IN, 10, 0, 1024, true, &ulen), VIRTIO_BLK_S_OK);
	assert_int_equal(ulen, 1025);
	assert_int_equal(r.v.ram[DATA], 11);
	assert_int_equal(r.v.ram[DATA + 1023], 12);

	/* Write sector 20, flush, and the file has it. */
	memset(r.v.ram + DATA + 4096, 0xab, 512);
	assert_int_equal(request(&r, VIRTIO_BLK_T_OUT, 20, 4096, 512, false, &ulen), VIRTIO_BLK_S_OK);
	assert_int_equal(ulen, 1);
	assert_int_equal(request(&r, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL), VIRTIO_BLK_S_OK);
	uint8_t buf[512], want[512];
	memset(want, 0xab, sizeof(want));
	file_bytes(r.path, 20 * 512, buf, sizeof(buf));
	assert_memory_equal(buf, want, sizeof(buf));

	/* get-id: the serial, zero-padded to 20 bytes. */
	memset(r.v.ram + DATA, 0xff, 32);
	assert_int_equal(request(&r, VIRTIO_BLK_T_GET_ID, 0, 0, VIRTIO_BLK_ID_BYTES, true, &ulen), VIRTIO_BLK_S_OK);
	assert_int_equal(ulen, VIRTIO_BLK_ID_BYTES + 1);
	assert_memory_equal(r.v.ram + DATA, "vmon-serial-1\0\0\0\0\0\0", VIRTIO_BLK_ID_BYTES);
	assert_int_equal(r.v.ram[DATA + VIRTIO_BLK_ID_BYTES], 0xff);

	/* Errors: past the end, an unknown type. The device goes on working. */
	assert_int_equal(request(&r, VIRTIO_BLK_T_IN, DISK_SECTORS, 0, 512, true, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(&r, 42, 0, 0, 0, false, NULL), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(request(&r, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, 0, 512, true, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(r.v.ram[DATA], (uint8_t)DISK_SECTORS);

	struct virtio_blk_stats s;
	virtio_blk_get_stats(r.blk, &s);
	assert_int_equal(s.requests, 7);
	assert_int_equal(s.read_bytes, 1024 + 512);
	assert_int_equal(s.write_bytes, 512);
	assert_int_equal(s.flushes, 1);
	assert_int_equal(s.errors, 2);
	rig_free(&r);
}

/* A qcow2 overlay on a raw image: the guest reads the base, its writes land in the overlay. */
static void a_qcow2_overlay_through_the_device(void **state)
{
	(void)state;
	if (system("command -v qemu-img >/dev/null") != 0)
		skip();
	struct rig r;
	memset(&r, 0, sizeof(r));
	char base[sizeof(r.path) - 8], cmd[512];
	make_image(base, sizeof(base), (size_t)DISK_SECTORS * 512);
	snprintf(r.path, sizeof(r.path), "%s.qcow2", base);
	snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 -b %s -F raw %s", base, r.path);
	assert_int_equal(system(cmd), 0);
	vrig_init(&r.v, &spec);
	if (virtio_blk_create(&r.v.deps, r.path, DISK_FORMAT_AUTO, false, NULL, &r.blk)) {
		vrig_free(&r.v);
		unlink(r.path);
		unlink(base);
		skip();
	}
	vrig_attach(&r.v);
	start_driver(&r.v, VIRTIO_F_BIT(VIRTIO_BLK_F_FLUSH) | VIRTIO_F_BIT(VIRTIO_BLK_F_DISCARD));
	uint64_t cap = rd(&r.v, VIRTIO_PCI_DEVICE_OFF, 4) | (uint64_t)rd(&r.v, VIRTIO_PCI_DEVICE_OFF + 4, 4) << 32;
	assert_int_equal(cap, DISK_SECTORS);
	assert_int_equal(request(&r, VIRTIO_BLK_T_IN, 10, 0, 1024, true, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(r.v.ram[DATA], 11);
	assert_int_equal(r.v.ram[DATA + 1023], 12);
	memset(r.v.ram + DATA + 4096, 0xab, 512);
	assert_int_equal(request(&r, VIRTIO_BLK_T_OUT, 20, 4096, 512, false, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(request(&r, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(request(&r, VIRTIO_BLK_T_IN, 20, 0, 1024, true, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(r.v.ram[DATA], 0xab);
	assert_int_equal(r.v.ram[DATA + 511], 0xab);
	assert_int_equal(r.v.ram[DATA + 512], 22); /* the rest of the cluster came from the base */
	event_loop_stop(r.v.loop);
	virtio_blk_destroy(r.blk);
	vrig_free(&r.v);
	uint8_t b;
	file_bytes(base, 20 * 512, &b, 1);
	assert_int_equal(b, 21); /* the base is not written */
	snprintf(cmd, sizeof(cmd), "qemu-img check -q %s", r.path);
	assert_int_equal(system(cmd), 0);
	unlink(r.path);
	unlink(base);
}

/* Migration copies what vmon wrote into guest RAM only if it was marked: a disk read must be. */
static void completed_requests_leave_the_pages_they_wrote_dirty_for_migration(void **state)
{
	(void)state;
	struct rig r;
	if (rig_setup(&r, false))
		skip();
	start_driver(&r.v, VIRTIO_F_BIT(VIRTIO_BLK_F_FLUSH));
	vrig_track_writes(&r.v);
	/* A write: the device only reads the data, so its page stays clean. */
	memset(r.v.ram + DATA + 0x8000, 0xab, 512);
	assert_int_equal(request(&r, VIRTIO_BLK_T_OUT, 20, 0x8000, 512, false, NULL), VIRTIO_BLK_S_OK);
	assert_true(vrig_marked(&r.v, STATUS_BYTES, 1));
	assert_int_equal(vrig_marked_pages(&r.v, DATA + 0x8000, 512), 0);
	assert_int_equal(vrig_marked_pages(&r.v, HDRS, 32), 0);
	/* A read into a buffer that straddles two pages: both, the status byte and the used ring. */
	assert_int_equal(request(&r, VIRTIO_BLK_T_IN, 10, 0x2000 - 512, 1024, true, NULL), VIRTIO_BLK_S_OK);
	assert_true(vrig_marked(&r.v, DATA + 0x2000 - 512, 1024));
	assert_true(vrig_marked(&r.v, VRIG_USED(0), 4 + 8 * QSZ));
	assert_int_equal(vrig_marked_pages(&r.v, DATA + 0x3000, 4096), 0);
	rig_free(&r);
}

static void discard_punches_a_hole(void **state)
{
	(void)state;
	struct rig r;
	if (rig_setup(&r, false))
		skip();
	/* Only meaningful where the host file system punches holes. */
	int fd = open(r.path, O_RDWR | O_CLOEXEC);
	bool can_punch = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 255 * 512, 512) == 0;
	close(fd);
	start_driver(&r.v, VIRTIO_F_BIT(VIRTIO_BLK_F_FLUSH) | VIRTIO_F_BIT(VIRTIO_BLK_F_DISCARD));
	uint8_t *seg = r.v.ram + DATA;
	uint64_t sector = 8;
	uint32_t sectors = 16, flags = 0;
	memcpy(seg, &sector, 8);
	memcpy(seg + 8, &sectors, 4);
	memcpy(seg + 12, &flags, 4);
	assert_int_equal(request(&r, VIRTIO_BLK_T_DISCARD, 0, 0, 16, false, NULL), VIRTIO_BLK_S_OK);
	uint8_t buf[16 * 512], zero[16 * 512] = { 0 };
	file_bytes(r.path, 8 * 512, buf, sizeof(buf));
	if (can_punch)
		assert_memory_equal(buf, zero, sizeof(buf));
	struct stat st;
	assert_int_equal(stat(r.path, &st), 0);
	assert_int_equal(st.st_size, DISK_SECTORS * 512); /* the size stays */
	rig_free(&r);
	if (!can_punch)
		skip();
}

static void a_read_only_disk_refuses_writes(void **state)
{
	(void)state;
	struct rig r;
	if (rig_setup(&r, true))
		skip();
	uint64_t f = device_features(&r.v);
	assert_true(f & VIRTIO_F_BIT(VIRTIO_BLK_F_RO));
	assert_false(f & VIRTIO_F_BIT(VIRTIO_BLK_F_DISCARD));
	start_driver(&r.v, VIRTIO_F_BIT(VIRTIO_BLK_F_RO) | VIRTIO_F_BIT(VIRTIO_BLK_F_FLUSH));
	memset(r.v.ram + DATA, 0xcd, 512);
	assert_int_equal(request(&r, VIRTIO_BLK_T_OUT, 0, 0, 512, false, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(&r, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(request(&r, VIRTIO_BLK_T_IN, 0, 4096, 512, true, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(r.v.ram[DATA + 4096], 1); /* sector 0 as it was */
	uint8_t b;
	file_bytes(r.path, 0, &b, 1);
	assert_int_equal(b, 1);
	rig_free(&r);
}

static void a_write_without_flush_negotiated_is_write_through(void **state)
{
	(void)state;
	struct rig r;
	if (rig_setup(&r, false))
		skip();
	start_driver(&r.v, 0);
	memset(r.v.ram + DATA, 0x5a, 1024);
	assert_int_equal(request(&r, VIRTIO_BLK_T_OUT, 2, 0, 1024, false, NULL), VIRTIO_BLK_S_OK);
	uint8_t buf[1024], want[1024];
	memset(want, 0x5a, sizeof(want));
	file_bytes(r.path, 2 * 512, buf, sizeof(buf));
	assert_memory_equal(buf, want, sizeof(buf));
	rig_free(&r);
}

static void device_state_checks_the_image(void **state)
{
	(void)state;
	struct rig r;
	if (rig_setup(&r, false))
		skip();
	start_driver(&r.v, VIRTIO_F_BIT(VIRTIO_BLK_F_FLUSH));
	assert_int_equal(request(&r, VIRTIO_BLK_T_IN, 0, 0, 512, true, NULL), VIRTIO_BLK_S_OK);
	static uint8_t blob[1 << 16];
	struct virtio_device *vdev = r.v.fn->owner;
	long n = virtio_pci_save(vdev, blob, sizeof(blob));
	assert_true(n > 0);
	assert_int_equal(virtio_pci_load(vdev, blob, (size_t)n), 0);
	/* The same disk answers after the load. */
	assert_int_equal(request(&r, VIRTIO_BLK_T_IN, 1, 0, 512, true, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(r.v.ram[DATA], 2);
	rig_free(&r);

	/* A disk of another size refuses the state. */
	struct rig r2;
	assert_int_equal(rig_setup_sized(&r2, false, 128), 0);
	assert_int_equal(virtio_pci_load(r2.v.fn->owner, blob, (size_t)n), -EINVAL);
	rig_free(&r2);
}

/* ---- opening images ---- */

static void image_errors_name_the_problem(void **state)
{
	(void)state;
	struct disk_uring *d, *d2;
	assert_int_equal(disk_uring_open("/nonexistent/vmon-disk.img", false, 8, &d), -ENOENT);
	assert_int_equal(disk_uring_open("/tmp", false, 8, &d), -EISDIR);
	assert_int_equal(disk_uring_open("/tmp", true, 8, &d), -EISDIR);

	char path[64];
	make_image(path, sizeof(path), 100);
	assert_int_equal(disk_uring_open(path, false, 8, &d), -EINVAL); /* smaller than a sector */
	unlink(path);

	make_image(path, sizeof(path), 1000);
	if (disk_uring_open(path, false, 8, &d)) {
		unlink(path);
		skip(); /* no io_uring here */
	}
	assert_int_equal(disk_uring_size(d), 512); /* rounded down */
	/* A second writer, or a reader next to a writer, is refused; readers share. */
	assert_int_equal(disk_uring_open(path, false, 8, &d2), -EBUSY);
	assert_int_equal(disk_uring_open(path, true, 8, &d2), -EBUSY);
	disk_uring_close(d);
	assert_int_equal(disk_uring_open(path, true, 8, &d), 0);
	assert_int_equal(disk_uring_open(path, true, 8, &d2), 0);
	assert_true(disk_uring_readonly(d2));
	struct disk_uring *d3;
	assert_int_equal(disk_uring_open(path, false, 8, &d3), -EBUSY);
	disk_uring_close(d2);
	disk_uring_close(d);
	unlink(path);
}

static int done_calls, last_result;
static void count_done(struct disk_request *req, int result)
{
	(void)req;
	done_calls++;
	last_result = result;
}

static void the_backend_bounds_requests_in_flight(void **state)
{
	(void)state;
	char path[64];
	make_image(path, sizeof(path), 4096);
	struct disk_uring *d;
	if (disk_uring_open(path, false, 2, &d)) {
		unlink(path);
		skip();
	}
	uint8_t buf[3][512];
	struct iovec iov[3] = { { buf[0], 512 }, { buf[1], 512 }, { buf[2], 512 } };
	struct disk_request req[3];
	done_calls = 0;
	for (int i = 0; i < 3; i++)
		req[i] = (struct disk_request){ .op = DISK_READ, .offset = 512u * (unsigned int)i, .iov = &iov[i],
						.iovcnt = 1, .done = count_done };
	assert_int_equal(disk_uring_queue(d, &req[0]), 0);
	assert_int_equal(disk_uring_queue(d, &req[1]), 0);
	assert_int_equal(disk_uring_queue(d, &req[2]), -EBUSY);
	assert_int_equal(disk_uring_in_flight(d), 2);
	disk_uring_drain(d);
	assert_int_equal(done_calls, 2);
	assert_int_equal(disk_uring_in_flight(d), 0);
	assert_int_equal(buf[1][0], 2); /* sector 1 of the pattern */

	/* The image shrank under the VM: a read past its new end is an error, not garbage. */
	assert_int_equal(truncate(path, 512), 0);
	assert_int_equal(disk_uring_queue(d, &req[2]), 0);
	disk_uring_drain(d);
	assert_int_equal(done_calls, 3);
	assert_int_equal(last_result, -EIO);
	disk_uring_close(d);

	/* Writes and discards are refused on a read-only image before they reach the kernel. */
	assert_int_equal(disk_uring_open(path, true, 2, &d), 0);
	struct disk_request w = { .op = DISK_WRITE, .iov = &iov[0], .iovcnt = 1, .done = count_done };
	assert_int_equal(disk_uring_queue(d, &w), -EINVAL);
	disk_uring_close(d);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_read_with_the_usual_layout),
		cmocka_unit_test(any_layout_is_accepted),
		cmocka_unit_test(malformed_requests_are_io_errors),
		cmocka_unit_test(unknown_types_are_unsupported),
		cmocka_unit_test(discard_segments_are_checked),
		cmocka_unit_test(get_id_takes_the_writable_buffer),
		cmocka_unit_test(reads_writes_flushes_and_get_id),
		cmocka_unit_test(completed_requests_leave_the_pages_they_wrote_dirty_for_migration),
		cmocka_unit_test(a_qcow2_overlay_through_the_device),
		cmocka_unit_test(discard_punches_a_hole),
		cmocka_unit_test(a_read_only_disk_refuses_writes),
		cmocka_unit_test(a_write_without_flush_negotiated_is_write_through),
		cmocka_unit_test(device_state_checks_the_image),
		cmocka_unit_test(image_errors_name_the_problem),
		cmocka_unit_test(the_backend_bounds_requests_in_flight),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
