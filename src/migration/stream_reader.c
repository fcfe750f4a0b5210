#include "migration/stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "lib/util.h"
#include "migration/stream_wire.h"

/* The most RAM vmon gives a guest (config.c's limit for --memory). */

/* "256 MiB", or the bytes when that is not a whole number of MiB. */
static const char *ram_words(uint64_t bytes, char *buf, size_t len)
{
	if (bytes % MiB == 0)
		snprintf(buf, len, "%llu MiB", (unsigned long long)(bytes / MiB));
	else
		snprintf(buf, len, "%llu bytes", (unsigned long long)bytes);
	return buf;
}

/*
 * len bytes of the record that starts at byte rec (or of the preamble). A stream that ends
 * exactly at a record boundary is a source that stopped; one that ends inside a record too, but
 * the message says where.
 */
static int read_exact(struct mig_reader *r, void *p, size_t len, uint64_t rec, const char *what, char *err,
		      size_t errlen)
{
	ssize_t n = r->io.read(r->io.ctx, p, len);
	if (n < 0)
		return mig_fail(err, errlen, (int)n, "migration stream: cannot read the %s at byte %llu: %s", what,
				(unsigned long long)rec, mig_io_why(&r->io, (int)n));
	uint64_t at = r->offset;
	r->offset += (uint64_t)n;
	if ((size_t)n == len)
		return 0;
	if (n == 0 && at == rec)
		return mig_fail(err, errlen, -EPIPE,
				"migration stream: the source closed the connection at byte %llu, before the end record "
				"(it stopped or failed)",
				(unsigned long long)at);
	return mig_fail(err, errlen, -EPIPE,
			"migration stream: the source closed the connection in the middle of the %s at byte %llu "
			"(%llu of its bytes arrived)",
			what, (unsigned long long)rec, (unsigned long long)(r->offset - rec));
}

/*
 * The next record's header, checked: its own checksum, a known type, a length within that type's
 * bound. *rec is where it starts.
 */
static int read_record_header(struct mig_reader *r, struct mig_rec_hdr *h, uint64_t *rec, char *err, size_t errlen)
{
	*rec = r->offset;
	int rc = read_exact(r, h, sizeof(*h), *rec, "record header", err, errlen);
	if (rc)
		return rc;
	if (mig_crc(0, h, offsetof(struct mig_rec_hdr, hdr_crc)) != h->hdr_crc)
		return mig_fail(err, errlen, -EINVAL,
				"migration stream: the record header at byte %llu is corrupted (checksum mismatch)",
				(unsigned long long)*rec);
	if (h->type == 0 || h->type >= MIG_REC_TYPES)
		return mig_fail(err, errlen, -EPROTO,
				"migration stream: the record at byte %llu has type %u, which this vmon does not know: "
				"the source speaks a newer stream format",
				(unsigned long long)*rec, h->type);
	bool ok = mig_rec_len_ok(h->type, h->len);
	if (!ok)
		return mig_fail(err, errlen, -EINVAL,
				"migration stream: the %s at byte %llu says it holds %u bytes, which no %s does",
				mig_rec_name(h->type), (unsigned long long)*rec, h->len, mig_rec_name(h->type));
	return 0;
}

/* The payload of the record whose header is h, into p, checked against its checksum. */
static int read_payload(struct mig_reader *r, const struct mig_rec_hdr *h, uint64_t rec, void *p, char *err,
			size_t errlen)
{
	int rc = read_exact(r, p, h->len, rec, mig_rec_name(h->type), err, errlen);
	if (rc)
		return rc;
	if (mig_crc(0, p, h->len) != h->crc)
		return mig_fail(err, errlen, -EINVAL, "migration stream: the %s at byte %llu is corrupted (checksum mismatch)",
				mig_rec_name(h->type), (unsigned long long)rec);
	return 0;
}

/* A whole record of the type the stream must have here. */
static int read_expected(struct mig_reader *r, uint32_t type, void *p, char *err, size_t errlen)
{
	struct mig_rec_hdr h;
	uint64_t rec;
	int rc = read_record_header(r, &h, &rec, err, errlen);
	if (rc)
		return rc;
	if (h.type != type)
		return mig_fail(err, errlen, -EINVAL, "migration stream: byte %llu holds a %s where the %s belongs",
				(unsigned long long)rec, mig_rec_name(h.type), mig_rec_name(type));
	return read_payload(r, &h, rec, p, err, errlen);
}

