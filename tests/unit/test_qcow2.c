/*
 * qcow2 images made by qemu-img, read and written by vmon through the disk-image interface, then
 * judged by qemu-img: `qemu-img check` finds no errors or leaks, `qemu-img compare` agrees with
 * what was written, backing files are untouched; damaged images are refused and left unchanged.
 * Skips when qemu-img is missing (scripts/install-deps.sh test installs it).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/disk_image.h"
#include "backends/qcow2.h"

#define MIB (1024 * 1024)

static char dir[64];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *at(const char *name)
{
	static char bufs[4][256];
	static int n;
	char *p = bufs[n++ % 4];
	snprintf(p, 256, "%s/%s", dir, name);
	return p;
}

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
}

static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc(*len ? *len : 1);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, *len, f), *len);
	fclose(f);
	return b;
}

static void write_file(const char *path, const uint8_t *b, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(b, 1, len, f), len);
	fclose(f);
}

static int setup(void **state)
{
	(void)state;
	if (sh("command -v qemu-img >/dev/null") != 0)
		return 0;
	snprintf(dir, sizeof(dir), "/tmp/vmon-qcow2-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (dir[0])
		sh("rm -rf %s", dir);
	return 0;
}

#define NEED_QEMU_IMG()                                                   \
	do {                                                              \
		if (!dir[0])                                              \
			skip();                                           \
	} while (0)

/* ---- requests through the disk-image interface ---- */

static void on_done(struct disk_request *req, int result) { req->moved = (uint64_t)(int64_t)result; }

static int run(struct disk_image *d, enum disk_op op, uint64_t off, uint8_t *buf, uint64_t len)
{
	/* Two segments, so the interface's iovec walk is exercised. */
	struct iovec iov[2] = { { buf, len / 2 }, { buf + len / 2, len - len / 2 } };
	uint8_t dummy = 0;
	struct iovec none = { &dummy, 0 };
	struct disk_request req = { .op = op, .offset = off, .len = len, .done = on_done };
	if (op == DISK_READ || op == DISK_WRITE) {
		req.iov = iov;
		req.iovcnt = 2;
	} else {
		req.iov = &none;
	}
	int rc = disk_image_queue(d, &req);
	if (rc)
		return rc;
	disk_image_submit(d);
	disk_image_drain(d);
	return (int)(int64_t)req.moved;
}

/* The guest's view, kept alongside: random writes, overwrites, discards and zeroing. */
static void random_io(struct disk_image *d, uint8_t *shadow, uint64_t size, int rounds, bool v3)
{
	uint8_t *buf = malloc(256 * 1024);
	assert_non_null(buf);
	for (int i = 0; i < rounds; i++) {
		uint64_t len = (1 + rnd() % 256) * 512, off = (rnd() % (size / 512)) * 512;
		if (off + len > size)
			len = size - off;
		switch (rnd() % 8) {
		case 0:
			/* Zeroing: reads back as zeros whatever the layer below has. */
			assert_int_equal(run(d, DISK_WRITE_ZEROES, off, NULL, len), 0);
			memset(shadow + off, 0, len);
			break;
		case 1:
			/* Discard: whole clusters become zero (v3) or show the layer below (v2): read them back. */
			assert_int_equal(run(d, DISK_DISCARD, off, NULL, len), 0);
			if (!v3) {
				assert_int_equal(run(d, DISK_READ, off, shadow + off, len), 0);
			} else {
				assert_int_equal(run(d, DISK_READ, off, buf, len), 0);
				/* Partial clusters keep their data, whole ones read as zeros. */
				for (uint64_t k = 0; k < len; k++)
					assert_true(buf[k] == shadow[off + k] || buf[k] == 0);
				memcpy(shadow + off, buf, len);
			}
			break;
		case 2:
			assert_int_equal(run(d, DISK_READ, off, buf, len), 0);
			assert_memory_equal(buf, shadow + off, len);
			break;
		default:
			fill_random(buf, len);
			assert_int_equal(run(d, DISK_WRITE, off, buf, len), 0);
			memcpy(shadow + off, buf, len);
			break;
		}
	}
	assert_int_equal(run(d, DISK_FLUSH, 0, NULL, 0), 0);
	free(buf);
}

