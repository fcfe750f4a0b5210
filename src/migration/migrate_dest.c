#include "migration/migrate_dest.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "lib/log.h"
#include "lib/util.h"
#include "migration/handshake.h"
#include "migration/stream_wire.h"

#define COMP "receive"

struct hello_check {
	const struct migrate_dest_params *p;
	struct mig_config cfg; /* the source's, once its hello passed */
};

int migrate_dest_check_hello(const struct migrate_dest_params *p, const struct mig_peer *peer, struct mig_config *out,
			     char *reason, size_t len)
{
	struct mig_config c;
	if (peer->compat_len != sizeof(c)) {
		snprintf(reason, len, "the source's hello carries %zu bytes of guest configuration and vmon %s expects %zu",
			 peer->compat_len, p->vmon_version, sizeof(c));
		return -EPROTO;
	}
	memcpy(&c, peer->compat, sizeof(c));
	if (c.ram_size == 0 || c.ram_size % MIG_PAGE_SIZE || c.ram_size > MIG_RAM_MAX || c.cpus == 0 ||
	    c.cpus > CONFIG_MAX_CPUS || !mig_printable(c.cpu.vendor, sizeof(c.cpu.vendor))) {
		snprintf(reason, len, "the source's hello describes a guest vmon cannot run (%u vCPUs, %llu bytes of RAM)",
			 c.cpus, (unsigned long long)c.ram_size);
		return -EINVAL;
	}
	if (p->check) {
		int rc = p->check(p->opaque, &c, reason, len);
		if (rc)
			return rc;
	}
	*out = c;
	return 0;
}

static int check_source(void *opaque, const struct mig_peer *peer, char *reason, size_t len)
{
	struct hello_check *h = opaque;
	return migrate_dest_check_hello(h->p, peer, &h->cfg, reason, len);
}

/* Reads the stream after the handshake into d's RAM and state: 0 at its end record, or -errno (err). */
static int read_stream(struct migrate_dest *d, const struct mig_config *hello, char *err, size_t errlen)
{
	struct mig_io io = mig_conn_io(d->conn);
	struct mig_reader r;
	int rc = mig_reader_open_io(&r, &io, err, errlen);
	if (!rc && (r.cfg.ram_size != hello->ram_size || r.cfg.cpus != hello->cpus))
		rc = err_fail(err, errlen, -EINVAL,
			      "migration stream: its configuration record (%u vCPUs, %llu bytes of RAM) differs from the "
			      "one the source's hello gave (%u vCPUs, %llu bytes)",
			      r.cfg.cpus, (unsigned long long)r.cfg.ram_size, hello->cpus,
			      (unsigned long long)hello->ram_size);
	if (!rc) {
		d->cfg = r.cfg;
		snprintf(d->source_version, sizeof(d->source_version), "%s", r.vmon_version);
		if ((rc = guest_mem_init(&d->mem, r.cfg.ram_size)))
			err_fail(err, errlen, rc, "cannot allocate %llu MiB for the incoming guest's RAM: %s",
				 (unsigned long long)(r.cfg.ram_size >> 20), strerror(-rc));
		else
			rc = mig_reader_set_memory(&r, &d->mem, err, errlen);
	}
	while (!rc) {
		struct mig_event ev;
		if ((rc = mig_reader_next(&r, &ev, err, errlen)))
			break;
		if (ev.kind == MIG_EV_PAGES || ev.kind == MIG_EV_ZERO) {
			d->pages += ev.count;
		} else if (ev.kind == MIG_EV_ROUND) {
			d->rounds = ev.round;
			log_info(COMP, "round %u: %llu pages (%.1f MiB of guest RAM) received", ev.round,
				 (unsigned long long)ev.count, (double)ev.count * MIG_PAGE_SIZE / (1 << 20));
		} else if (ev.kind == MIG_EV_STATE) {
			d->state = ev.state;
		} else if (ev.kind == MIG_EV_POSTCOPY) {
			d->postcopy = true;
			d->pc_offset = r.offset;
			d->pc_discard_runs = ev.count;
			d->pc_pending = ev.gpa;
			log_info(COMP, "the source switched to post-copy: %llu pages follow while the guest runs here",
				 (unsigned long long)ev.gpa);
			break;
		} else if (ev.kind == MIG_EV_END) {
			break;
		}
	}
	d->bytes = mig_conn_bytes_received(d->conn);
	mig_reader_free(&r);
	return rc;
}

/* Holds nothing: no connection, no RAM (its fd -1, as guest_mem_destroy expects), no state. */
static void clear(struct migrate_dest *d)
{
	memset(d, 0, sizeof(*d));
	d->mem.fd = -1;
}

static void reset(struct migrate_dest *d)
{
	mig_conn_close(d->conn);
	guest_mem_destroy(&d->mem);
	snap_file_free(&d->state);
	clear(d);
}

/* One source, from its connection to its stream's end. */
static int receive_one(struct migrate_dest *d, struct mig_listener *l, const struct migrate_dest_params *p, char *err,
		       size_t errlen)
{
	struct mig_conn_opts o = { .timeout_ms = p->timeout_ms };
	int rc = mig_listener_accept(l, p->accept_wait_ms, &o, &d->conn, err, errlen);
	if (rc)
		return rc;
	d->connected_ns = monotonic_ns();
	log_info(COMP, "a source connected from %s", mig_conn_peer(d->conn));
	struct hello_check h = { .p = p };
	struct mig_hello hello = { p->vmon_version, NULL, 0, check_source, &h };
	struct mig_peer peer;
	if ((rc = mig_handshake(d->conn, &hello, &peer, err, errlen)))
		return rc;
	log_info(COMP, "receiving a guest with %u vCPUs and %llu MiB of RAM from vmon %s at %s", h.cfg.cpus,
		 (unsigned long long)(h.cfg.ram_size >> 20), peer.vmon_version, mig_conn_peer(d->conn));
	if ((rc = read_stream(d, &h.cfg, err, errlen)))
		return rc;
	d->received_ns = monotonic_ns();
	log_info(COMP, "the guest arrived: %llu pages in %u rounds, %.1f MiB of stream in %.0f ms",
		 (unsigned long long)d->pages, d->rounds, (double)d->bytes / (1 << 20),
		 (double)(d->received_ns - d->connected_ns) / 1e6);
	return 0;
}

int migrate_dest_receive(struct migrate_dest *d, struct mig_listener *l, const struct migrate_dest_params *p,
			 char *err, size_t errlen)
{
	clear(d);
	for (int attempt = 1;; attempt++) {
		int rc = receive_one(d, l, p, err, errlen);
		if (!rc)
			return 0;
		bool accepted = d->conn != NULL;
		reset(d);
		/* No source came, or the listener broke: waiting again would not change that. */
		if (!accepted || (p->attempts && attempt >= p->attempts))
			return rc;
		log_error(COMP, "the migration failed and nothing of it is kept: %s; waiting for the source to try again",
			  err);
	}
}

int migrate_dest_answer(struct migrate_dest *d, const char *refusal, char *err, size_t errlen)
{
	if (!d->conn)
		return err_fail(err, errlen, -ENOTCONN, "the source is no longer connected");
	return mig_outcome_send(d->conn, refusal, err, errlen);
}

void migrate_dest_free(struct migrate_dest *d)
{
	reset(d);
}
