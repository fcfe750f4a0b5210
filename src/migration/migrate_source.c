#include "migration/migrate_source.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"
#include "lib/util.h"
#include "migration/handshake.h"
#include "migration/migration_address.h"
#include "migration/postcopy_source.h"
#include "migration/precopy_plan.h"
#include "migration/transport.h"

struct migrate_source {
	struct migrate_params p;
	struct migrate_source_vm vm;
	struct mig_address addr;
	struct mig_cancel cancel;
	pthread_t thread;
	atomic_bool running;

	pthread_mutex_t lock; /* guards prog and conn */
	struct migrate_progress prog;
	struct mig_conn *conn;
	uint64_t bytes_base; /* nothing before the connection */
};

const char *migrate_state_name(enum migrate_state s)
{
	switch (s) {
	case MIGRATE_NONE: return "none";
	case MIGRATE_CONNECTING: return "connecting";
	case MIGRATE_PRECOPY: return "precopy";
	case MIGRATE_STOPPED: return "stop-and-copy";
	case MIGRATE_POSTCOPY: return "postcopy";
	case MIGRATE_COMPLETED: return "completed";
	case MIGRATE_FAILED: return "failed";
	case MIGRATE_CANCELLED: return "cancelled";
	}
	return "unknown";
}

static void set_state(struct migrate_source *s, enum migrate_state st)
{
	pthread_mutex_lock(&s->lock);
	s->prog.state = st;
	pthread_mutex_unlock(&s->lock);
}

/* The pages of the current set still to go, for the progress report. */
static void set_remaining(struct migrate_source *s, uint64_t pages)
{
	pthread_mutex_lock(&s->lock);
	s->prog.pages_remaining = pages;
	pthread_mutex_unlock(&s->lock);
}

static bool cancelled(const struct migrate_source *s)
{
	return atomic_load(&s->cancel.fired);
}

/* Sleeps ns in small steps, so a cancel is seen within milliseconds. */
static void pace_sleep(const struct migrate_source *s, uint64_t ns)
{
	while (ns && !cancelled(s)) {
		uint64_t step = ns < 5000000 ? ns : 5000000;
		struct timespec ts = { 0, (long)step };
		nanosleep(&ts, NULL);
		ns -= step;
	}
}

struct send_ctx {
	struct migrate_source *s;
	struct mig_writer *w;
	uint64_t start_ns; /* of the migration, for pacing */
};

/* Sends every page of set, paced to bandwidth_mbps. 0 or -errno (err). */
static int send_set(struct send_ctx *c, const struct dirty_pages *set, char *err, size_t errlen)
{
	struct migrate_source *s = c->s;
	uint64_t cursor = 0, gpa, count, left = set->count;
	set_remaining(s, left);
	while (dirty_pages_next_run(s->vm.mem, set, &cursor, &gpa, &count)) {
		while (count) {
			if (cancelled(s))
				return err_fail(err, errlen, -ECANCELED, "the migration was cancelled");
			uint64_t n = count < MIG_PAGES_MAX ? count : MIG_PAGES_MAX;
			int rc = mig_writer_pages(c->w, s->vm.mem, gpa, n, err, errlen);
			if (rc)
				return rc;
			gpa += n * MIG_PAGE_SIZE;
			count -= n;
			left -= n < left ? n : left;
			set_remaining(s, left);
			uint64_t sent = mig_conn_bytes_sent(s->conn);
			pace_sleep(s, precopy_pace_delay_ns(s->p.bandwidth_mbps, sent, monotonic_ns() - c->start_ns));
		}
	}
	return 0;
}

static void fail(struct migrate_source *s, int rc, const char *why)
{
	pthread_mutex_lock(&s->lock);
	s->prog.state = rc == -ECANCELED || cancelled(s) ? MIGRATE_CANCELLED : MIGRATE_FAILED;
	snprintf(s->prog.reason, sizeof(s->prog.reason), "%s", why);
	pthread_mutex_unlock(&s->lock);
}

static void record_plan(struct migrate_source *s, const struct precopy_plan *pl, const struct precopy_decision *d)
{
	pthread_mutex_lock(&s->lock);
	s->prog.bandwidth_bps = (uint64_t)pl->bandwidth;
	s->prog.dirty_rate_pps = (uint64_t)pl->dirty_rate;
	s->prog.expected_downtime_ms = d->predicted_downtime_ms;
	s->prog.throttle_pct = d->throttle_pct;
	snprintf(s->prog.reason, sizeof(s->prog.reason), "%s", d->reason);
	pthread_mutex_unlock(&s->lock);
}

