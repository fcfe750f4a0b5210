/* qcow2: guest reads, writes, zeroing and discards, cluster by cluster. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "backends/qcow2_internal.h"

#define COMP QCOW2_COMP

enum kind { UNALLOCATED, ZERO, COMPRESSED, DATA };

/* What an L2 entry is; -EIO for an entry no valid image has. */
static int classify(const struct qcow2 *q, uint64_t e, enum kind *k, uint64_t *host)
{
	*host = e & QCOW2_OFFSET_MASK;
	if (e & QCOW2_COMPRESSED) {
		*k = COMPRESSED;
		return 0;
	}
	if ((e & 0x1fe) || (*host & (q->cluster_size - 1)) || (q->version < 3 && (e & QCOW2_ZERO)))
		return -EIO;
	*k = (e & QCOW2_ZERO) ? ZERO : *host ? DATA : UNALLOCATED;
	return 0;
}

static int bad_entry(const struct qcow2 *q, uint64_t vc, uint64_t e)
{
	log_warn(COMP, "qcow2 image %s: the L2 entry of cluster %llu (0x%llx) is invalid: check the image with "
		       "qemu-img check", q->path, (unsigned long long)vc, (unsigned long long)e);
	return -EIO;
}

/* Reads what the layer below shows at off (zeros past its end or without one). */
static int read_below(struct qcow2 *q, uint64_t off, uint8_t *buf, uint64_t len)
{
	uint64_t have = off < q->backing_size ? q->backing_size - off : 0;
	if (have > len)
		have = len;
	memset(buf + have, 0, len - have);
	if (!have)
		return 0;
	if (q->backing)
		return qcow2_read(q->backing, off, buf, have);
	while (have) {
		ssize_t n = pread(q->backing_fd, buf, have, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			memset(buf, 0, have); /* the base shrank: what is gone reads as zeros */
			return 0;
		}
		buf += n;
		off += (uint64_t)n;
		have -= (uint64_t)n;
	}
	return 0;
}

/* Reads len bytes at offset o of virtual cluster vc. */
static int read_chunk(struct qcow2 *q, uint64_t vc, uint64_t o, uint8_t *buf, uint64_t len)
{
	uint64_t e, host;
	enum kind k;
	int rc = qcow2_l2_get(q, vc, &e);
	if (rc)
		return rc;
	if (classify(q, e, &k, &host))
		return bad_entry(q, vc, e);
	switch (k) {
	case UNALLOCATED:
		return read_below(q, (vc << q->cluster_bits) + o, buf, len);
	case ZERO:
		memset(buf, 0, len);
		return 0;
	case COMPRESSED:
		if ((rc = qcow2_read_compressed(q, e)))
			return rc;
		memcpy(buf, q->dbuf + o, len);
		return 0;
	case DATA:
		if (host >= QCOW2_MAX_HOST)
			return bad_entry(q, vc, e);
		return qcow2_pread(q, host + o, buf, len);
	}
	return -EIO;
}

/*
 * Writes len bytes (zeros when data is NULL) at offset o of virtual cluster vc. A cluster that
 * is not plain allocated data gets a whole new cluster: the old contents (from below, zeros, or
 * decompressed) around the written part, then the L2 entry points at it.
 */
static int write_chunk(struct qcow2 *q, uint64_t vc, uint64_t o, const uint8_t *data, uint64_t len)
{
	uint64_t e, host;
	enum kind k;
	int rc = qcow2_l2_get(q, vc, &e);
	if (rc)
		return rc;
	if (classify(q, e, &k, &host) || host >= QCOW2_MAX_HOST)
		return bad_entry(q, vc, e);
	if (k == DATA) {
		if (data)
			return qcow2_pwrite(q, host + o, data, len);
		memset(q->cluster_buf, 0, len);
		return qcow2_pwrite(q, host + o, q->cluster_buf, len);
	}
	uint8_t *c = q->cluster_buf;
	if (len == q->cluster_size)
		rc = 0;
	else if (k == UNALLOCATED)
		rc = read_below(q, vc << q->cluster_bits, c, q->cluster_size);
	else if (k == ZERO)
		memset(c, 0, q->cluster_size);
	else if (!(rc = qcow2_read_compressed(q, e)))
		memcpy(c, q->dbuf, q->cluster_size);
	if (rc)
		return rc;
	if (data)
		memcpy(c + o, data, len);
	else
		memset(c + o, 0, len);
	/* A zero cluster with a preallocated host cluster keeps it. */
	uint64_t target = k == ZERO && host ? host : 0;
	if (!target && (rc = qcow2_alloc_cluster(q, &target)))
		return rc;
	if ((rc = qcow2_pwrite(q, target, c, q->cluster_size)) || (rc = qcow2_l2_set(q, vc, target | QCOW2_COPIED)))
		return rc;
	return k == COMPRESSED ? qcow2_free_compressed(q, e) : 0;
}