static int read_preamble(struct mig_reader *r, char *err, size_t errlen)
{
	struct mig_preamble p;
	ssize_t n = r->io.read(r->io.ctx, &p, sizeof(p));
	if (n < 0)
		return mig_fail(err, errlen, (int)n, "migration stream: cannot read from the source: %s",
				mig_io_why(&r->io, (int)n));
	r->offset = (uint64_t)n;
	if (n == 0)
		return mig_fail(err, errlen, -EPIPE, "migration stream: the source closed the connection without sending anything");
	size_t m = MIN((size_t)n, sizeof(p.magic));
	if (memcmp(&p, MIG_MAGIC, m) != 0)
		return mig_fail(err, errlen, -EPROTO,
				"migration stream: the peer is not a vmon sending a VM (no VMONMIGR signature at the "
				"start of what it sent)");
	if ((size_t)n < sizeof(p))
		return mig_fail(err, errlen, -EPIPE,
				"migration stream: the source closed the connection after %zd bytes, in the middle of the "
				"preamble", n);
	if (p.version != MIG_VERSION)
		return mig_fail(err, errlen, -EPROTO,
				"migration stream: the source sends stream format version %u; this vmon reads version %u "
				"only: migrate between vmon releases that share a stream format",
				p.version, MIG_VERSION);
	if (p.reserved)
		return mig_fail(err, errlen, -EINVAL, "migration stream: the preamble is damaged (reserved bytes are set)");
	return 0;
}

static int check_config(struct mig_reader *r, const struct mig_rec_config *c, char *err, size_t errlen)
{
	char ram[32];
	if (c->page_size != MIG_PAGE_SIZE)
		return mig_fail(err, errlen, -EPROTO, "migration stream: the source uses %u-byte pages; this vmon uses %u",
				c->page_size, MIG_PAGE_SIZE);
	if (c->ram_size == 0 || c->ram_size % MIG_PAGE_SIZE || c->ram_size > MIG_RAM_MAX)
		return mig_fail(err, errlen, -EINVAL,
				"migration stream: the configuration record gives the guest %s of RAM, which is not a "
				"whole number of pages up to 1 TiB",
				ram_words(c->ram_size, ram, sizeof(ram)));
	if (c->cpus == 0 || c->cpus > CONFIG_MAX_CPUS)
		return mig_fail(err, errlen, -EINVAL,
				"migration stream: the configuration record gives the guest %u vCPUs; vmon runs 1 to %d",
				c->cpus, CONFIG_MAX_CPUS);
	char vendor[13] = { 0 };
	memcpy(vendor, c->cpu_vendor, sizeof(c->cpu_vendor));
	if (!mig_printable(vendor, sizeof(vendor)) || c->reserved)
		return mig_fail(err, errlen, -EINVAL,
				"migration stream: the configuration record holds bytes vmon never writes (CPU vendor, "
				"reserved field)");
	r->cfg.ram_size = c->ram_size;
	r->cfg.cpus = c->cpus;
	r->cfg.cpuid_crc = c->cpuid_crc;
	memcpy(r->cfg.cpu.vendor, vendor, sizeof(r->cfg.cpu.vendor));
	r->cfg.cpu.signature = c->cpu_signature;
	memcpy(r->cfg.cpu.features, c->cpu_features, sizeof(r->cfg.cpu.features));
	return 0;
}

static int open_stream(struct mig_reader *r, char *err, size_t errlen)
{
	int rc = read_preamble(r, err, errlen);
	if (rc)
		return rc;
	struct mig_rec_header hr;
	if ((rc = read_expected(r, MIG_REC_HEADER, &hr, err, errlen)))
		return rc;
	if (hr.flags)
		return mig_fail(err, errlen, -EPROTO,
				"migration stream: the source asks for stream features this vmon does not have (flags "
				"0x%x): migrate to a vmon of the source's release or newer",
				hr.flags);
	if (!mig_printable(hr.vmon_version, sizeof(hr.vmon_version)) || hr.reserved)
		return mig_fail(err, errlen, -EINVAL,
				"migration stream: the header record holds bytes vmon never writes (version string, "
				"reserved field)");
	memcpy(r->vmon_version, hr.vmon_version, sizeof(r->vmon_version));
	r->flags = hr.flags;
	struct mig_rec_config c;
	if ((rc = read_expected(r, MIG_REC_CONFIG, &c, err, errlen)))
		return rc;
	return check_config(r, &c, err, errlen);
}