static void read_all_equals(struct disk_image *d, const uint8_t *want, uint64_t size)
{
	uint8_t *got = malloc(size);
	assert_non_null(got);
	assert_int_equal(run(d, DISK_READ, 0, got, size), 0);
	assert_memory_equal(got, want, size);
	free(got);
}

/* qemu-img's verdict: no errors or leaks, and the image reads as the guest's view. */
static void qemu_agrees(const char *image, const uint8_t *shadow, uint64_t size)
{
	assert_int_equal(sh("qemu-img check -q %s", image), 0);
	write_file(at("expected.raw"), shadow, size);
	assert_int_equal(sh("qemu-img compare -q -f raw -F qcow2 %s %s", at("expected.raw"), image), 0);
	assert_int_equal(sh("qemu-img convert -O raw %s %s", image, at("converted.raw")), 0);
	size_t n;
	uint8_t *conv = read_file(at("converted.raw"), &n);
	assert_int_equal(n, size);
	assert_memory_equal(conv, shadow, size);
	free(conv);
}

static struct disk_image *open_image(const char *path, enum disk_format f, bool ro)
{
	struct disk_image *d = NULL;
	assert_int_equal(disk_image_open(path, f, ro, 8, &d), 0);
	return d;
}

/* ---- tests ---- */

static void overlay_on_a_raw_base(void **state)
{
	(void)state;
	NEED_QEMU_IMG();
	uint64_t size = 4 * MIB;
	uint8_t *base = malloc(size), *shadow = malloc(size);
	fill_random(base, size);
	write_file(at("base.raw"), base, size);
	assert_int_equal(sh("cd %s && qemu-img create -q -f qcow2 -b base.raw -F raw top.qcow2", dir), 0);

	struct disk_image *d = open_image(at("top.qcow2"), DISK_FORMAT_AUTO, false);
	assert_int_equal(disk_image_format(d), DISK_FORMAT_QCOW2);
	assert_int_equal(disk_image_size(d), size);
	read_all_equals(d, base, size);
	memcpy(shadow, base, size);
	random_io(d, shadow, size, 400, true);
	read_all_equals(d, shadow, size);
	disk_image_close(d);

	qemu_agrees(at("top.qcow2"), shadow, size);
	size_t n;
	uint8_t *after = read_file(at("base.raw"), &n);
	assert_int_equal(n, size);
	assert_memory_equal(after, base, size); /* the backing file is never written */
	free(after);

	/* Reopened, the data is still there. */
	d = open_image(at("top.qcow2"), DISK_FORMAT_QCOW2, true);
	read_all_equals(d, shadow, size);
	disk_image_close(d);
	free(base);
	free(shadow);
}

static void three_layer_chain(void **state)
{
	(void)state;
	NEED_QEMU_IMG();
	uint64_t size = 2 * MIB;
	uint8_t *base = malloc(size), *shadow = malloc(size);
	fill_random(base, size);
	write_file(at("l0.raw"), base, size);
	assert_int_equal(sh("cd %s && qemu-img create -q -f qcow2 -b l0.raw -F raw l1.qcow2 && "
			    "qemu-io -c 'write -q -P 0x55 64k 128k' l1.qcow2 >/dev/null && "
			    "qemu-img create -q -f qcow2 -b l1.qcow2 -F qcow2 l2.qcow2 && "
			    "qemu-io -c 'write -q -P 0x66 160k 8k' l2.qcow2 >/dev/null && "
			    "sha256sum l0.raw l1.qcow2 >sums", dir), 0);
	memcpy(shadow, base, size);
	memset(shadow + 64 * 1024, 0x55, 128 * 1024);
	memset(shadow + 160 * 1024, 0x66, 8 * 1024);

	struct disk_image *d = open_image(at("l2.qcow2"), DISK_FORMAT_AUTO, false);
	read_all_equals(d, shadow, size);
	random_io(d, shadow, size, 300, true);
	disk_image_close(d);
	qemu_agrees(at("l2.qcow2"), shadow, size);
	assert_int_equal(sh("cd %s && sha256sum -c --quiet sums", dir), 0);
	free(base);
	free(shadow);
}

