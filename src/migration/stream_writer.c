#include "migration/stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "migration/stream_wire.h"

static int write_failed(struct mig_writer *w, uint32_t type, int rc, char *err, size_t errlen)
{
	if (rc == -EPIPE || rc == -ECONNRESET)
		return mig_fail(err, errlen, rc,
			    "migration stream: the destination closed the connection while the %s at byte %llu was "
			    "sent (it stopped, or refused the migration)",
			    mig_rec_name(type), (unsigned long long)w->offset);
	return mig_fail(err, errlen, rc, "migration stream: cannot send the %s at byte %llu: %s", mig_rec_name(type),
		    (unsigned long long)w->offset, mig_io_why(&w->io, rc));
}

/* One record from a payload in two pieces (a fixed part and data), so page data is not copied twice. */
static int send_record(struct mig_writer *w, uint32_t type, const void *head, size_t head_len, const void *data,
		       size_t data_len, char *err, size_t errlen)
{
	uint32_t crc = mig_crc(mig_crc(0, head, head_len), data, data_len);
	struct mig_rec_hdr h = mig_rec_hdr_make(type, (uint32_t)(head_len + data_len), crc);
	int rc = w->io.write(w->io.ctx, &h, sizeof(h));
	if (!rc && head_len)
		rc = w->io.write(w->io.ctx, head, head_len);
	if (!rc && data_len)
		rc = w->io.write(w->io.ctx, data, data_len);
	if (rc)
		return write_failed(w, type, rc, err, errlen);
	w->offset += sizeof(h) + head_len + data_len;
	return 0;
}

int mig_writer_start(struct mig_writer *w, int fd, const char *vmon_version, const struct mig_config *cfg,
		     char *err, size_t errlen)
{
	struct mig_io io = mig_fd_io(fd);
	int rc = mig_writer_start_io(w, &io, vmon_version, cfg, err, errlen);
	w->fd = fd;
	return rc;
}

int mig_writer_start_io(struct mig_writer *w, const struct mig_io *io, const char *vmon_version,
			const struct mig_config *cfg, char *err, size_t errlen)
{
	memset(w, 0, sizeof(*w));
	w->fd = -1;
	w->io = *io;
	if (strlen(vmon_version) >= MIG_VMON_VERSION_MAX)
		return mig_fail(err, errlen, -EINVAL, "migration stream: the vmon version string is longer than %d bytes",
			    MIG_VMON_VERSION_MAX - 1);

	struct mig_preamble p = { .version = MIG_VERSION };
	memcpy(p.magic, MIG_MAGIC, sizeof(p.magic));
	int rc = w->io.write(w->io.ctx, &p, sizeof(p));
	if (rc)
		return write_failed(w, MIG_REC_HEADER, rc, err, errlen);
	w->offset = sizeof(p);

	struct mig_rec_header hr = { .flags = 0 };
	snprintf(hr.vmon_version, sizeof(hr.vmon_version), "%s", vmon_version);
	if ((rc = send_record(w, MIG_REC_HEADER, &hr, sizeof(hr), NULL, 0, err, errlen)))
		return rc;

	struct mig_rec_config c = {
		.ram_size = cfg->ram_size,
		.cpus = cfg->cpus,
		.page_size = MIG_PAGE_SIZE,
		.cpu_signature = cfg->cpu.signature,
		.cpuid_crc = cfg->cpuid_crc,
	};
	memcpy(c.cpu_vendor, cfg->cpu.vendor, sizeof(c.cpu_vendor));
	memcpy(c.cpu_features, cfg->cpu.features, sizeof(c.cpu_features));
	return send_record(w, MIG_REC_CONFIG, &c, sizeof(c), NULL, 0, err, errlen);
}

/* Up to MIG_PAGES_MAX pages, already copied into w->buf: zero runs and data runs, in order. */
static int send_chunk(struct mig_writer *w, uint64_t gpa, unsigned int n, char *err, size_t errlen)
{
	unsigned int i = 0;
	while (i < n) {
		bool zero = mig_page_is_zero(w->buf + (size_t)i * MIG_PAGE_SIZE);
		unsigned int j = i + 1;
		while (j < n && mig_page_is_zero(w->buf + (size_t)j * MIG_PAGE_SIZE) == zero)
			j++;
		struct mig_rec_pages run = { .gpa = gpa + (uint64_t)i * MIG_PAGE_SIZE, .count = j - i };
		int rc = zero ? send_record(w, MIG_REC_ZERO, &run, sizeof(run), NULL, 0, err, errlen)
			      : send_record(w, MIG_REC_PAGES, &run, sizeof(run), w->buf + (size_t)i * MIG_PAGE_SIZE,
					    (size_t)(j - i) * MIG_PAGE_SIZE, err, errlen);
		if (rc)
			return rc;
		w->round_pages += j - i;
		i = j;
	}
	return 0;
}

