#include "migration/postcopy_source.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "migration/handshake.h"
#include "migration/postcopy_wire.h"
#include "migration/precopy_plan.h"

/* Requests waiting to be served; the reader waits when it is full (a destination asks for one page a fault). */
#define QUEUE_MAX 1024

struct source {
	const struct guest_mem *mem;
	struct pc_link link;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct mig_rec_page_request queue[QUEUE_MAX];
	unsigned int head, len;
	bool stop;    /* the writer is done (or failed): the reader ends */
	bool ended;   /* the end record is sent: silence from the destination is now a failure */
	bool done;    /* the destination's done record arrived */
	bool started; /* the destination said the guest runs there: from now on the VM exists only there */
	bool refused; /* it said it could not start it: why says why */
	uint64_t started_ns;
	bool failed;  /* the reader failed: why says why */
	char why[512];
	uint64_t requests;
	uint64_t *sent; /* pages sent in post-copy: the push skips those a request brought already */
	uint32_t bandwidth_mbps; /* the push's limit, 0 = none; requests are never held back */
};

static void *reader(void *arg)
{
	struct source *s = arg;
	uint8_t *buf = malloc(PC_REC_MAX);
	char err[512] = "post-copy: out of memory for the request buffer";
	int rc = buf ? 0 : -ENOMEM;
	while (!rc) {
		uint32_t type, len;
		uint64_t rec = s->link.rx_offset;
		rc = pc_read(&s->link, true, &type, buf, &len, err, sizeof(err));
		pthread_mutex_lock(&s->lock);
		bool stop = s->stop, ended = s->ended;
		pthread_mutex_unlock(&s->lock);
		if (rc == -EAGAIN && ended && !stop)
			rc = mig_fail(err, sizeof(err), -ETIMEDOUT,
				      "post-copy: the destination did not confirm that every page arrived: %s",
				      mig_conn_error(s->link.conn));
		if (rc == -EAGAIN) {
			rc = stop ? -ECANCELED : 0;
			continue;
		}
		if (rc)
			break;
		if (type == MIG_REC_VERDICT) {
			char reason[MIG_REASON_MAX];
			bool accept = false;
			pthread_mutex_lock(&s->lock);
			bool again = s->started;
			pthread_mutex_unlock(&s->lock);
			if (again || mig_verdict_parse(buf, reason, &accept)) {
				rc = mig_fail(err, sizeof(err), -EPROTO,
					      "post-copy: the destination's verdict at byte %llu is %s",
					      (unsigned long long)rec, again ? "its second" : "damaged");
				break;
			}
			if (!accept) {
				rc = mig_fail(err, sizeof(err), -EPERM, "post-copy: the destination could not start the guest: %s",
					      reason);
				pthread_mutex_lock(&s->lock);
				s->refused = true;
				pthread_mutex_unlock(&s->lock);
				break;
			}
			pthread_mutex_lock(&s->lock);
			s->started = true;
			s->started_ns = monotonic_ns();
			pthread_cond_broadcast(&s->cond);
			pthread_mutex_unlock(&s->lock);
			continue;
		}
		if (type == MIG_REC_POSTCOPY_DONE) {
			pthread_mutex_lock(&s->lock);
			if (!s->started) {
				pthread_mutex_unlock(&s->lock);
				rc = mig_fail(err, sizeof(err), -EPROTO,
					      "post-copy: the destination confirmed every page without saying the guest runs there");
				break;
			}
			s->done = true;
			pthread_cond_broadcast(&s->cond);
			pthread_mutex_unlock(&s->lock);
			break;
		}
		struct mig_rec_page_request q = { 0 };
		if (type != MIG_REC_PAGE_REQUEST)
			rc = mig_fail(err, sizeof(err), -EINVAL,
				      "post-copy: the destination sent a %s at byte %llu where page requests belong",
				      mig_rec_name(type), (unsigned long long)rec);
		else
			rc = pc_parse_request(s->mem, rec, buf, &q.gpa, &q.count, err, sizeof(err));
		if (rc)
			break;
		pthread_mutex_lock(&s->lock);
		while (s->len == QUEUE_MAX && !s->stop)
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->stop) { /* the writer is done: nothing serves the request any more */
			pthread_mutex_unlock(&s->lock);
			rc = -ECANCELED;
			break;
		}
		s->queue[(s->head + s->len++) % QUEUE_MAX] = q;
		s->requests++;
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
	}
	pthread_mutex_lock(&s->lock);
	if (rc && rc != -ECANCELED) {
		s->failed = true;
		snprintf(s->why, sizeof(s->why), "%s", err);
	}
	s->stop = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	free(buf);
	return NULL;
}