/* Image layouts: version 2, small and large clusters, every refcount width class. */
static void layouts_without_backing(void **state)
{
	(void)state;
	NEED_QEMU_IMG();
	static const struct {
		const char *opts;
		bool v3;
	} cases[] = {
		{ "compat=0.10", false },
		{ "cluster_size=512", true },
		{ "cluster_size=4096,refcount_bits=1", true },
		{ "cluster_size=4096,refcount_bits=4", true },
		{ "cluster_size=65536,refcount_bits=64", true },
		{ "cluster_size=2M", true },
		{ "compat=0.10,cluster_size=1024", false },
	};
	uint64_t size = 3 * MIB;
	uint8_t *shadow = malloc(size);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sh("rm -f %s", at("l.qcow2"));
		assert_int_equal(sh("qemu-img create -q -f qcow2 -o %s %s 3M", cases[i].opts, at("l.qcow2")), 0);
		memset(shadow, 0, size);
		struct disk_image *d = open_image(at("l.qcow2"), DISK_FORMAT_AUTO, false);
		random_io(d, shadow, size, 200, cases[i].v3);
		read_all_equals(d, shadow, size);
		disk_image_close(d);
		print_message("layout %s\n", cases[i].opts);
		qemu_agrees(at("l.qcow2"), shadow, size);
	}
	free(shadow);
}

static void compressed_clusters(void **state)
{
	(void)state;
	NEED_QEMU_IMG();
	uint64_t size = 2 * MIB;
	uint8_t *src = malloc(size);
	/* Compressible but not trivial: runs of random bytes. */
	for (uint64_t i = 0; i < size; i += 64) {
		uint8_t b = (uint8_t)rnd();
		memset(src + i, b, 64);
		src[i] = (uint8_t)rnd();
	}
	write_file(at("c.raw"), src, size);
	assert_int_equal(sh("qemu-img convert -c -O qcow2 %s %s", at("c.raw"), at("c.qcow2")), 0);
	assert_int_equal(sh("qemu-img convert -c -O qcow2 -o cluster_size=4096 %s %s", at("c.raw"), at("c4.qcow2")), 0);

	struct disk_image *d = open_image(at("c4.qcow2"), DISK_FORMAT_AUTO, true);
	read_all_equals(d, src, size);
	disk_image_close(d);

	d = open_image(at("c.qcow2"), DISK_FORMAT_AUTO, false);
	read_all_equals(d, src, size);
	/* Writing into a compressed cluster moves it to a new, uncompressed one. */
	random_io(d, src, size, 100, true);
	read_all_equals(d, src, size);
	disk_image_close(d);
	qemu_agrees(at("c.qcow2"), src, size);
	free(src);
}

/* Patches a fresh image and checks that vmon refuses it without writing a byte. */
static void refused(const char *what, uint64_t at_off, const uint8_t *bytes, size_t n, int want)
{
	sh("rm -f %s", at("bad.qcow2"));
	assert_int_equal(sh("qemu-img create -q -f qcow2 %s 1M && qemu-io -c 'write -q -P 7 0 64k' %s >/dev/null",
			    at("bad.qcow2"), at("bad.qcow2")), 0);
	int fd = open(at("bad.qcow2"), O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, bytes, n, (off_t)at_off), (ssize_t)n);
	close(fd);
	size_t len0, len1;
	uint8_t *before = read_file(at("bad.qcow2"), &len0);
	struct disk_image *d = NULL;
	print_message("damaged image: %s\n", what);
	assert_int_equal(disk_image_open(at("bad.qcow2"), DISK_FORMAT_AUTO, false, 8, &d), want);
	assert_null(d);
	uint8_t *after = read_file(at("bad.qcow2"), &len1);
	assert_int_equal(len0, len1);
	assert_memory_equal(before, after, len0);
	free(before);
	free(after);
}