int mig_reader_open(struct mig_reader *r, int fd, char *err, size_t errlen)
{
	struct mig_io io = mig_fd_io(fd);
	int rc = mig_reader_open_io(r, &io, err, errlen);
	r->fd = fd;
	return rc;
}

int mig_reader_open_io(struct mig_reader *r, const struct mig_io *io, char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	r->fd = -1;
	r->io = *io;
	r->phase = MIG_R_FAILED;
	int rc = open_stream(r, err, errlen);
	if (!rc)
		r->phase = MIG_R_BODY;
	return rc;
}

int mig_reader_set_memory(struct mig_reader *r, const struct guest_mem *mem, char *err, size_t errlen)
{
	char have[32], want[32];
	if (mem->ram_size != r->cfg.ram_size)
		return mig_fail(err, errlen, -EINVAL,
				"migration stream: the guest has %s of RAM and the destination made %s for it",
				ram_words(r->cfg.ram_size, want, sizeof(want)), ram_words(mem->ram_size, have, sizeof(have)));
	r->mem = mem;
	return 0;
}

/* The page run of a memory or zero-run record: inside guest RAM, and its host mapping for writing. */
static uint8_t *page_run(struct mig_reader *r, uint32_t type, uint64_t rec, const struct mig_rec_pages *run,
			 char *err, size_t errlen)
{
	char ram[32];
	uint64_t max = r->mem->ram_size / MIG_PAGE_SIZE;
	uint8_t *host = NULL;
	if (run->gpa % MIG_PAGE_SIZE) {
		mig_fail(err, errlen, -EINVAL,
			 "migration stream: %s at byte %llu has a page range starting at 0x%llx, which is not on a page "
			 "boundary",
			 mig_rec_name(type), (unsigned long long)rec, (unsigned long long)run->gpa);
		return NULL;
	}
	if (run->count > 0 && run->count <= max)
		host = gpa_to_host_write(r->mem, run->gpa, run->count * MIG_PAGE_SIZE);
	if (!host) {
		/* The end is printed saturated: count comes from the stream and may be anything. */
		uint64_t len = run->count <= max ? run->count * MIG_PAGE_SIZE : UINT64_MAX;
		uint64_t end = run->gpa > UINT64_MAX - len ? UINT64_MAX : run->gpa + len;
		mig_fail(err, errlen, -EINVAL,
			 "migration stream: %s at byte %llu has a page range 0x%llx-0x%llx outside the guest's %s",
			 mig_rec_name(type), (unsigned long long)rec, (unsigned long long)run->gpa,
			 (unsigned long long)end, ram_words(r->mem->ram_size, ram, sizeof(ram)));
	}
	return host;
}

static int apply_pages(struct mig_reader *r, const struct mig_rec_hdr *h, uint64_t rec, struct mig_event *ev,
		       char *err, size_t errlen)
{
	struct mig_rec_pages run;
	memcpy(&run, r->buf, sizeof(run));
	if (h->type == MIG_REC_PAGES && run.count != (h->len - sizeof(run)) / MIG_PAGE_SIZE)
		return mig_fail(err, errlen, -EINVAL,
				"migration stream: the memory record at byte %llu says it holds %llu pages but carries %zu",
				(unsigned long long)rec, (unsigned long long)run.count,
				(size_t)((h->len - sizeof(run)) / MIG_PAGE_SIZE));
	uint8_t *host = page_run(r, h->type, rec, &run, err, errlen);
	if (!host)
		return -EINVAL;
	size_t len = (size_t)(run.count * MIG_PAGE_SIZE);
	if (h->type == MIG_REC_PAGES) {
		memcpy(host, r->buf + sizeof(run), len);
		guest_mem_wrote(r->mem, host, len);
	} else {
		/* Zeros that also give back to the host the memory the range held. */
		int rc = guest_mem_zero(r->mem, run.gpa, len);
		if (rc)
			return mig_fail(err, errlen, rc, "migration stream: cannot clear guest RAM at 0x%llx: %s",
					(unsigned long long)run.gpa, strerror(-rc));
	}
	r->round_pages += run.count;
	ev->kind = h->type == MIG_REC_PAGES ? MIG_EV_PAGES : MIG_EV_ZERO;
	ev->gpa = run.gpa;
	ev->count = run.count;
	return 0;
}