/* Marks count pages from gpa sent (the writer's own bitmap: no lock). */
static void mark_sent(struct source *s, uint64_t gpa, uint64_t count)
{
	uint64_t first = pc_page_index(s->mem, gpa);
	for (uint64_t i = first; i < first + count; i++)
		s->sent[i / 64] |= 1ULL << (i % 64);
}

static bool was_sent(const struct source *s, uint64_t gpa)
{
	uint64_t i = pc_page_index(s->mem, gpa);
	return s->sent[i / 64] & (1ULL << (i % 64));
}

/* count pages from gpa (inside one region): runs of zero pages as zero-run records, the rest with their data. */
static int send_pages(struct source *s, uint64_t gpa, uint64_t count, char *err, size_t errlen)
{
	const uint8_t *host = gpa_to_host(s->mem, gpa, count * MIG_PAGE_SIZE);
	for (uint64_t i = 0; i < count;) {
		bool zero = mig_page_is_zero(host + i * MIG_PAGE_SIZE);
		uint64_t j = i + 1;
		while (j < count && mig_page_is_zero(host + j * MIG_PAGE_SIZE) == zero)
			j++;
		struct mig_rec_pages run = { .gpa = gpa + i * MIG_PAGE_SIZE, .count = j - i };
		int rc = pc_write(&s->link, zero ? MIG_REC_ZERO : MIG_REC_PAGES, &run, sizeof(run),
				  zero ? NULL : host + i * MIG_PAGE_SIZE, zero ? 0 : (j - i) * MIG_PAGE_SIZE, err, errlen);
		if (rc)
			return rc;
		i = j;
	}
	mark_sent(s, gpa, count);
	return 0;
}

