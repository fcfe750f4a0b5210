/* qcow2: reference counts and cluster allocation. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <string.h>

#include "backends/qcow2_internal.h"

#define COMP QCOW2_COMP

/* Entry i of a refcount block: big-endian, refcount_bits wide (sub-byte widths from bit 0 up). */
static uint64_t block_get(const struct qcow2 *q, const uint8_t *b, uint64_t i)
{
	uint32_t bits = q->refcount_bits;
	if (bits < 8)
		return (b[i * bits / 8] >> (i * bits % 8)) & ((1u << bits) - 1);
	uint64_t v = 0;
	for (uint32_t k = 0; k < bits / 8; k++)
		v = v << 8 | b[i * (bits / 8) + k];
	return v;
}

/* Sets entry i; *byte and *nbytes say what changed, for the write-through. */
static void block_set(const struct qcow2 *q, uint8_t *b, uint64_t i, uint64_t v, uint64_t *byte, uint64_t *nbytes)
{
	uint32_t bits = q->refcount_bits;
	if (bits < 8) {
		uint64_t at = i * bits / 8;
		unsigned int shift = (unsigned int)(i * bits % 8), mask = ((1u << bits) - 1) << shift;
		b[at] = (uint8_t)((b[at] & ~mask) | ((v << shift) & mask));
		*byte = at;
		*nbytes = 1;
		return;
	}
	uint32_t n = bits / 8;
	for (uint32_t k = n; k-- > 0; v >>= 8)
		b[i * n + k] = (uint8_t)v;
	*byte = i * n;
	*nbytes = n;
}

static int load_block(struct qcow2 *q, uint64_t index, uint8_t **block)
{
	uint64_t off = q->reftable[index] & QCOW2_REFT_MASK;
	if (!qcow2_table_ok(q, off))
		return -EIO; /* checked at open; a block allocated since lies inside the file too */
	return qcow2_cache_get(q, &q->ref_cache, off, false, block);
}

int qcow2_refcount_get(struct qcow2 *q, uint64_t cluster, uint64_t *val)
{
	uint64_t index = cluster / q->refblock_entries;
	*val = 0;
	if (index >= q->reftable_entries || !(q->reftable[index] & QCOW2_REFT_MASK))
		return 0;
	uint8_t *b;
	int rc = load_block(q, index, &b);
	if (!rc)
		*val = block_get(q, b, cluster % q->refblock_entries);
	return rc;
}

static void grew(struct qcow2 *q, uint64_t cluster)
{
	uint64_t end = (cluster + 1) << q->cluster_bits;
	if (end > q->file_size)
		q->file_size = end;
}

/*
 * A new refcount block for table entry index, placed inside the range it describes (all free,
 * since no block counted it), so it counts itself and needs no other block: avoid is the
 * cluster the caller is about to take.
 */
static int new_block(struct qcow2 *q, uint64_t index, uint64_t avoid)
{
	uint64_t at = index * q->refblock_entries;
	if (at == avoid)
		at++;
	uint64_t off = at << q->cluster_bits;
	if (off >= QCOW2_MAX_HOST)
		return -ENOSPC;
	uint8_t *b;
	int rc = qcow2_cache_get(q, &q->ref_cache, off, true, &b);
	uint64_t byte, nbytes;
	if (!rc) {
		block_set(q, b, at % q->refblock_entries, 1, &byte, &nbytes);
		rc = qcow2_pwrite(q, off, b, q->cluster_size);
	}
	if (rc)
		return rc;
	grew(q, at);
	q->reftable[index] = off;
	return qcow2_write_entry(q, q->reftable_offset + index * 8, off);
}

static int set_refcount(struct qcow2 *q, uint64_t cluster, uint64_t v)
{
	uint64_t index = cluster / q->refblock_entries;
	if (index >= q->reftable_entries) {
		log_error(COMP, "qcow2 image %s: the refcount table is full (vmon does not grow it): convert the image "
				"with qemu-img convert -O qcow2, or use larger clusters", q->path);
		return -ENOSPC;
	}
	int rc = 0;
	if (!(q->reftable[index] & QCOW2_REFT_MASK))
		rc = new_block(q, index, cluster);
	uint8_t *b;
	if (!rc)
		rc = load_block(q, index, &b);
	if (rc)
		return rc;
	uint64_t byte, nbytes;
	block_set(q, b, cluster % q->refblock_entries, v, &byte, &nbytes);
	return qcow2_pwrite(q, (q->reftable[index] & QCOW2_REFT_MASK) + byte, b + byte, nbytes);
}

int qcow2_alloc_cluster(struct qcow2 *q, uint64_t *off)
{
	uint64_t limit = q->reftable_entries * q->refblock_entries;
	for (uint64_t c = q->free_hint; c < limit && (c << q->cluster_bits) < QCOW2_MAX_HOST; c++) {
		uint64_t v;
		int rc = qcow2_refcount_get(q, c, &v);
		if (rc)
			return rc;
		if (v)
			continue;
		if ((rc = set_refcount(q, c, 1)))
			return rc;
		q->free_hint = c + 1;
		grew(q, c);
		*off = c << q->cluster_bits;
		return 0;
	}
	log_error(COMP, "qcow2 image %s: no free cluster within the refcount table (vmon does not grow it): "
			"convert the image with qemu-img convert -O qcow2", q->path);
	return -ENOSPC;
}

int qcow2_free_cluster(struct qcow2 *q, uint64_t off)
{
	uint64_t c = off >> q->cluster_bits, v;
	int rc = qcow2_refcount_get(q, c, &v);
	if (rc)
		return rc;
	if (v == 0) {
		log_warn(COMP, "qcow2 image %s: freeing cluster %llu whose refcount is already 0 (the image is "
			       "inconsistent: check it with qemu-img check)", q->path, (unsigned long long)c);
		return -EIO;
	}
	if ((rc = set_refcount(q, c, v - 1)))
		return rc;
	if (v == 1) {
		if (c < q->free_hint)
			q->free_hint = c;
		/* Gives the space back to the host; a file system without holes keeps it, harmlessly. */
		(void)fallocate(q->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(c << q->cluster_bits),
				(off_t)q->cluster_size);
	}
	return 0;
}
