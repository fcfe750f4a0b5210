/* qcow2: the header, its extensions and the tables it points at, checked; the backing chain. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>

#include "backends/disk_uring.h"
#include "backends/qcow2_internal.h"

#define COMP QCOW2_COMP

/* Incompatible feature bits (header offset 72). */
#define INCOMPAT_DIRTY (1ULL << 0)
#define INCOMPAT_CORRUPT (1ULL << 1)
#define INCOMPAT_DATA_FILE (1ULL << 2)
#define INCOMPAT_COMPRESSION (1ULL << 3)
#define INCOMPAT_EXTL2 (1ULL << 4)

#define EXT_END 0
#define EXT_BACKING_FORMAT 0xe2792acau
#define EXT_DATA_FILE 0x44415441u

#define V2_HEADER_LEN 72
#define V3_HEADER_LEN 104
#define MAX_L1_BYTES (32u << 20)       /* tables larger than this are refused, as QEMU does */
#define MAX_REFTABLE_BYTES (8u << 20)
#define MAX_BACKING_NAME 1023
#define MAX_VIRTUAL_SIZE (1ULL << 55)

bool qcow2_probe(const uint8_t *buf, size_t len) { return len >= 4 && qcow2_be32(buf) == QCOW2_MAGIC; }

uint64_t qcow2_size(const struct qcow2 *q) { return q->size; }

int qcow2_pread(struct qcow2 *q, uint64_t off, void *buf, uint64_t len)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = pread(q->fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) {
			memset(p, 0, len); /* past the end of the file: clusters not yet written read as zeros */
			return 0;
		}
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

