#include "backends/event_loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "sandbox/sandbox.h"

#define COMP "event-loop"
#define MAX_EVENTS 64

struct handler {
	int fd;
	event_fn fn;
	void *opaque;
	bool dead;            /* removed: skip it, free it once no epoll batch can refer to it */
	struct handler *next;
};

struct call {
	event_call_fn fn;
	void *opaque;
	bool done;
	struct call *next;
};

struct event_loop {
	int epfd;
	int wake_fd; /* eventfd: stop requests and queued calls */
	pthread_t thread;
	bool started;
	_Atomic bool stopping;
	/*
	 * Held by the loop thread while it runs callbacks and by anyone changing the handler list,
	 * so a remove returns only after the callback in flight has finished. Recursive so a
	 * callback may remove handlers (itself included) on the loop thread.
	 */
	pthread_mutex_t lock;
	struct handler *handlers;
	struct handler *graveyard; /* dead handlers, freed before the next epoll_wait */
	/* Queued calls from other threads, under call_lock; finished calls signal call_done. */
	pthread_mutex_t call_lock;
	pthread_cond_t call_done;
	struct call *calls, **calls_tail;
	bool accepting; /* under call_lock: the loop thread will run queued calls */
	/*
	 * Paused (the VM is paused): no fd or timer callback runs, but queued calls still do, so
	 * a snapshot can read device state on the loop thread. Changed under lock.
	 */
	_Atomic bool paused;
	pthread_cond_t pause_cond; /* with lock: wakes a paused loop for calls or resume */
};

struct event_timer {
	struct event_loop *el;
	int fd;
	event_call_fn fn;
	void *opaque;
};

