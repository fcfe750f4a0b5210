/* Shared between the qcow2_*.c files only: the open image's state and the helpers they share. */
#ifndef VMON_BACKENDS_QCOW2_INTERNAL_H
#define VMON_BACKENDS_QCOW2_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "backends/qcow2.h"
#include "lib/log.h"

#define QCOW2_COMP "qcow2"
#define QCOW2_MAGIC 0x514649fbu

/* Table entry layout (qcow2 spec: L1, L2 and refcount table entries). */
#define QCOW2_OFFSET_MASK 0x00fffffffffffe00ULL /* bits 9-55: a host offset */
#define QCOW2_COPIED (1ULL << 63)
#define QCOW2_COMPRESSED (1ULL << 62)
#define QCOW2_ZERO 1ULL                         /* v3 L2 entries: reads as zeros */
#define QCOW2_REFT_MASK 0xfffffffffffffe00ULL
/* Host offsets stay below this (55 bits of offset in table entries). */
#define QCOW2_MAX_HOST (1ULL << 56)

#define QCOW2_CACHE_SLOTS 16

/* A few cluster-sized tables (L2 tables, refcount blocks) kept in memory, written through. */
struct qcow2_cache {
	uint64_t off[QCOW2_CACHE_SLOTS]; /* host offset of the table in the slot; 0 = empty */
	uint64_t used[QCOW2_CACHE_SLOTS];
	uint8_t *data[QCOW2_CACHE_SLOTS];
	uint64_t clock;
};

struct qcow2 {
	char *path;
	int fd;
	bool readonly;
	uint32_t version;
	uint32_t cluster_bits;
	uint64_t cluster_size;
	uint32_t l2_bits;        /* log2 of entries per L2 table */
	uint64_t size;           /* virtual size */
	uint64_t file_size;      /* grows as clusters are allocated */

	uint64_t *l1;            /* host order */
	uint32_t l1_size;
	uint64_t l1_offset;

	uint64_t *reftable;      /* host order */
	uint64_t reftable_entries;
	uint64_t reftable_offset;
	uint32_t refcount_bits;
	uint64_t refblock_entries;
	uint64_t free_hint;      /* no free cluster below this one */

	struct qcow2_cache l2_cache, ref_cache;

	/* The layer below: a qcow2 image or a raw file (backing_fd), or neither. */
	struct qcow2 *backing;
	int backing_fd;
	uint64_t backing_size;
	bool backing_borrowed; /* given by the caller (qcow2_options.below): not ours until the open succeeds */

	uint8_t *cluster_buf;    /* a cluster being assembled for copy-on-write */
	uint8_t *zbuf;           /* compressed input */
	uint8_t *dbuf;           /* the last decompressed cluster */
	uint64_t dbuf_entry;     /* its L2 entry (0: none) */
};

static inline uint64_t qcow2_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}
static inline uint32_t qcow2_be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
static inline void qcow2_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* pread/pwrite of the whole range: 0 or -errno (-EIO for a short write). pread zero-fills past EOF. */
int qcow2_pread(struct qcow2 *q, uint64_t off, void *buf, uint64_t len);
int qcow2_pwrite(struct qcow2 *q, uint64_t off, const void *buf, uint64_t len);
/* Writes one big-endian 64-bit table entry at off. */
int qcow2_write_entry(struct qcow2 *q, uint64_t off, uint64_t v);

/* True when a table of one cluster at off lies aligned inside the file. */
bool qcow2_table_ok(const struct qcow2 *q, uint64_t off);

/* qcow2_cache.c: the cached table at off (loaded if absent; zero-filled without reading if fresh). */
int qcow2_cache_get(struct qcow2 *q, struct qcow2_cache *c, uint64_t off, bool fresh, uint8_t **table);
void qcow2_cache_free(struct qcow2_cache *c);

/* qcow2_refcount.c */
int qcow2_refcount_get(struct qcow2 *q, uint64_t cluster, uint64_t *val);
/* A free cluster, its refcount now 1: *off is its host offset. */
int qcow2_alloc_cluster(struct qcow2 *q, uint64_t *off);
/* Drops one reference to the cluster at host offset off (freed, hole punched, at zero). */
int qcow2_free_cluster(struct qcow2 *q, uint64_t off);

/* qcow2_compressed.c */
/* Bytes and host offset of a compressed cluster's data, from its L2 entry. */
void qcow2_compressed_range(const struct qcow2 *q, uint64_t entry, uint64_t *off, uint64_t *len);
/* Decompresses the cluster of L2 entry into q->dbuf. */
int qcow2_read_compressed(struct qcow2 *q, uint64_t entry);
/* Drops the references a compressed cluster holds. */
int qcow2_free_compressed(struct qcow2 *q, uint64_t entry);

/* qcow2_map.c: the L2 entry of virtual cluster vc (0 when unallocated). */
int qcow2_l2_get(struct qcow2 *q, uint64_t vc, uint64_t *entry);
/* Sets it, allocating the L2 table when needed. */
int qcow2_l2_set(struct qcow2 *q, uint64_t vc, uint64_t entry);

#endif