static void damaged_images_are_refused(void **state)
{
	(void)state;
	NEED_QEMU_IMG();
	const uint8_t unaligned_l1[8] = { 0, 0, 0, 0, 0, 0x01, 0x23, 0x45 };
	const uint8_t far_l1[8] = { 0, 0, 0, 0x10, 0, 0, 0, 0 };
	const uint8_t far_reftable[8] = { 0, 0, 0, 0x01, 0, 0, 0, 0 };
	const uint8_t unknown_bit[8] = { 0, 0, 0, 0, 0, 0, 0, 0x20 };
	const uint8_t dirty[8] = { 0, 0, 0, 0, 0, 0, 0, 0x01 };
	const uint8_t ext_l2[8] = { 0, 0, 0, 0, 0, 0, 0, 0x10 };
	const uint8_t data_file[8] = { 0, 0, 0, 0, 0, 0, 0, 0x04 };
	const uint8_t aes[4] = { 0, 0, 0, 1 };
	const uint8_t big_bits[4] = { 0, 0, 0, 30 };
	const uint8_t bad_l2_entry[8] = { 0x80, 0, 0, 0x7f, 0, 0, 0, 0 };
	refused("L1 offset not aligned", 40, unaligned_l1, 8, -EINVAL);
	refused("L1 table past the end of the file", 40, far_l1, 8, -EINVAL);
	refused("refcount table out of range", 48, far_reftable, 8, -EINVAL);
	refused("unknown incompatible feature", 72, unknown_bit, 8, -ENOTSUP);
	refused("dirty bit", 72, dirty, 8, -ENOTSUP);
	refused("extended L2 entries", 72, ext_l2, 8, -ENOTSUP);
	refused("external data file", 72, data_file, 8, -ENOTSUP);
	refused("encryption", 32, aes, 4, -ENOTSUP);
	refused("cluster_bits 30", 20, big_bits, 4, -EINVAL);
	/* The L1 table of a fresh 64 KiB-cluster image is at 0x30000: its first entry out of the file. */
	refused("L1 entry out of the file", 0x30000, bad_l2_entry, 8, -EINVAL);
}