/*
 * The rounds while the guest runs. Returns 0 once the plan says stop-and-copy or post-copy
 * (*postcopy), with the pages dirtied in the last round still in *pending (dirty_log's buffer:
 * not yet sent).
 */
static int precopy_rounds(struct send_ctx *c, struct dirty_log *dl, const struct dirty_pages **pending,
			  bool *postcopy, char *err, size_t errlen)
{
	struct migrate_source *s = c->s;
	struct precopy_params pp;
	precopy_params_default(&pp);
	pp.max_downtime_ms = s->p.max_downtime_ms;
	pp.bandwidth_mbps = s->p.bandwidth_mbps;
	pp.postcopy = s->p.postcopy;
	struct precopy_plan plan;
	precopy_plan_init(&plan, &pp);
	const struct dirty_pages *set;
	int rc = dirty_log_fetch(dl, &set, err, errlen); /* the first: every page */
	for (uint32_t round = 1; !rc; round++) {
		pthread_mutex_lock(&s->lock);
		s->prog.round = round;
		pthread_mutex_unlock(&s->lock);
		uint64_t t0 = monotonic_ns(), b0 = mig_conn_bytes_sent(s->conn);
		if ((rc = send_set(c, set, err, errlen)) || (rc = mig_writer_round(c->w, err, errlen)))
			return rc;
		struct precopy_round r = { .bytes_sent = mig_conn_bytes_sent(s->conn) - b0,
					   .duration_ns = monotonic_ns() - t0 };
		if ((rc = dirty_log_fetch(dl, &set, err, errlen)))
			return rc;
		r.pages_dirtied = set->count;
		set_remaining(s, set->count);
		struct precopy_decision d = precopy_plan_round(&plan, &r);
		record_plan(s, &plan, &d);
		log_info("migrate", "round %u: %llu KiB sent in %llu ms, %llu pages dirtied; %s", round,
			 (unsigned long long)(r.bytes_sent / 1024), (unsigned long long)(r.duration_ns / 1000000),
			 (unsigned long long)r.pages_dirtied, d.reason);
		switch (d.action) {
		case PRECOPY_STOP_AND_COPY:
			*pending = set;
			return 0;
		case PRECOPY_FAIL:
			return err_fail(err, errlen, -ETIMEDOUT, "%s", d.reason);
		case PRECOPY_POSTCOPY:
			*pending = set;
			*postcopy = true;
			return 0;
		case PRECOPY_NEXT_ROUND:
			if (d.throttle_pct && !s->vm.ops->set_throttle)
				return err_fail(err, errlen, -ETIMEDOUT,
						"the migration does not converge: %s; this vmon cannot throttle the vCPUs "
						"yet, so give a longer max_downtime_ms or a faster link",
						d.reason);
			if (s->vm.ops->set_throttle)
				s->vm.ops->set_throttle(s->vm.ctx, d.throttle_pct);
			break;
		}
	}
	return rc;
}

/* The switch's first step, either way: the guest paused (the throttle lifted), its disks flushed and handed over. */
static int pause_for_switch(struct migrate_source *s, enum migrate_state state, bool *paused, uint64_t *pause_ns,
			    char *err, size_t errlen)
{
	const struct migrate_vm_ops *ops = s->vm.ops;
	int rc = ops->pause(s->vm.ctx, err, errlen);
	if (rc)
		return rc;
	*paused = true;
	*pause_ns = monotonic_ns();
	set_state(s, state);
	if (ops->set_throttle)
		ops->set_throttle(s->vm.ctx, 0);
	return ops->flush_disks(s->vm.ctx, err, errlen);
}

/* The paused VM's device and vCPU state, as a snapshot builds it, into the stream. */
static int send_state(struct send_ctx *c, char *err, size_t errlen)
{
	struct migrate_source *s = c->s;
	uint8_t *state = NULL;
	size_t len = 0;
	int rc = s->vm.ops->build_state(s->vm.ctx, &state, &len, err, errlen);
	if (rc)
		return rc;
	rc = mig_writer_state(c->w, state, len, err, errlen);
	free(state);
	return rc;
}

