#include "vm/throttle.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "lib/util.h"
#include "vm/throttle_policy.h"

/* glibc 2.36 has no name for the target thread of SIGEV_THREAD_ID. */
#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

int throttle_init(struct throttle *t, uint64_t period_ns)
{
	memset(t, 0, sizeof(*t));
	t->period_ns = period_ns;
	int rc = cond_init_monotonic(&t->cond);
	if (rc)
		return rc;
	pthread_mutex_init(&t->lock, NULL);
	return 0;
}

void throttle_destroy(struct throttle *t)
{
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
}

void throttle_set(struct throttle *t, uint32_t pct)
{
	pthread_mutex_lock(&t->lock);
	/* A new grid only when switched on: a step from 20 % to 30 % keeps the vCPUs' timers. */
	if (pct && !atomic_load(&t->pct))
		atomic_store(&t->origin_ns, monotonic_ns());
	atomic_store(&t->pct, pct);
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

uint32_t throttle_get(struct throttle *t) { return atomic_load(&t->pct); }

void throttle_wake(struct throttle *t)
{
	pthread_mutex_lock(&t->lock);
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

static int arm(struct vcpu_throttle *v, struct throttle *t, uint64_t origin, int signo)
{
	if (!v->have_timer) {
		struct sigevent ev;
		memset(&ev, 0, sizeof(ev));
		ev.sigev_notify = SIGEV_THREAD_ID;
		ev.sigev_signo = signo;
		ev.sigev_notify_thread_id = gettid();
		if (timer_create(CLOCK_MONOTONIC, &ev, &v->timer) < 0)
			return -errno;
		v->have_timer = true;
	}
	uint64_t now = monotonic_ns();
	uint64_t since = now > origin ? now - origin : 0;
	struct itimerspec its = { .it_interval = ns_to_timespec(t->period_ns),
				  .it_value = ns_to_timespec(origin + throttle_next_tick_ns(t->period_ns, since)) };
	if (timer_settime(v->timer, TIMER_ABSTIME, &its, NULL) < 0)
		return -errno;
	v->armed_origin = origin;
	return 0;
}

static void disarm(struct vcpu_throttle *v)
{
	struct itimerspec off;
	memset(&off, 0, sizeof(off));
	timer_settime(v->timer, 0, &off, NULL);
	v->armed_origin = 0;
}

static void hold(struct vcpu_throttle *v, struct throttle *t, uint32_t pct, uint64_t origin,
		 bool (*must_leave)(void *), void *opaque)
{
	uint64_t start = monotonic_ns();
	uint64_t ns = throttle_hold_ns(pct, t->period_ns, start > origin ? start - origin : 0);
	if (!ns)
		return;
	struct timespec deadline = ns_to_timespec(start + ns);
	pthread_mutex_lock(&t->lock);
	while (!must_leave(opaque) && atomic_load(&t->pct) == pct && atomic_load(&t->origin_ns) == origin &&
	       pthread_cond_timedwait(&t->cond, &t->lock, &deadline) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&t->lock);
	atomic_fetch_add_explicit(&v->held_ns, monotonic_ns() - start, memory_order_relaxed);
}

int vcpu_throttle_on_kick(struct vcpu_throttle *v, struct throttle *t, int signo, bool (*must_leave)(void *),
			  void *opaque)
{
	uint32_t pct = atomic_load_explicit(&t->pct, memory_order_acquire);
	if (!pct && !v->armed_origin)
		return 0;
	if (!pct) {
		disarm(v);
		return 0;
	}
	if (v->broken)
		return 0;
	uint64_t origin = atomic_load(&t->origin_ns);
	if (origin != v->armed_origin) {
		int rc = arm(v, t, origin, signo);
		if (rc) {
			v->broken = true;
			return rc;
		}
	}
	hold(v, t, pct, origin, must_leave, opaque);
	return 0;
}

void vcpu_throttle_release(struct vcpu_throttle *v)
{
	if (v->have_timer)
		timer_delete(v->timer);
	v->have_timer = false;
	v->armed_origin = 0;
}