static void wake(struct event_loop *el)
{
	uint64_t one = 1;
	if (write(el->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn(COMP, "cannot wake the event loop: %s", strerror(errno));
}

int event_loop_create(struct event_loop **out)
{
	struct event_loop *el = calloc(1, sizeof(*el));
	if (!el)
		return -ENOMEM;
	el->epfd = epoll_create1(EPOLL_CLOEXEC);
	el->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (el->epfd < 0 || el->wake_fd < 0) {
		int rc = -errno;
		log_error(COMP, "cannot create the event loop's epoll/eventfd: %s", strerror(-rc));
		if (el->epfd >= 0)
			close(el->epfd);
		if (el->wake_fd >= 0)
			close(el->wake_fd);
		free(el);
		return rc;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL }; /* NULL marks the wake fd */
	if (epoll_ctl(el->epfd, EPOLL_CTL_ADD, el->wake_fd, &ev) < 0) {
		int rc = -errno;
		close(el->epfd);
		close(el->wake_fd);
		free(el);
		return rc;
	}
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&el->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	pthread_mutex_init(&el->call_lock, NULL);
	pthread_cond_init(&el->call_done, NULL);
	pthread_cond_init(&el->pause_cond, NULL);
	el->calls_tail = &el->calls;
	*out = el;
	return 0;
}

static void free_list(struct handler *h)
{
	while (h) {
		struct handler *n = h->next;
		free(h);
		h = n;
	}
}

void event_loop_destroy(struct event_loop *el)
{
	if (!el)
		return;
	event_loop_stop(el);
	free_list(el->handlers);
	free_list(el->graveyard);
	close(el->epfd);
	close(el->wake_fd);
	pthread_mutex_destroy(&el->lock);
	pthread_mutex_destroy(&el->call_lock);
	pthread_cond_destroy(&el->call_done);
	pthread_cond_destroy(&el->pause_cond);
	free(el);
}

/* Runs the calls queued by other threads; each caller waits for its own call's done flag. */
static void run_queued_calls(struct event_loop *el)
{
	pthread_mutex_lock(&el->call_lock);
	while (el->calls) {
		struct call *c = el->calls;
		el->calls = c->next;
		if (!el->calls)
			el->calls_tail = &el->calls;
		pthread_mutex_unlock(&el->call_lock);
		c->fn(c->opaque);
		pthread_mutex_lock(&el->call_lock);
		c->done = true;
		pthread_cond_broadcast(&el->call_done);
	}
	pthread_mutex_unlock(&el->call_lock);
}

static void *loop_thread(void *arg)
{
	struct event_loop *el = arg;
	struct epoll_event events[MAX_EVENTS];
	sandbox_enter(SANDBOX_EVENT_LOOP);
	while (!atomic_load(&el->stopping)) {
		pthread_mutex_lock(&el->lock);
		struct handler *dead = el->graveyard;
		el->graveyard = NULL;
		pthread_mutex_unlock(&el->lock);
		free_list(dead);

		int n = epoll_wait(el->epfd, events, MAX_EVENTS, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error(COMP, "epoll_wait failed: %s; device I/O stops", strerror(errno));
			break;
		}
		pthread_mutex_lock(&el->lock);
		while (atomic_load(&el->paused) && !atomic_load(&el->stopping)) {
			run_queued_calls(el);
			if (atomic_load(&el->paused) && !atomic_load(&el->stopping))
				pthread_cond_wait(&el->pause_cond, &el->lock);
		}
		for (int i = 0; i < n && !atomic_load(&el->stopping); i++) {
			struct handler *h = events[i].data.ptr;
			if (!h) {
				uint64_t v;
				if (read(el->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					log_warn(COMP, "reading the wake eventfd failed: %s", strerror(errno));
				run_queued_calls(el);
			} else if (!h->dead) {
				h->fn(h->opaque, events[i].events);
			}
		}
		pthread_mutex_unlock(&el->lock);
	}
	return NULL;
}

int event_loop_run_ready(struct event_loop *el, int timeout_ms)
{
	if (el->started)
		return -EBUSY;
	struct epoll_event events[MAX_EVENTS];
	int n = epoll_wait(el->epfd, events, MAX_EVENTS, timeout_ms);
	if (n < 0)
		return -errno;
	int ran = 0;
	pthread_mutex_lock(&el->lock);
	for (int i = 0; i < n; i++) {
		struct handler *h = events[i].data.ptr;
		if (h && !h->dead) {
			h->fn(h->opaque, events[i].events);
			ran++;
		}
	}
	struct handler *dead = el->graveyard;
	el->graveyard = NULL;
	pthread_mutex_unlock(&el->lock);
	free_list(dead);
	return ran;
}

int event_loop_start(struct event_loop *el)
{
	if (el->started)
		return -EALREADY;
	atomic_store(&el->stopping, false);
	pthread_mutex_lock(&el->call_lock);
	el->accepting = true;
	pthread_mutex_unlock(&el->call_lock);
	int rc = pthread_create(&el->thread, NULL, loop_thread, el);
	if (rc) {
		pthread_mutex_lock(&el->call_lock);
		el->accepting = false;
		pthread_mutex_unlock(&el->call_lock);
		log_error(COMP, "cannot start the event-loop thread: %s", strerror(rc));
		return -rc;
	}
	el->started = true;
	return 0;
}

void event_loop_stop(struct event_loop *el)
{
	if (!el->started)
		return;
	atomic_store(&el->stopping, true);
	wake(el);
	pthread_mutex_lock(&el->lock);
	pthread_cond_broadcast(&el->pause_cond);
	pthread_mutex_unlock(&el->lock);
	pthread_join(el->thread, NULL);
	el->started = false;
	pthread_mutex_lock(&el->call_lock);
	el->accepting = false;
	pthread_mutex_unlock(&el->call_lock);
	/* Calls queued before accepting was cleared run here, so no caller waits forever. */
	pthread_mutex_lock(&el->lock);
	run_queued_calls(el);
	pthread_mutex_unlock(&el->lock);
}

bool event_loop_on_loop_thread(const struct event_loop *el)
{
	return el->started && pthread_equal(pthread_self(), el->thread);
}

int event_loop_add_fd(struct event_loop *el, int fd, uint32_t events, event_fn fn, void *opaque)
{
	struct handler *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	*h = (struct handler){ .fd = fd, .fn = fn, .opaque = opaque };
	pthread_mutex_lock(&el->lock);
	for (struct handler *o = el->handlers; o; o = o->next) {
		if (o->fd == fd) {
			pthread_mutex_unlock(&el->lock);
			free(h);
			return -EEXIST;
		}
	}
	struct epoll_event ev = { .events = events, .data.ptr = h };
	if (epoll_ctl(el->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int rc = -errno;
		pthread_mutex_unlock(&el->lock);
		free(h);
		return rc;
	}
	h->next = el->handlers;
	el->handlers = h;
	pthread_mutex_unlock(&el->lock);
	return 0;
}

int event_loop_remove_fd(struct event_loop *el, int fd)
{
	pthread_mutex_lock(&el->lock);
	for (struct handler **p = &el->handlers; *p; p = &(*p)->next) {
		struct handler *h = *p;
		if (h->fd != fd)
			continue;
		*p = h->next;
		epoll_ctl(el->epfd, EPOLL_CTL_DEL, fd, NULL);
		h->dead = true;
		h->next = el->graveyard;
		el->graveyard = h;
		pthread_mutex_unlock(&el->lock);
		return 0;
	}
	pthread_mutex_unlock(&el->lock);
	return -ENOENT;
}

int event_loop_call(struct event_loop *el, event_call_fn fn, void *opaque)
{
	struct call c = { .fn = fn, .opaque = opaque };
	pthread_mutex_lock(&el->call_lock);
	if (!el->accepting || event_loop_on_loop_thread(el)) {
		pthread_mutex_unlock(&el->call_lock);
		pthread_mutex_lock(&el->lock);
		fn(opaque);
		pthread_mutex_unlock(&el->lock);
		return 0;
	}
	*el->calls_tail = &c;
	el->calls_tail = &c.next;
	pthread_mutex_unlock(&el->call_lock);
	wake(el);
	/* A paused loop waits on pause_cond, not in epoll; taking lock orders this with its wait. */
	pthread_mutex_lock(&el->lock);
	pthread_cond_broadcast(&el->pause_cond);
	pthread_mutex_unlock(&el->lock);
	pthread_mutex_lock(&el->call_lock);
	while (!c.done)
		pthread_cond_wait(&el->call_done, &el->call_lock);
	pthread_mutex_unlock(&el->call_lock);
	return 0;
}

void event_loop_pause(struct event_loop *el)
{
	/* Taking lock waits for a callback in flight; the loop parks before its next dispatch. */
	pthread_mutex_lock(&el->lock);
	atomic_store(&el->paused, true);
	pthread_mutex_unlock(&el->lock);
}

void event_loop_resume(struct event_loop *el)
{
	pthread_mutex_lock(&el->lock);
	atomic_store(&el->paused, false);
	pthread_cond_broadcast(&el->pause_cond);
	pthread_mutex_unlock(&el->lock);
}

static void timer_fired(void *opaque, uint32_t events)
{
	(void)events;
	struct event_timer *t = opaque;
	uint64_t expirations;
	if (read(t->fd, &expirations, sizeof(expirations)) != sizeof(expirations))
		return; /* spurious wake-up, or re-armed in between */
	t->fn(t->opaque);
}

int event_timer_set(struct event_timer *t, uint64_t first_ns, uint64_t period_ns)
{
	struct itimerspec its = { .it_value = ns_to_timespec(first_ns), .it_interval = ns_to_timespec(period_ns) };
	return timerfd_settime(t->fd, 0, &its, NULL) < 0 ? -errno : 0;
}

int event_loop_add_timer(struct event_loop *el, uint64_t first_ns, uint64_t period_ns, event_call_fn fn,
			 void *opaque, struct event_timer **out)
{
	struct event_timer *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	*t = (struct event_timer){ .el = el, .fn = fn, .opaque = opaque };
	t->fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (t->fd < 0) {
		int rc = -errno;
		free(t);
		return rc;
	}
	int rc = event_loop_add_fd(el, t->fd, EPOLLIN, timer_fired, t);
	if (!rc && first_ns)
		rc = event_timer_set(t, first_ns, period_ns);
	if (rc) {
		event_loop_remove_fd(el, t->fd);
		close(t->fd);
		free(t);
		return rc;
	}
	*out = t;
	return 0;
}

void event_timer_free(struct event_timer *t)
{
	if (!t)
		return;
	event_loop_remove_fd(t->el, t->fd);
	close(t->fd);
	free(t);
}