static void format_probing_and_forcing(void **state)
{
	(void)state;
	NEED_QEMU_IMG();
	uint8_t *sector = calloc(1, 1 << 20);
	write_file(at("plain.raw"), sector, 1 << 20);

	/* Probed raw: the guest may not write a qcow2 header into sector 0... */
	struct disk_image *d = open_image(at("plain.raw"), DISK_FORMAT_AUTO, false);
	assert_int_equal(disk_image_format(d), DISK_FORMAT_RAW);
	memcpy(sector, "QFI\xfb", 4);
	assert_int_equal(run(d, DISK_WRITE, 0, sector, 512), -EPERM);
	assert_int_equal(run(d, DISK_WRITE, 512, sector, 512), 0); /* elsewhere it may */
	disk_image_close(d);
	size_t n;
	uint8_t *img = read_file(at("plain.raw"), &n);
	assert_int_equal(img[0], 0);
	free(img);

	/* ... given format=raw, it may, and the file is then still opened as raw when given so. */
	d = open_image(at("plain.raw"), DISK_FORMAT_RAW, false);
	assert_int_equal(run(d, DISK_WRITE, 0, sector, 512), 0);
	disk_image_close(d);
	d = open_image(at("plain.raw"), DISK_FORMAT_RAW, true);
	assert_int_equal(disk_image_format(d), DISK_FORMAT_RAW);
	assert_int_equal(disk_image_size(d), 1 << 20);
	disk_image_close(d);

	/* format=qcow2 on a file without the header is refused. */
	memset(sector, 0, 512);
	write_file(at("plain2.raw"), sector, 1 << 20);
	assert_int_equal(disk_image_open(at("plain2.raw"), DISK_FORMAT_QCOW2, false, 8, &d), -EINVAL);

	/* A qcow2 image given as raw is served as raw bytes (its file size). */
	assert_int_equal(sh("qemu-img create -q -f qcow2 %s 64M", at("f.qcow2")), 0);
	struct stat st;
	assert_int_equal(stat(at("f.qcow2"), &st), 0);
	d = open_image(at("f.qcow2"), DISK_FORMAT_RAW, true);
	assert_int_equal(disk_image_size(d), (uint64_t)st.st_size & ~511ULL);
	disk_image_close(d);
	/* The file-size limit leaves a qcow2 image room to grow; a raw one is written in place. */
	assert_int_equal(disk_image_max_file_size(at("f.qcow2"), DISK_FORMAT_AUTO),
			 (uint64_t)st.st_size + 2 * 64 * MIB + 64 * MIB);
	assert_int_equal(disk_image_max_file_size(at("f.qcow2"), DISK_FORMAT_RAW), (uint64_t)st.st_size);
	assert_int_equal(disk_image_max_file_size(at("plain2.raw"), DISK_FORMAT_AUTO), 1 << 20);
	/* Read-only qcow2: writes are refused. */
	d = open_image(at("f.qcow2"), DISK_FORMAT_AUTO, true);
	assert_int_equal(disk_image_size(d), 64 * MIB);
	assert_int_equal(run(d, DISK_WRITE, 0, sector, 512), -EINVAL);
	disk_image_close(d);
	free(sector);
}

static void backing_chain_loop_is_refused(void **state)
{
	(void)state;
	NEED_QEMU_IMG();
	/* a -> b -> a: caught by the depth limit, nothing written. */
	assert_int_equal(sh("cd %s && qemu-img create -q -f qcow2 loopb.qcow2 1M && "
			    "qemu-img create -q -f qcow2 -b loopb.qcow2 -F qcow2 loopa.qcow2 && "
			    "qemu-img rebase -u -b loopa.qcow2 -F qcow2 loopb.qcow2", dir), 0);
	struct disk_image *d = NULL;
	assert_int_equal(disk_image_open(at("loopa.qcow2"), DISK_FORMAT_AUTO, true, 8, &d), -ELOOP);
	assert_null(d);
}

/* ---- overlays vmon creates ---- */

static bool file_equals(const char *path, const uint8_t *want, size_t len)
{
	size_t n;
	uint8_t *got = read_file(path, &n);
	bool same = n == len && !memcmp(got, want, len);
	free(got);
	return same;
}