/* Makes whole cluster vc read as zeros (zeroing) or as "anything" (discard), freeing its storage. */
static int drop_cluster(struct qcow2 *q, uint64_t vc, bool zero)
{
	uint64_t e, host;
	enum kind k;
	int rc = qcow2_l2_get(q, vc, &e);
	if (rc)
		return rc;
	if (classify(q, e, &k, &host) || host >= QCOW2_MAX_HOST)
		return bad_entry(q, vc, e);
	bool below = (q->backing || q->backing_fd >= 0) && (vc << q->cluster_bits) < q->backing_size;
	uint64_t next;
	if (!below || (!zero && q->version < 3))
		next = 0;          /* reads as zeros (or, for a v2 discard, as the layer below) */
	else if (q->version >= 3)
		next = QCOW2_ZERO; /* hides the layer below */
	else
		return write_chunk(q, vc, 0, NULL, q->cluster_size); /* v2 over a backing file: real zeros */
	if (e == next)
		return 0;
	if ((rc = qcow2_l2_set(q, vc, next)))
		return rc;
	if (k == COMPRESSED)
		return qcow2_free_compressed(q, e);
	return host ? qcow2_free_cluster(q, host) : 0;
}

static bool range_ok(const struct qcow2 *q, uint64_t off, uint64_t len)
{
	return off <= q->size && len <= q->size - off;
}

enum op { OP_READ, OP_WRITE, OP_ZERO, OP_DISCARD };

static int each_cluster(struct qcow2 *q, enum op op, uint64_t off, uint8_t *buf, uint64_t len)
{
	if (!range_ok(q, off, len))
		return -EINVAL;
	if (op != OP_READ && q->readonly)
		return -EROFS;
	while (len) {
		uint64_t vc = off >> q->cluster_bits, o = off & (q->cluster_size - 1);
		uint64_t n = q->cluster_size - o < len ? q->cluster_size - o : len;
		int rc;
		bool whole = n == q->cluster_size;
		switch (op) {
		case OP_READ:
			rc = read_chunk(q, vc, o, buf, n);
			break;
		case OP_WRITE:
			rc = write_chunk(q, vc, o, buf, n);
			break;
		case OP_ZERO:
			rc = whole ? drop_cluster(q, vc, true) : write_chunk(q, vc, o, NULL, n);
			break;
		default:
			rc = whole ? drop_cluster(q, vc, false) : 0;
			break;
		}
		if (rc)
			return rc;
		off += n;
		len -= n;
		if (buf)
			buf += n;
	}
	return 0;
}

int qcow2_read(struct qcow2 *q, uint64_t off, void *buf, uint64_t len) { return each_cluster(q, OP_READ, off, buf, len); }

int qcow2_write(struct qcow2 *q, uint64_t off, const void *buf, uint64_t len)
{
	return each_cluster(q, OP_WRITE, off, (uint8_t *)buf, len);
}

int qcow2_write_zeroes(struct qcow2 *q, uint64_t off, uint64_t len) { return each_cluster(q, OP_ZERO, off, NULL, len); }

int qcow2_discard(struct qcow2 *q, uint64_t off, uint64_t len) { return each_cluster(q, OP_DISCARD, off, NULL, len); }

int qcow2_flush(struct qcow2 *q)
{
	if (q->readonly)
		return 0;
	return fdatasync(q->fd) < 0 ? -errno : 0;
}
