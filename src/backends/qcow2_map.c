/* qcow2: virtual cluster -> L2 entry, through the L1 table and the L2 cache. */
#include <errno.h>

#include "backends/qcow2_internal.h"

#define COMP QCOW2_COMP

/* The L2 table of virtual cluster vc: *l2 is 0 when there is none. */
static int l2_table(struct qcow2 *q, uint64_t vc, uint64_t *l2, uint8_t **table)
{
	uint64_t i = vc >> q->l2_bits;
	*l2 = 0;
	if (i >= q->l1_size)
		return -EIO; /* beyond the L1 table: the size check at open makes this unreachable */
	*l2 = q->l1[i] & QCOW2_OFFSET_MASK;
	if (!*l2)
		return 0;
	if (!qcow2_table_ok(q, *l2))
		return -EIO;
	return qcow2_cache_get(q, &q->l2_cache, *l2, false, table);
}

int qcow2_l2_get(struct qcow2 *q, uint64_t vc, uint64_t *entry)
{
	uint64_t l2;
	uint8_t *t;
	*entry = 0;
	int rc = l2_table(q, vc, &l2, &t);
	if (rc || !l2)
		return rc;
	*entry = qcow2_be64(t + (vc & ((1ULL << q->l2_bits) - 1)) * 8);
	return 0;
}

int qcow2_l2_set(struct qcow2 *q, uint64_t vc, uint64_t entry)
{
	uint64_t l2;
	uint8_t *t;
	int rc = l2_table(q, vc, &l2, &t);
	if (rc)
		return rc;
	if (!l2) {
		/* A new, empty table: on disk before the L1 entry points at it. */
		if ((rc = qcow2_alloc_cluster(q, &l2)) || (rc = qcow2_cache_get(q, &q->l2_cache, l2, true, &t)) ||
		    (rc = qcow2_pwrite(q, l2, t, q->cluster_size)))
			return rc;
		uint64_t i = vc >> q->l2_bits;
		q->l1[i] = l2 | QCOW2_COPIED;
		if ((rc = qcow2_write_entry(q, q->l1_offset + i * 8, q->l1[i])))
			return rc;
	}
	uint64_t at = (vc & ((1ULL << q->l2_bits) - 1)) * 8;
	qcow2_put_be64(t + at, entry);
	return qcow2_write_entry(q, l2 + at, entry);
}