static void created_overlay_reads_its_backing(void **state)
{
	(void)state;
	NEED_QEMU_IMG();
	/* Not a whole number of clusters: the overlay takes the backing file's exact size. */
	uint64_t size = 3 * MIB + 3 * 512;
	uint8_t *base = malloc(size), *shadow = malloc(size);
	fill_random(base, size);
	write_file(at("cbase.raw"), base, size);
	assert_int_equal(qcow2_create_overlay(at("cov.qcow2"), at("cbase.raw"), NULL), 0);
	assert_int_equal(sh("qemu-img check -q %s", at("cov.qcow2")), 0);
	/* Same directory: the name is relative, and the format is recorded. */
	assert_int_equal(sh("qemu-img info --backing-chain %s | grep -q '^backing file: cbase.raw'", at("cov.qcow2")), 0);
	assert_int_equal(sh("qemu-img info --backing-chain %s | grep -qx 'backing file format: raw'", at("cov.qcow2")), 0);
	assert_int_equal(sh("qemu-img info --backing-chain %s | grep -c '^image:' | grep -qx 2", at("cov.qcow2")), 0);
	assert_int_equal(sh("qemu-img info %s | grep -q 'compat: 1.1'", at("cov.qcow2")), 0);
	assert_int_equal(sh("qemu-img info %s | grep -q 'cluster_size: 65536'", at("cov.qcow2")), 0);
	qemu_agrees(at("cov.qcow2"), base, size);

	struct disk_image *d = open_image(at("cov.qcow2"), DISK_FORMAT_AUTO, false);
	assert_int_equal(disk_image_size(d), size);
	read_all_equals(d, base, size);
	memcpy(shadow, base, size);
	random_io(d, shadow, size, 200, true);
	disk_image_close(d);
	qemu_agrees(at("cov.qcow2"), shadow, size);
	assert_true(file_equals(at("cbase.raw"), base, size)); /* writes went to the overlay only */

	/* Never replaces a file; a backing file that is not what it is said to be leaves nothing. */
	assert_int_equal(qcow2_create_overlay(at("cov.qcow2"), at("cbase.raw"), NULL), -EEXIST);
	assert_int_equal(qcow2_create_overlay(at("notmade.qcow2"), at("cbase.raw"), "qcow2"), -EINVAL);
	assert_int_equal(access(at("notmade.qcow2"), F_OK), -1);
	free(base);
	free(shadow);
}

static void created_overlay_on_qcow2_elsewhere(void **state)
{
	(void)state;
	NEED_QEMU_IMG();
	uint64_t size = 2 * MIB;
	uint8_t *want = malloc(size);
	memset(want, 0, size);
	memset(want + 64 * 1024, 0x5a, 128 * 1024);
	assert_int_equal(sh("mkdir -p %s/sub && qemu-img create -q -f qcow2 %s/sub/q.qcow2 2M && "
			    "qemu-io -c 'write -q -P 0x5a 64k 128k' %s/sub/q.qcow2 >/dev/null", dir, dir, dir), 0);
	assert_int_equal(qcow2_create_overlay(at("qov.qcow2"), at("sub/q.qcow2"), NULL), 0);
	/* Another directory: the name is absolute. */
	char real[PATH_MAX];
	assert_non_null(realpath(at("sub/q.qcow2"), real));
	assert_int_equal(sh("qemu-img info %s | grep -q '^backing file: %s'", at("qov.qcow2"), real), 0);
	assert_int_equal(sh("qemu-img info %s | grep -qx 'backing file format: qcow2'", at("qov.qcow2")), 0);
	qemu_agrees(at("qov.qcow2"), want, size);
	struct disk_image *d = open_image(at("qov.qcow2"), DISK_FORMAT_QCOW2, true);
	read_all_equals(d, want, size);
	disk_image_close(d);
	free(want);
}

/*
 * A running disk frozen at a point: write A, switch, write B. The old top file holds A and
 * nothing after (byte for byte the same after B), the overlay's view is A then B.
 */
