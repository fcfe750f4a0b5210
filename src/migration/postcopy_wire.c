#include "migration/postcopy_wire.h"

#include <errno.h>
#include <string.h>

#include "lib/util.h"

void pc_link_init(struct pc_link *l, struct mig_conn *conn, const char *from)
{
	l->conn = conn;
	l->from = from;
	l->rx_offset = 0;
	pthread_mutex_init(&l->wlock, NULL);
}

void pc_link_destroy(struct pc_link *l)
{
	pthread_mutex_destroy(&l->wlock);
}

static int read_failed(struct pc_link *l, ssize_t n, uint64_t rec, const char *what, char *err, size_t errlen)
{
	if (n >= 0)
		return mig_fail(err, errlen, -EPIPE, "post-copy: %s closed the connection in the %s at byte %llu", l->from,
				what, (unsigned long long)rec);
	return mig_fail(err, errlen, (int)n, "post-copy: cannot read the %s at byte %llu: %s", what,
			(unsigned long long)rec, mig_conn_error(l->conn));
}

int pc_read(struct pc_link *l, bool idle_ok, uint32_t *type, void *buf, uint32_t *len, char *err, size_t errlen)
{
	struct mig_rec_hdr h;
	uint64_t rec = l->rx_offset;
	ssize_t n = mig_conn_read_some(l->conn, &h, 1);
	if (n == -ETIMEDOUT && idle_ok)
		return -EAGAIN;
	if (n == 0)
		return mig_fail(err, errlen, -EPIPE, "post-copy: %s closed the connection at byte %llu (it stopped or failed)",
				l->from, (unsigned long long)rec);
	if (n < 0)
		return read_failed(l, n, rec, "record header", err, errlen);
	n = mig_conn_read(l->conn, (uint8_t *)&h + 1, sizeof(h) - 1);
	if (n != (ssize_t)sizeof(h) - 1)
		return read_failed(l, n, rec, "record header", err, errlen);
	l->rx_offset += sizeof(h);
	if (mig_crc(0, &h, offsetof(struct mig_rec_hdr, hdr_crc)) != h.hdr_crc)
		return mig_fail(err, errlen, -EINVAL, "post-copy: the record header at byte %llu is corrupted (checksum mismatch)",
				(unsigned long long)rec);
	if (h.type == 0 || h.type >= MIG_REC_TYPES || !mig_rec_len_ok(h.type, h.len) || h.len > PC_REC_MAX)
		return mig_fail(err, errlen, -EINVAL,
				"post-copy: the record at byte %llu (type %u, %u bytes) is no record post-copy has",
				(unsigned long long)rec, h.type, h.len);
	n = mig_conn_read(l->conn, buf, h.len);
	if (n != (ssize_t)h.len)
		return read_failed(l, n, rec, mig_rec_name(h.type), err, errlen);
	l->rx_offset += h.len;
	if (mig_crc(0, buf, h.len) != h.crc)
		return mig_fail(err, errlen, -EINVAL, "post-copy: the %s at byte %llu is corrupted (checksum mismatch)",
				mig_rec_name(h.type), (unsigned long long)rec);
	*type = h.type;
	*len = h.len;
	return 0;
}

int pc_write(struct pc_link *l, uint32_t type, const void *head, size_t head_len, const void *data, size_t data_len,
	     char *err, size_t errlen)
{
	uint32_t crc = mig_crc(mig_crc(0, head, head_len), data, data_len);
	struct mig_rec_hdr h = mig_rec_hdr_make(type, (uint32_t)(head_len + data_len), crc);
	pthread_mutex_lock(&l->wlock);
	int rc = mig_conn_write(l->conn, &h, sizeof(h));
	if (!rc && head_len)
		rc = mig_conn_write(l->conn, head, head_len);
	if (!rc && data_len)
		rc = mig_conn_write(l->conn, data, data_len);
	pthread_mutex_unlock(&l->wlock);
	if (rc)
		return mig_fail(err, errlen, rc, "post-copy: cannot send a %s: %s", mig_rec_name(type),
				mig_conn_error(l->conn));
	return 0;
}

int pc_check_run(const struct guest_mem *mem, const char *what, uint64_t rec, uint64_t gpa, uint64_t count,
		 uint64_t max, char *err, size_t errlen)
{
	if (gpa % MIG_PAGE_SIZE)
		return mig_fail(err, errlen, -EINVAL,
				"post-copy: the %s at byte %llu starts at 0x%llx, which is not on a page boundary", what,
				(unsigned long long)rec, (unsigned long long)gpa);
	if (count == 0 || count > max)
		return mig_fail(err, errlen, -EINVAL, "post-copy: the %s at byte %llu is for %llu pages; 1 to %llu are allowed",
				what, (unsigned long long)rec, (unsigned long long)count, (unsigned long long)max);
	if (!gpa_to_host(mem, gpa, count * MIG_PAGE_SIZE))
		return mig_fail(err, errlen, -EINVAL,
				"post-copy: the %s at byte %llu is for %llu pages at 0x%llx, outside the guest's RAM", what,
				(unsigned long long)rec, (unsigned long long)count, (unsigned long long)gpa);
	return 0;
}

int pc_parse_request(const struct guest_mem *mem, uint64_t rec, const void *payload, uint64_t *gpa, uint32_t *count,
		     char *err, size_t errlen)
{
	struct mig_rec_page_request q;
	memcpy(&q, payload, sizeof(q));
	if (q.reserved)
		return mig_fail(err, errlen, -EINVAL, "post-copy: the page request at byte %llu holds bytes vmon never writes",
				(unsigned long long)rec);
	int rc = pc_check_run(mem, "page request", rec, q.gpa, q.count, MIG_PAGES_MAX, err, errlen);
	if (rc)
		return rc;
	*gpa = q.gpa;
	*count = q.count;
	return 0;
}

uint64_t pc_page_index(const struct guest_mem *mem, uint64_t gpa)
{
	uint64_t base = 0;
	for (int i = 0; i < mem->nregions; i++) {
		const struct guest_mem_region *r = &mem->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size)
			return base + (gpa - r->gpa) / MIG_PAGE_SIZE;
		base += r->size / MIG_PAGE_SIZE;
	}
	return UINT64_MAX;
}