static int apply_round(struct mig_reader *r, uint64_t rec, struct mig_event *ev, char *err, size_t errlen)
{
	struct mig_rec_round m;
	memcpy(&m, r->buf, sizeof(m));
	if (m.round != r->round + 1 || m.reserved)
		return mig_fail(err, errlen, -EINVAL,
				"migration stream: the round marker at byte %llu is for round %u where round %u was due",
				(unsigned long long)rec, m.round, r->round + 1);
	if (m.pages != r->round_pages)
		return mig_fail(err, errlen, -EINVAL,
				"migration stream: the round marker at byte %llu says round %u sent %llu pages; %llu "
				"arrived",
				(unsigned long long)rec, m.round, (unsigned long long)m.pages,
				(unsigned long long)r->round_pages);
	r->round = m.round;
	r->round_pages = 0;
	ev->kind = MIG_EV_ROUND;
	ev->round = m.round;
	ev->count = m.pages;
	return 0;
}

static int read_state(struct mig_reader *r, const struct mig_rec_hdr *h, uint64_t rec, struct mig_event *ev,
		      char *err, size_t errlen)
{
	if (r->have_state)
		return mig_fail(err, errlen, -EINVAL, "migration stream: the state record at byte %llu is the second one",
				(unsigned long long)rec);
	uint8_t *buf = malloc(h->len);
	if (!buf)
		return mig_fail(err, errlen, -ENOMEM, "migration stream: out of memory for the %u-byte state record",
				h->len);
	int rc = read_payload(r, h, rec, buf, err, errlen);
	char why[256];
	if (!rc && (rc = snap_file_parse(&ev->state, buf, h->len, why, sizeof(why))))
		mig_fail(err, errlen, rc, "migration stream: the state record at byte %llu: %s", (unsigned long long)rec,
			 why);
	if (rc) {
		free(buf);
		return rc;
	}
	ev->state.buf = buf;
	r->have_state = true;
	ev->kind = MIG_EV_STATE;
	return 0;
}

static int apply_end(struct mig_reader *r, uint64_t rec, struct mig_event *ev, char *err, size_t errlen)
{
	struct mig_rec_end e;
	memcpy(&e, r->buf, sizeof(e));
	if (!r->have_state)
		return mig_fail(err, errlen, -EINVAL,
				"migration stream: the end record at byte %llu comes before the VM's state was sent",
				(unsigned long long)rec);
	if (r->round_pages)
		return mig_fail(err, errlen, -EINVAL,
				"migration stream: the end record at byte %llu follows %llu pages that no round marker "
				"closed",
				(unsigned long long)rec, (unsigned long long)r->round_pages);
	if (e.rounds != r->round || e.reserved)
		return mig_fail(err, errlen, -EINVAL,
				"migration stream: the end record at byte %llu counts %u rounds; %u arrived",
				(unsigned long long)rec, e.rounds, r->round);
	ev->kind = MIG_EV_END;
	ev->round = e.rounds;
	return 0;
}