static void switch_onto_overlay(const char *top_name, enum disk_format format)
{
	char top[256]; /* at()'s buffers are reused */
	snprintf(top, sizeof(top), "%s", top_name);
	uint64_t size = 2 * MIB;
	uint8_t *a_view = malloc(size), *ab_view = malloc(size), buf[64 * 1024];
	struct disk_image *d = open_image(top, format, false);
	assert_int_equal(run(d, DISK_READ, 0, a_view, size), 0);
	fill_random(buf, sizeof(buf));
	assert_int_equal(run(d, DISK_WRITE, 100 * 512, buf, sizeof(buf)), 0);
	memcpy(a_view + 100 * 512, buf, sizeof(buf));

	/* A request still in flight (queued, not yet completed) refuses the switch. */
	struct iovec iov = { buf, 512 };
	struct disk_request pending = { .op = DISK_READ, .offset = 0, .len = 512, .iov = &iov, .iovcnt = 1,
					.done = on_done };
	assert_int_equal(disk_image_queue(d, &pending), 0);
	disk_image_submit(d);
	if (disk_image_in_flight(d))
		assert_int_equal(disk_image_reopen_onto_overlay(d, at("sw.qcow2")), -EBUSY);
	disk_image_drain(d);
	assert_int_equal(access(at("sw.qcow2"), F_OK), -1);

	assert_int_equal(disk_image_reopen_onto_overlay(d, at("sw.qcow2")), 0);
	assert_int_equal(disk_image_format(d), DISK_FORMAT_QCOW2);
	assert_string_equal(disk_image_path(d), at("sw.qcow2"));
	assert_int_equal(disk_image_size(d), size);
	size_t old_len;
	uint8_t *old_bytes = read_file(top, &old_len);

	memcpy(ab_view, a_view, size);
	fill_random(buf, sizeof(buf));
	assert_int_equal(run(d, DISK_WRITE, 120 * 512, buf, sizeof(buf)), 0); /* overlaps A's tail */
	memcpy(ab_view + 120 * 512, buf, sizeof(buf));
	random_io(d, ab_view, size, 100, true);
	read_all_equals(d, ab_view, size);
	disk_image_close(d);

	assert_true(file_equals(top, old_bytes, old_len));
	free(old_bytes);
	if (format == DISK_FORMAT_QCOW2)
		assert_int_equal(sh("qemu-img check -q %s", top), 0);
	write_file(at("a.raw"), a_view, size);
	assert_int_equal(sh("qemu-img compare -q -f raw -F %s %s %s", format == DISK_FORMAT_RAW ? "raw" : "qcow2",
			    at("a.raw"), top), 0);
	qemu_agrees(at("sw.qcow2"), ab_view, size);
	d = open_image(at("sw.qcow2"), DISK_FORMAT_AUTO, true);
	read_all_equals(d, ab_view, size);
	disk_image_close(d);
	unlink(at("sw.qcow2"));
	free(a_view);
	free(ab_view);
}

static void running_qcow2_disk_switches_onto_overlay(void **state)
{
	(void)state;
	NEED_QEMU_IMG();
	assert_int_equal(sh("qemu-img create -q -f qcow2 %s 2M && qemu-io -c 'write -q -P 3 0 1M' %s >/dev/null",
			    at("run.qcow2"), at("run.qcow2")), 0);
	switch_onto_overlay(at("run.qcow2"), DISK_FORMAT_AUTO);
}

static void running_raw_disk_switches_onto_overlay(void **state)
{
	(void)state;
	NEED_QEMU_IMG();
	uint8_t *b = malloc(2 * MIB);
	fill_random(b, 2 * MIB);
	write_file(at("run.raw"), b, 2 * MIB);
	free(b);
	switch_onto_overlay(at("run.raw"), DISK_FORMAT_RAW);
	/* A read-only image needs no overlay. */
	struct disk_image *d = open_image(at("run.raw"), DISK_FORMAT_RAW, true);
	assert_int_equal(disk_image_reopen_onto_overlay(d, at("ro.qcow2")), -EROFS);
	disk_image_close(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(overlay_on_a_raw_base),
		cmocka_unit_test(three_layer_chain),
		cmocka_unit_test(layouts_without_backing),
		cmocka_unit_test(compressed_clusters),
		cmocka_unit_test(damaged_images_are_refused),
		cmocka_unit_test(format_probing_and_forcing),
		cmocka_unit_test(backing_chain_loop_is_refused),
		cmocka_unit_test(created_overlay_reads_its_backing),
		cmocka_unit_test(created_overlay_on_qcow2_elsewhere),
		cmocka_unit_test(running_qcow2_disk_switches_onto_overlay),
		cmocka_unit_test(running_raw_disk_switches_onto_overlay),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
