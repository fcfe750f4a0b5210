/* qcow2: compressed clusters (raw deflate streams, read only: a write gets a new cluster). */
#include <errno.h>
#include <string.h>
#include <zlib.h>

#include "backends/qcow2_internal.h"

#define COMP QCOW2_COMP

void qcow2_compressed_range(const struct qcow2 *q, uint64_t entry, uint64_t *off, uint64_t *len)
{
	unsigned int x = 62 - (q->cluster_bits - 8); /* offset bits; above them, extra 512-byte sectors */
	*off = entry & ((1ULL << x) - 1);
	uint64_t sectors = ((entry & ~(QCOW2_COPIED | QCOW2_COMPRESSED)) >> x) + 1;
	*len = (*off & ~511ULL) + sectors * 512 - *off;
}

int qcow2_read_compressed(struct qcow2 *q, uint64_t entry)
{
	if (entry == q->dbuf_entry)
		return 0;
	uint64_t off, len;
	qcow2_compressed_range(q, entry, &off, &len);
	if (off >= QCOW2_MAX_HOST || off >= q->file_size)
		return -EIO;
	if (len > q->file_size - off)
		len = q->file_size - off; /* the last compressed cluster may end with the file */
	int rc = qcow2_pread(q, off, q->zbuf, len);
	if (rc)
		return rc;
	z_stream z;
	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, -15) != Z_OK)
		return -ENOMEM;
	z.next_in = q->zbuf;
	z.avail_in = (uInt)len;
	z.next_out = q->dbuf;
	z.avail_out = (uInt)q->cluster_size;
	int zr = inflate(&z, Z_FINISH);
	bool ok = (zr == Z_STREAM_END || zr == Z_BUF_ERROR || zr == Z_OK) && z.avail_out == 0;
	inflateEnd(&z);
	q->dbuf_entry = 0;
	if (!ok) {
		log_warn(COMP, "qcow2 image %s: a compressed cluster at byte %llu does not decompress to one cluster",
			 q->path, (unsigned long long)off);
		return -EIO;
	}
	q->dbuf_entry = entry;
	return 0;
}

int qcow2_free_compressed(struct qcow2 *q, uint64_t entry)
{
	uint64_t off, len;
	qcow2_compressed_range(q, entry, &off, &len);
	uint64_t mask = ~(q->cluster_size - 1);
	if (off >= QCOW2_MAX_HOST)
		return -EIO;
	int rc = 0;
	for (uint64_t c = off & mask; !rc && c <= ((off + len - 1) & mask); c += q->cluster_size)
		rc = qcow2_free_cluster(q, c);
	if (q->dbuf_entry == entry)
		q->dbuf_entry = 0;
	return rc;
}