static int apply_postcopy(struct mig_reader *r, uint64_t rec, struct mig_event *ev, char *err, size_t errlen)
{
	struct mig_rec_postcopy pc;
	memcpy(&pc, r->buf, sizeof(pc));
	uint64_t pages = r->mem->ram_size / MIG_PAGE_SIZE;
	if (!r->have_state || r->round_pages)
		return mig_fail(err, errlen, -EINVAL,
				"migration stream: the post-copy switch record at byte %llu comes before the VM's state "
				"and a closed round",
				(unsigned long long)rec);
	/* Runs are separated by at least one page, so there are at most half the pages plus one. */
	if (pc.pending > pages || pc.discard_runs > pc.pending || pc.discard_runs > pages / 2 + 1)
		return mig_fail(err, errlen, -EINVAL,
				"migration stream: the post-copy switch record at byte %llu announces %llu pages in %llu "
				"runs, which the guest's %llu pages cannot hold",
				(unsigned long long)rec, (unsigned long long)pc.pending,
				(unsigned long long)pc.discard_runs, (unsigned long long)pages);
	ev->kind = MIG_EV_POSTCOPY;
	ev->count = pc.discard_runs;
	ev->gpa = pc.pending;
	return 0;
}

static int next_record(struct mig_reader *r, struct mig_event *ev, char *err, size_t errlen)
{
	struct mig_rec_hdr h;
	uint64_t rec;
	int rc = read_record_header(r, &h, &rec, err, errlen);
	if (rc == -EPIPE && r->phase == MIG_R_ENDED && r->offset == rec)
		return mig_fail(err, errlen, -EPIPE, "migration stream: the stream ended at byte %llu with its end record",
				(unsigned long long)rec);
	if (rc)
		return rc;
	if (r->phase == MIG_R_ENDED)
		return mig_fail(err, errlen, -EINVAL, "migration stream: a %s at byte %llu comes after the end record",
				mig_rec_name(h.type), (unsigned long long)rec);
	if (h.type == MIG_REC_HEADER || h.type == MIG_REC_CONFIG)
		return mig_fail(err, errlen, -EINVAL, "migration stream: a second %s at byte %llu", mig_rec_name(h.type),
				(unsigned long long)rec);
	if (h.type == MIG_REC_HELLO || h.type == MIG_REC_VERDICT)
		return mig_fail(err, errlen, -EINVAL,
				"migration stream: a %s at byte %llu, which belongs to the connection's handshake before "
				"the stream",
				mig_rec_name(h.type), (unsigned long long)rec);
	if (h.type >= MIG_REC_DISCARD && h.type <= MIG_REC_POSTCOPY_DONE)
		return mig_fail(err, errlen, -EINVAL,
				"migration stream: a %s at byte %llu, which belongs to post-copy after its switch record",
				mig_rec_name(h.type), (unsigned long long)rec);
	if (h.type == MIG_REC_STATE)
		return read_state(r, &h, rec, ev, err, errlen);
	if (h.len > r->buf_len) { /* grows to the largest record, at most PAGES_LEN_MAX */
		uint8_t *b = realloc(r->buf, h.len);
		if (!b)
			return mig_fail(err, errlen, -ENOMEM, "migration stream: out of memory for the receive buffer");
		r->buf = b;
		r->buf_len = h.len;
	}
	if ((rc = read_payload(r, &h, rec, r->buf, err, errlen)))
		return rc;
	switch (h.type) {
	case MIG_REC_PAGES:
	case MIG_REC_ZERO:
		return apply_pages(r, &h, rec, ev, err, errlen);
	case MIG_REC_ROUND:
		return apply_round(r, rec, ev, err, errlen);
	case MIG_REC_POSTCOPY:
		return apply_postcopy(r, rec, ev, err, errlen);
	default:
		return apply_end(r, rec, ev, err, errlen);
	}
}

int mig_reader_next(struct mig_reader *r, struct mig_event *ev, char *err, size_t errlen)
{
	memset(ev, 0, sizeof(*ev));
	if (r->phase == MIG_R_FAILED || r->phase == MIG_R_START)
		return mig_fail(err, errlen, -EINVAL, "migration stream: the stream was refused already; it cannot go on");
	if (!r->mem)
		return mig_fail(err, errlen, -EINVAL, "migration stream: no guest memory to receive into");
	enum mig_reader_phase was = r->phase;
	int rc = next_record(r, ev, err, errlen);
	r->phase = rc ? MIG_R_FAILED : ev->kind == MIG_EV_END || ev->kind == MIG_EV_POSTCOPY ? MIG_R_ENDED : was;
	return rc;
}

void mig_reader_free(struct mig_reader *r)
{
	free(r->buf);
	r->buf = NULL;
	r->buf_len = 0;
}