/* Pause, the rest of RAM, the state, the end record, the destination's answer. */
static int stop_and_copy(struct send_ctx *c, struct dirty_log *dl, const struct dirty_pages *pending,
			 bool *paused, uint64_t *pause_ns, char *err, size_t errlen)
{
	struct migrate_source *s = c->s;
	int rc = pause_for_switch(s, MIGRATE_STOPPED, paused, pause_ns, err, errlen);
	if (rc || (rc = send_set(c, pending, err, errlen)))
		return rc;
	const struct dirty_pages *last;
	if ((rc = dirty_log_fetch(dl, &last, err, errlen)) || (rc = send_set(c, last, err, errlen)) ||
	    (rc = mig_writer_round(c->w, err, errlen)) || (rc = send_state(c, err, errlen)) ||
	    (rc = mig_writer_end(c->w, err, errlen)))
		return rc;
	return mig_outcome_wait(s->conn, err, errlen);
}

/*
 * Pause, the state, the switch; then the destination runs the guest while every page it lacks
 * (dirtied since it was last sent) follows, the ones it faults on first. *started: the
 * destination said the guest runs there (at *started_ns), after which a failure loses the VM.
 */
static int switch_to_postcopy(struct send_ctx *c, struct dirty_log *dl, const struct dirty_pages *pending,
			      bool *paused, uint64_t *pause_ns, bool *started, uint64_t *started_ns, char *err,
			      size_t errlen)
{
	struct migrate_source *s = c->s;
	struct dirty_pages rest = { .count = 0 };
	/* pending is the log's buffer, which the next fetch overwrites. */
	int rc = dirty_pages_merge(&rest, s->vm.mem, pending);
	if (rc) {
		err_fail(err, errlen, rc, "out of memory for the pages post-copy sends");
		goto out;
	}
	const struct dirty_pages *last;
	if ((rc = pause_for_switch(s, MIGRATE_POSTCOPY, paused, pause_ns, err, errlen)) ||
	    (rc = dirty_log_fetch(dl, &last, err, errlen)))
		goto out;
	if ((rc = dirty_pages_merge(&rest, s->vm.mem, last))) {
		err_fail(err, errlen, rc, "out of memory for the pages post-copy sends");
		goto out;
	}
	if ((rc = send_state(c, err, errlen)) || (rc = mig_writer_postcopy(c->w, s->vm.mem, &rest, err, errlen)))
		goto out;
	set_remaining(s, rest.count);
	log_info("migrate", "switching to post-copy: the guest starts on the destination while %llu pages follow",
		 (unsigned long long)rest.count);
	struct postcopy_source_stats st;
	rc = postcopy_source_run(s->vm.mem, s->conn, &rest, s->p.bandwidth_mbps, &st, err, errlen);
	*started = st.started;
	*started_ns = st.started_ns;
	if (!rc)
		log_info("migrate", "post-copy complete: %llu pages pushed, %llu sent at the destination's request",
			 (unsigned long long)st.pushed, (unsigned long long)st.requested);
out:
	dirty_pages_free(&rest);
	return rc;
}