int mig_writer_pages(struct mig_writer *w, const struct guest_mem *mem, uint64_t gpa, uint64_t count, char *err,
		     size_t errlen)
{
	if (w->ended)
		return mig_fail(err, errlen, -EINVAL, "migration stream: pages sent after the end record");
	if (gpa % MIG_PAGE_SIZE || count > mem->ram_size / MIG_PAGE_SIZE ||
	    !gpa_to_host(mem, gpa, count * MIG_PAGE_SIZE))
		return mig_fail(err, errlen, -EINVAL,
			    "migration stream: %llu pages at 0x%llx are not a page-aligned range of guest RAM",
			    (unsigned long long)count, (unsigned long long)gpa);
	if (!w->buf && !(w->buf = malloc((size_t)MIG_PAGES_MAX * MIG_PAGE_SIZE)))
		return mig_fail(err, errlen, -ENOMEM, "migration stream: out of memory for the send buffer");
	while (count > 0) {
		unsigned int n = (unsigned int)MIN(count, (uint64_t)MIG_PAGES_MAX);
		size_t len = (size_t)n * MIG_PAGE_SIZE;
		int rc = guest_mem_read(mem, gpa, w->buf, len);
		if (!rc)
			rc = send_chunk(w, gpa, n, err, errlen);
		if (rc)
			return rc;
		gpa += len;
		count -= n;
	}
	return 0;
}

int mig_writer_round(struct mig_writer *w, char *err, size_t errlen)
{
	struct mig_rec_round r = { .round = w->round + 1, .pages = w->round_pages };
	int rc = send_record(w, MIG_REC_ROUND, &r, sizeof(r), NULL, 0, err, errlen);
	if (rc)
		return rc;
	w->round++;
	w->round_pages = 0;
	return 0;
}

int mig_writer_state(struct mig_writer *w, const uint8_t *state, size_t len, char *err, size_t errlen)
{
	if (w->state_sent || w->ended)
		return mig_fail(err, errlen, -EINVAL, "migration stream: the state was already sent");
	if (len > MIG_STATE_MAX)
		return mig_fail(err, errlen, -EFBIG, "migration stream: the VM's state takes %zu bytes, more than the %u MiB "
			    "a stream carries", len, MIG_STATE_MAX >> 20);
	int rc = send_record(w, MIG_REC_STATE, NULL, 0, state, len, err, errlen);
	if (!rc)
		w->state_sent = true;
	return rc;
}

int mig_writer_postcopy(struct mig_writer *w, const struct guest_mem *mem, const struct dirty_pages *pending, char *err,
			size_t errlen)
{
	if (!w->state_sent || w->round_pages || w->ended)
		return mig_fail(err, errlen, -EINVAL,
				"migration stream: the switch to post-copy must follow the state and a closed round");
	struct mig_rec_postcopy pc = { .pending = pending->count };
	uint64_t cursor = 0, gpa, count;
	while (dirty_pages_next_run(mem, pending, &cursor, &gpa, &count))
		pc.discard_runs++;
	int rc = send_record(w, MIG_REC_POSTCOPY, &pc, sizeof(pc), NULL, 0, err, errlen);
	for (cursor = 0; !rc && dirty_pages_next_run(mem, pending, &cursor, &gpa, &count);) {
		struct mig_rec_pages run = { .gpa = gpa, .count = count };
		rc = send_record(w, MIG_REC_DISCARD, &run, sizeof(run), NULL, 0, err, errlen);
	}
	if (!rc)
		w->ended = true;
	return rc;
}

int mig_writer_end(struct mig_writer *w, char *err, size_t errlen)
{
	if (!w->state_sent || w->round_pages || w->ended)
		return mig_fail(err, errlen, -EINVAL,
			    "migration stream: the end record must follow the state and a closed round");
	struct mig_rec_end e = { .rounds = w->round };
	int rc = send_record(w, MIG_REC_END, &e, sizeof(e), NULL, 0, err, errlen);
	if (!rc)
		w->ended = true;
	return rc;
}

void mig_writer_free(struct mig_writer *w)
{
	free(w->buf);
	w->buf = NULL;
}