/* The next request, if any: 1, 0 when none waits, -EPIPE when the reader failed. */
static int next_request(struct source *s, struct mig_rec_page_request *q)
{
	pthread_mutex_lock(&s->lock);
	int got = s->failed ? -EPIPE : 0;
	if (!got && s->len) {
		*q = s->queue[s->head];
		s->head = (s->head + 1) % QUEUE_MAX;
		s->len--;
		got = 1;
		pthread_cond_broadcast(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
	return got;
}

/*
 * Holds the push back for delay_ns, or less when a request arrives (it is served at once, the
 * link's limit notwithstanding: a vCPU waits for it) or the reader stops.
 */
static void wait_for_turn(struct source *s, uint64_t delay_ns)
{
	struct timespec until = ns_to_timespec(monotonic_ns() + delay_ns);
	pthread_mutex_lock(&s->lock);
	while (!s->len && !s->stop && pthread_cond_timedwait(&s->cond, &s->lock, &until) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&s->lock);
}

/*
 * Serves every waiting request; then one background chunk, until none is left. The push keeps
 * every byte post-copy sends, requests included, at or below bandwidth_mbps on average.
 */
static int push(struct source *s, const struct dirty_pages *pending, struct postcopy_source_stats *st, char *err,
		size_t errlen)
{
	uint64_t cursor = 0, gpa = 0, left = 0;
	uint64_t start_ns = monotonic_ns(), start_bytes = mig_conn_bytes_sent(s->link.conn);
	for (;;) {
		struct mig_rec_page_request q;
		int got = next_request(s, &q);
		if (got < 0)
			return mig_fail(err, errlen, -EPIPE, "%s", s->why);
		if (got) {
			int rc = send_pages(s, q.gpa, q.count, err, errlen);
			if (rc)
				return rc;
			st->requested += q.count;
			continue;
		}
		if (!left && !dirty_pages_next_run(s->mem, pending, &cursor, &gpa, &left))
			return 0;
		uint64_t delay = precopy_pace_delay_ns(s->bandwidth_mbps, mig_conn_bytes_sent(s->link.conn) - start_bytes,
						       monotonic_ns() - start_ns);
		if (delay) {
			wait_for_turn(s, delay);
			continue;
		}
		uint64_t n = 0;
		while (left && was_sent(s, gpa)) { /* a request brought it already */
			gpa += MIG_PAGE_SIZE;
			left--;
		}
		while (n < MIN(left, (uint64_t)POSTCOPY_PUSH_PAGES) && !was_sent(s, gpa + n * MIG_PAGE_SIZE))
			n++;
		if (!n)
			continue;
		int rc = send_pages(s, gpa, n, err, errlen);
		if (rc)
			return rc;
		st->pushed += n;
		gpa += n * MIG_PAGE_SIZE;
		left -= n;
	}
}

int postcopy_source_run(const struct guest_mem *mem, struct mig_conn *conn, const struct dirty_pages *pending,
			uint32_t bandwidth_mbps, struct postcopy_source_stats *stats, char *err, size_t errlen)
{
	struct postcopy_source_stats st = { 0 };
	struct source *s = calloc(1, sizeof(*s));
	if (!s)
		return mig_fail(err, errlen, -ENOMEM, "post-copy: out of memory for the source's state");
	s->mem = mem;
	s->bandwidth_mbps = bandwidth_mbps;
	s->sent = calloc((pc_pages(mem) + 63) / 64, sizeof(uint64_t));
	if (!s->sent) {
		free(s);
		return mig_fail(err, errlen, -ENOMEM, "post-copy: out of memory for the source's page bitmap");
	}
	pc_link_init(&s->link, conn, "the destination");
	pthread_mutex_init(&s->lock, NULL);
	cond_init_monotonic(&s->cond); /* the push's waits for its turn are timed */
	pthread_t t;
	int rc = -pthread_create(&t, NULL, reader, s);
	if (rc) {
		mig_fail(err, errlen, rc, "post-copy: cannot start the page request reader: %s", strerror(-rc));
		goto out;
	}
	rc = push(s, pending, &st, err, errlen);
	struct mig_rec_postcopy_end end = { .pages = st.pushed + st.requested };
	pthread_mutex_lock(&s->lock);
	end.requests = s->requests;
	pthread_mutex_unlock(&s->lock);
	if (!rc)
		rc = pc_write(&s->link, MIG_REC_POSTCOPY_END, &end, sizeof(end), NULL, 0, err, errlen);
	pthread_mutex_lock(&s->lock);
	s->ended = true;
	/* The destination's done record, or the reader's failure: the reader's deadline bounds the wait. */
	while (!rc && !s->done && !s->failed && !s->stop)
		pthread_cond_wait(&s->cond, &s->lock);
	if (!rc && !s->done)
		rc = mig_fail(err, errlen, -EPIPE, "%s",
			      s->failed ? s->why : "post-copy: the destination did not confirm that every page arrived");
	s->stop = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(t, NULL);
	/* A refusal closes the connection: the push may fail on that first, but the refusal is the reason. */
	if (s->refused)
		rc = mig_fail(err, errlen, -EPERM, "%s", s->why);
	st.requests = s->requests;
	st.started = s->started;
	st.started_ns = s->started_ns;
out:
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	pc_link_destroy(&s->link);
	free(s->sent);
	free(s);
	if (stats)
		*stats = st;
	return rc;
}