static void *migrate_thread(void *arg)
{
	struct migrate_source *s = arg;
	char err[MIGRATE_REASON_MAX] = "";
	uint64_t t0 = monotonic_ns(), pause_ns = 0, started_ns = 0;
	bool paused = false, tracking = false, postcopy = false, started = false;
	struct dirty_log dl;
	memset(&dl, 0, sizeof(dl));
	struct mig_writer w;
	memset(&w, 0, sizeof(w));
	struct mig_conn_opts o = { .timeout_ms = s->p.timeout_ms, .cancel = &s->cancel };
	struct mig_conn *conn = NULL;
	int rc = mig_conn_connect(&conn, &s->addr, &o, err, sizeof(err));
	if (!rc) {
		pthread_mutex_lock(&s->lock);
		s->conn = conn;
		pthread_mutex_unlock(&s->lock);
		struct mig_hello h = { s->vm.vmon_version, &s->vm.cfg, sizeof(s->vm.cfg), NULL, NULL };
		struct mig_peer peer;
		rc = mig_handshake(conn, &h, &peer, err, sizeof(err));
	}
	struct mig_io io = conn ? mig_conn_io(conn) : (struct mig_io){ 0 };
	if (!rc)
		rc = mig_writer_start_io(&w, &io, s->vm.vmon_version, &s->vm.cfg, err, sizeof(err));
	if (!rc && !(rc = dirty_log_start(&dl, s->vm.mem, s->vm.dirty_ops, s->vm.dirty_ctx, err, sizeof(err))))
		tracking = true;
	struct send_ctx c = { s, &w, t0 };
	const struct dirty_pages *pending = NULL;
	if (!rc) {
		set_state(s, MIGRATE_PRECOPY);
		rc = precopy_rounds(&c, &dl, &pending, &postcopy, err, sizeof(err));
	}
	if (!rc && postcopy)
		rc = switch_to_postcopy(&c, &dl, pending, &paused, &pause_ns, &started, &started_ns, err, sizeof(err));
	else if (!rc)
		rc = stop_and_copy(&c, &dl, pending, &paused, &pause_ns, err, sizeof(err));
	uint64_t end = monotonic_ns();
	if (tracking)
		dirty_log_stop(&dl);
	if (s->vm.ops->set_throttle && !rc)
		s->vm.ops->set_throttle(s->vm.ctx, 0);
	pthread_mutex_lock(&s->lock);
	s->prog.total_ms = (end - t0) / 1000000;
	/* Post-copy's guest runs again once the destination started it; pre-copy's once the answer came. */
	s->prog.downtime_ms = !paused ? 0 : (started ? started_ns - pause_ns : end - pause_ns) / 1000000;
	s->prog.bytes_sent = conn ? mig_conn_bytes_sent(conn) : 0;
	s->prog.pages_remaining = rc ? s->prog.pages_remaining : 0;
	s->conn = NULL;
	pthread_mutex_unlock(&s->lock);
	if (rc && started) {
		/* Neither side has all of it: the guest ran on there, and its newest pages are split. */
		char lost[MIGRATE_REASON_MAX];
		snprintf(lost, sizeof(lost), "post-copy failed after the guest started on the destination: %.440s", err);
		fail(s, rc, lost);
		log_error("migrate", "migration to %s: %s", s->p.destination, lost);
		s->vm.ops->lost(s->vm.ctx, lost);
	} else if (rc) {
		if (s->vm.ops->set_throttle)
			s->vm.ops->set_throttle(s->vm.ctx, 0);
		if (paused)
			s->vm.ops->resume(s->vm.ctx);
		fail(s, rc, err);
		log_error("migrate", "migration to %s failed, the guest keeps running here: %s", s->p.destination, err);
	} else {
		set_state(s, MIGRATE_COMPLETED);
		pthread_mutex_lock(&s->lock);
		s->prog.reason[0] = 0;
		pthread_mutex_unlock(&s->lock);
		log_info("migrate", "migrated to %s: the guest runs there now (downtime %llu ms, total %llu ms); stopping here",
			 s->p.destination, (unsigned long long)s->prog.downtime_ms, (unsigned long long)s->prog.total_ms);
		s->vm.ops->migrated(s->vm.ctx, s->p.destination);
	}
	mig_writer_free(&w);
	mig_conn_close(conn);
	atomic_store(&s->running, false);
	return NULL;
}

int migrate_source_start(struct migrate_source **out, const struct migrate_params *p,
			 const struct migrate_source_vm *vm, char *err, size_t errlen)
{
	*out = NULL;
	struct migrate_source *s = calloc(1, sizeof(*s));
	if (!s)
		return err_fail(err, errlen, -ENOMEM, "out of memory starting the migration");
	s->p = *p;
	if (!s->p.max_downtime_ms)
		s->p.max_downtime_ms = 300;
	s->vm = *vm;
	int rc = mig_address_parse(p->destination, &s->addr, err, errlen);
	if (rc) {
		free(s);
		return rc < 0 ? rc : -EINVAL;
	}
	if ((rc = mig_cancel_init(&s->cancel))) {
		free(s);
		return err_fail(err, errlen, rc, "cannot start the migration: %s", strerror(-rc));
	}
	pthread_mutex_init(&s->lock, NULL);
	s->prog.state = MIGRATE_CONNECTING;
	snprintf(s->prog.destination, sizeof(s->prog.destination), "%s", p->destination);
	atomic_store(&s->running, true);
	if ((rc = pthread_create(&s->thread, NULL, migrate_thread, s))) {
		mig_cancel_destroy(&s->cancel);
		pthread_mutex_destroy(&s->lock);
		free(s);
		return err_fail(err, errlen, -rc, "cannot start the migration thread: %s", strerror(rc));
	}
	*out = s;
	return 0;
}

void migrate_source_progress(struct migrate_source *s, struct migrate_progress *out)
{
	pthread_mutex_lock(&s->lock);
	*out = s->prog;
	if (s->conn)
		out->bytes_sent = mig_conn_bytes_sent(s->conn);
	pthread_mutex_unlock(&s->lock);
}

bool migrate_source_running(struct migrate_source *s)
{
	return atomic_load(&s->running);
}

void migrate_source_cancel(struct migrate_source *s)
{
	mig_cancel_fire(&s->cancel);
}

void migrate_source_free(struct migrate_source *s)
{
	if (!s)
		return;
	pthread_join(s->thread, NULL);
	mig_cancel_destroy(&s->cancel);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