int qcow2_pwrite(struct qcow2 *q, uint64_t off, const void *buf, uint64_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = pwrite(q->fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

int qcow2_write_entry(struct qcow2 *q, uint64_t off, uint64_t v)
{
	uint8_t b[8];
	qcow2_put_be64(b, v);
	return qcow2_pwrite(q, off, b, sizeof(b));
}

bool qcow2_table_ok(const struct qcow2 *q, uint64_t off)
{
	return off && !(off & (q->cluster_size - 1)) && off < q->file_size && q->cluster_size <= q->file_size - off;
}

/* Logs "qcow2 image PATH: WHY" and returns -EINVAL (-ENOTSUP for unsupported features). */
static int refuse(const struct qcow2 *q, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int refuse(const struct qcow2 *q, int err, const char *fmt, ...)
{
	char why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_error(COMP, "qcow2 image %s: %s", q->path, why);
	return err;
}

static int check_features(struct qcow2 *q, uint64_t incompat, uint8_t compression_type)
{
	if (incompat & INCOMPAT_DIRTY)
		return refuse(q, -ENOTSUP, "was not closed cleanly (dirty bit, lazy refcounts): repair it with "
					   "qemu-img check -r all %s", q->path);
	if (incompat & INCOMPAT_CORRUPT)
		return refuse(q, -EINVAL, "is marked corrupt: repair it with qemu-img check -r all %s", q->path);
	if (incompat & INCOMPAT_DATA_FILE)
		return refuse(q, -ENOTSUP, "uses an external data file, which vmon does not support: convert it "
					   "with qemu-img convert -O qcow2");
	if (incompat & INCOMPAT_EXTL2)
		return refuse(q, -ENOTSUP, "uses extended L2 entries (subclusters), which vmon does not support: "
					   "convert it with qemu-img convert -O qcow2");
	if ((incompat & INCOMPAT_COMPRESSION) && compression_type != 0)
		return refuse(q, -ENOTSUP, "uses compression type %u (zstd?); vmon reads zlib only: convert it with "
					   "qemu-img convert -O qcow2 -o compression_type=zlib", compression_type);
	uint64_t unknown = incompat & ~(INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE |
					INCOMPAT_COMPRESSION | INCOMPAT_EXTL2);
	if (unknown)
		return refuse(q, -ENOTSUP, "has an unknown incompatible feature (bit %d of 0x%llx): vmon cannot "
					   "use it safely; convert it with qemu-img convert -O qcow2",
			      __builtin_ctzll(unknown), (unsigned long long)incompat);
	return 0;
}

/* Header extensions: only the backing file's format matters; an external data file is refused. */
static int read_extensions(struct qcow2 *q, const uint8_t *h, uint64_t hlen, uint64_t start, char *fmt,
			   size_t fmtlen)
{
	uint64_t pos = start;
	while (pos + 8 <= hlen) {
		uint32_t type = qcow2_be32(h + pos), len = qcow2_be32(h + pos + 4);
		if (type == EXT_END)
			return 0;
		if (len > hlen - pos - 8)
			return refuse(q, -EINVAL, "header extension 0x%08x at byte %llu runs past the first cluster", type,
				      (unsigned long long)pos);
		if (type == EXT_DATA_FILE)
			return refuse(q, -ENOTSUP, "names an external data file, which vmon does not support");
		if (type == EXT_BACKING_FORMAT) {
			if (len == 0 || len >= fmtlen || memchr(h + pos + 8, 0, len))
				return refuse(q, -EINVAL, "the backing format extension is malformed");
			memcpy(fmt, h + pos + 8, len);
			fmt[len] = 0;
		}
		pos += 8 + (((uint64_t)len + 7) & ~7ULL);
	}
	return 0;
}

static int load_table(struct qcow2 *q, uint64_t off, uint64_t entries, uint64_t **out)
{
	uint64_t *t = calloc(entries ? entries : 1, sizeof(uint64_t));
	if (!t)
		return -ENOMEM;
	int rc = qcow2_pread(q, off, t, entries * 8);
	if (rc) {
		free(t);
		return refuse(q, rc, "cannot read a table at byte %llu: %s", (unsigned long long)off, strerror(-rc));
	}
	for (uint64_t i = 0; i < entries; i++)
		t[i] = qcow2_be64((const uint8_t *)&t[i]);
	*out = t;
	return 0;
}

/* A table of bytes at off, cluster-aligned, inside the file. */
static bool range_ok(const struct qcow2 *q, uint64_t off, uint64_t bytes)
{
	return !(off & (q->cluster_size - 1)) && off <= q->file_size && bytes <= q->file_size - off;
}

static int check_tables(struct qcow2 *q, const uint8_t *h)
{
	q->l1_size = qcow2_be32(h + 36);
	q->l1_offset = qcow2_be64(h + 40);
	q->reftable_offset = qcow2_be64(h + 48);
	uint32_t reftable_clusters = qcow2_be32(h + 56);

	uint64_t per_l1 = q->cluster_size << q->l2_bits; /* bytes one L1 entry maps */
	uint64_t needed = (q->size + per_l1 - 1) / per_l1;
	if ((uint64_t)q->l1_size * 8 > MAX_L1_BYTES || q->l1_size < needed)
		return refuse(q, -EINVAL, "the L1 table has %u entries, %llu are needed for the disk size (at most %u)",
			      q->l1_size, (unsigned long long)needed, MAX_L1_BYTES / 8);
	if (q->l1_size && (q->l1_offset == 0 || !range_ok(q, q->l1_offset, (uint64_t)q->l1_size * 8)))
		return refuse(q, -EINVAL, "the L1 table offset %llu is not cluster-aligned inside the file (%llu bytes)",
			      (unsigned long long)q->l1_offset, (unsigned long long)q->file_size);
	uint64_t rt_bytes = (uint64_t)reftable_clusters << q->cluster_bits;
	if (reftable_clusters == 0 || rt_bytes > MAX_REFTABLE_BYTES || q->reftable_offset == 0 ||
	    !range_ok(q, q->reftable_offset, rt_bytes))
		return refuse(q, -EINVAL, "the refcount table (%u clusters at byte %llu) is not cluster-aligned inside "
					  "the file (%llu bytes) or larger than %u bytes",
			      reftable_clusters, (unsigned long long)q->reftable_offset, (unsigned long long)q->file_size,
			      MAX_REFTABLE_BYTES);
	q->reftable_entries = rt_bytes / 8;
	int rc = load_table(q, q->l1_offset, q->l1_size, &q->l1);
	if (!rc)
		rc = load_table(q, q->reftable_offset, q->reftable_entries, &q->reftable);
	if (rc)
		return rc;
	for (uint32_t i = 0; i < q->l1_size; i++) {
		uint64_t l2 = q->l1[i] & QCOW2_OFFSET_MASK;
		if ((q->l1[i] & 0x1ff) || (l2 && !qcow2_table_ok(q, l2)))
			return refuse(q, -EINVAL, "L1 entry %u (0x%llx) does not point at a cluster inside the file", i,
				      (unsigned long long)q->l1[i]);
	}
	for (uint64_t i = 0; i < q->reftable_entries; i++) {
		uint64_t b = q->reftable[i] & QCOW2_REFT_MASK;
		if ((q->reftable[i] & 0x1ff) || (b && !qcow2_table_ok(q, b)))
			return refuse(q, -EINVAL, "refcount table entry %llu (0x%llx) does not point at a cluster inside "
						  "the file", (unsigned long long)i, (unsigned long long)q->reftable[i]);
	}
	if (!q->reftable[0])
		return refuse(q, -EINVAL, "the refcount table has no block for the header's cluster");
	return 0;
}

/* Opens the backing file named in the header (relative names from the image's directory). */
static int open_backing(struct qcow2 *q, const uint8_t *h, uint64_t hlen, const char *fmt,
			const struct qcow2_options *opt)
{
	uint64_t off = qcow2_be64(h + 8);
	uint32_t len = qcow2_be32(h + 16);
	if (!off)
		return opt->below ? refuse(q, -EINVAL, "has no backing file, but was opened to go above one") : 0;
	if (opt->no_backing)
		return refuse(q, -EPERM, "has a backing file, which is not allowed here");
	if (len == 0 || len > MAX_BACKING_NAME || off > hlen || len > hlen - off || memchr(h + off, 0, len))
		return refuse(q, -EINVAL, "the backing file name (%u bytes at byte %llu) is not inside the first cluster",
			      len, (unsigned long long)off);
	if (opt->depth + 1 >= QCOW2_MAX_CHAIN)
		return refuse(q, -ELOOP, "the backing chain is deeper than %d images (a loop?)", QCOW2_MAX_CHAIN);
	char name[MAX_BACKING_NAME + 1], path[PATH_MAX];
	memcpy(name, h + off, len);
	name[len] = 0;
	if (name[0] == '/') {
		snprintf(path, sizeof(path), "%s", name);
	} else {
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s", q->path);
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dirname(dir), name) >= sizeof(path))
			return refuse(q, -ENAMETOOLONG, "the backing file path is too long");
	}
	if (fmt[0] && strcmp(fmt, "raw") && strcmp(fmt, "qcow2"))
		return refuse(q, -ENOTSUP, "its backing file %s has format '%s'; vmon reads raw and qcow2", path, fmt);
	if (opt->below) {
		q->backing = opt->below->qcow2;
		q->backing_fd = opt->below->qcow2 ? -1 : opt->below->raw_fd;
		q->backing_size = opt->below->qcow2 ? opt->below->qcow2->size : opt->below->raw_size;
		q->backing_borrowed = true;
		return 0;
	}
	uint64_t bytes = 0;
	int fd = disk_file_open(path, true, &bytes);
	if (fd < 0)
		return refuse(q, fd, "cannot open its backing file %s", path);
	bool is_qcow2;
	if (fmt[0]) {
		is_qcow2 = !strcmp(fmt, "qcow2");
	} else {
		uint8_t magic[4] = { 0 };
		is_qcow2 = pread(fd, magic, sizeof(magic), 0) == sizeof(magic) && qcow2_probe(magic, sizeof(magic));
	}
	if (!is_qcow2) {
		q->backing_fd = fd;
		q->backing_size = bytes;
		return 0;
	}
	struct qcow2_options bo = { .readonly = true, .depth = opt->depth + 1 };
	int rc = qcow2_open(fd, path, bytes, &bo, &q->backing);
	if (rc)
		return rc; /* the layer that failed said why, naming itself */
	q->backing_size = q->backing->size;
	return 0;
}

/* Version 3 writers must clear the autoclear bits they do not maintain (bitmaps, ...). */
static int clear_autoclear(struct qcow2 *q, const uint8_t *h)
{
	if (q->readonly || q->version < 3 || !qcow2_be64(h + 88))
		return 0;
	int rc = qcow2_write_entry(q, 88, 0);
	return rc ? refuse(q, rc, "cannot update the header: %s", strerror(-rc)) : 0;
}

static int parse(struct qcow2 *q, const struct qcow2_options *opt)
{
	uint8_t first[V3_HEADER_LEN + 8] = { 0 };
	if (q->file_size < V2_HEADER_LEN || qcow2_pread(q, 0, first, sizeof(first)))
		return refuse(q, -EINVAL, "the file is too short for a qcow2 header");
	if (!qcow2_probe(first, 4))
		return refuse(q, -EINVAL, "no qcow2 magic (QFI\\xfb) at its start");
	q->version = qcow2_be32(first + 4);
	if (q->version != 2 && q->version != 3)
		return refuse(q, -ENOTSUP, "qcow2 version %u; vmon reads versions 2 and 3", q->version);
	q->cluster_bits = qcow2_be32(first + 20);
	if (q->cluster_bits < 9 || q->cluster_bits > 21)
		return refuse(q, -EINVAL, "cluster_bits %u is outside 9..21", q->cluster_bits);
	q->cluster_size = 1ULL << q->cluster_bits;
	q->l2_bits = q->cluster_bits - 3;
	q->size = qcow2_be64(first + 24);
	if (q->size > MAX_VIRTUAL_SIZE)
		return refuse(q, -EINVAL, "the disk size %llu is larger than 2^55 bytes", (unsigned long long)q->size);
	if (qcow2_be32(first + 32))
		return refuse(q, -ENOTSUP, "is encrypted (method %u), which vmon does not support: decrypt it with "
					   "qemu-img convert", qcow2_be32(first + 32));

	/* The whole first cluster: header, extensions, backing file name. */
	uint64_t hlen = q->cluster_size < q->file_size ? q->cluster_size : q->file_size;
	uint8_t *h = calloc(1, q->cluster_size);
	if (!h)
		return -ENOMEM;
	int rc = qcow2_pread(q, 0, h, hlen);
	uint32_t header_len = V2_HEADER_LEN;
	q->refcount_bits = 16;
	if (!rc && q->version == 3) {
		header_len = qcow2_be32(h + 100);
		uint32_t order = qcow2_be32(h + 96);
		if (header_len < V3_HEADER_LEN || header_len > hlen || header_len % 8)
			rc = refuse(q, -EINVAL, "header length %u is not a multiple of 8 between %d and the first cluster",
				    header_len, V3_HEADER_LEN);
		else if (order > 6)
			rc = refuse(q, -EINVAL, "refcount order %u is larger than 6", order);
		else
			rc = check_features(q, qcow2_be64(h + 72), header_len > V3_HEADER_LEN ? h[104] : 0);
		if (!rc)
			q->refcount_bits = 1u << order;
	}
	if (!rc && qcow2_be32(h + 60) && !q->readonly)
		rc = refuse(q, -ENOTSUP, "has internal snapshots: vmon does not write such images; delete them "
					 "(qemu-img snapshot -d) or add ,readonly");
	q->refblock_entries = q->cluster_size * 8 / q->refcount_bits;
	char fmt[32] = "";
	if (!rc)
		rc = check_tables(q, h);
	if (!rc)
		rc = read_extensions(q, h, hlen, header_len, fmt, sizeof(fmt));
	if (!rc)
		rc = open_backing(q, h, hlen, fmt, opt);
	if (!rc)
		rc = clear_autoclear(q, h);
	free(h);
	return rc;
}

int qcow2_open(int fd, const char *path, uint64_t file_size, const struct qcow2_options *opt, struct qcow2 **out)
{
	struct qcow2 *q = calloc(1, sizeof(*q));
	if (!q || !(q->path = strdup(path))) {
		free(q);
		close(fd);
		return -ENOMEM;
	}
	q->fd = fd;
	q->backing_fd = -1;
	q->readonly = opt->readonly;
	q->file_size = file_size;
	int rc = parse(q, opt);
	if (!rc) {
		q->cluster_buf = malloc(q->cluster_size);
		q->dbuf = malloc(q->cluster_size);
		q->zbuf = malloc(2 * q->cluster_size); /* the most a compressed descriptor can span */
		if (!q->cluster_buf || !q->dbuf || !q->zbuf)
			rc = -ENOMEM;
	}
	if (rc) {
		if (q->backing_borrowed) {
			q->backing = NULL;
			q->backing_fd = -1;
		}
		qcow2_close(q);
		return rc;
	}
	q->backing_borrowed = false;
	*out = q;
	return 0;
}

static int relock(int fd, int how)
{
	/* Converting the lock of the one open file description vmon holds: never waits on itself. */
	return flock(fd, how | LOCK_NB) < 0 ? -errno : 0;
}

int qcow2_make_readonly(struct qcow2 *q)
{
	if (q->readonly)
		return 0;
	int rc = qcow2_flush(q);
	if (!rc)
		rc = relock(q->fd, LOCK_SH);
	if (!rc)
		q->readonly = true;
	return rc;
}

int qcow2_set_lock(struct qcow2 *q, int how)
{
	return relock(q->fd, how);
}

int qcow2_make_writable(struct qcow2 *q)
{
	int rc = relock(q->fd, LOCK_EX);
	if (!rc)
		q->readonly = false;
	return rc;
}

void qcow2_close(struct qcow2 *q)
{
	if (!q)
		return;
	qcow2_close(q->backing);
	if (q->backing_fd >= 0)
		close(q->backing_fd);
	qcow2_cache_free(&q->l2_cache);
	qcow2_cache_free(&q->ref_cache);
	free(q->l1);
	free(q->reftable);
	free(q->cluster_buf);
	free(q->dbuf);
	free(q->zbuf);
	if (q->fd >= 0)
		close(q->fd);
	free(q->path);
	free(q);
}
