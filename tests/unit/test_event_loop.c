/* The I/O event loop: fd callbacks, removal, timers, calls run on the loop thread, stop. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "backends/event_loop.h"

struct counter {
	struct event_loop *el;
	int fd;
	_Atomic int hits;
	_Atomic bool on_loop_thread;
};

static void drain_and_count(void *opaque, uint32_t events)
{
	struct counter *c = opaque;
	uint64_t v;
	if (events & EPOLLIN)
		(void)!read(c->fd, &v, sizeof(v));
	atomic_store(&c->on_loop_thread, event_loop_on_loop_thread(c->el));
	atomic_fetch_add(&c->hits, 1);
}

static void kick(int fd)
{
	uint64_t one = 1;
	assert_int_equal(write(fd, &one, sizeof(one)), sizeof(one));
}

/* Waits up to 2 s for *v to reach want. */
static bool wait_for(_Atomic int *v, int want)
{
	for (int i = 0; i < 2000; i++) {
		if (atomic_load(v) >= want)
			return true;
		usleep(1000);
	}
	return false;
}

static void fd_events_run_the_callback_on_the_loop_thread(void **state)
{
	(void)state;
	struct event_loop *el;
	assert_int_equal(event_loop_create(&el), 0);
	struct counter c = { .el = el, .fd = eventfd(0, EFD_NONBLOCK) };
	assert_int_equal(event_loop_add_fd(el, c.fd, EPOLLIN, drain_and_count, &c), 0);
	assert_int_equal(event_loop_add_fd(el, c.fd, EPOLLIN, drain_and_count, &c), -EEXIST);
	kick(c.fd); /* before start: delivered once the loop runs */
	assert_int_equal(event_loop_start(el), 0);
	assert_int_equal(event_loop_start(el), -EALREADY);
	assert_true(wait_for(&c.hits, 1));
	assert_true(atomic_load(&c.on_loop_thread));
	assert_false(event_loop_on_loop_thread(el));
	kick(c.fd);
	assert_true(wait_for(&c.hits, 2));

	/* After remove returns, the callback never runs again. */
	assert_int_equal(event_loop_remove_fd(el, c.fd), 0);
	assert_int_equal(event_loop_remove_fd(el, c.fd), -ENOENT);
	int before = atomic_load(&c.hits);
	kick(c.fd);
	usleep(20000);
	assert_int_equal(atomic_load(&c.hits), before);
	event_loop_stop(el);
	event_loop_stop(el);
	event_loop_destroy(el);
	close(c.fd);
}

struct call_arg {
	struct event_loop *el;
	bool ran_on_loop;
	int value;
};

static void set_value(void *opaque)
{
	struct call_arg *a = opaque;
	a->ran_on_loop = event_loop_on_loop_thread(a->el);
	a->value = 42;
}

static void calls_run_on_the_loop_thread_and_wait(void **state)
{
	(void)state;
	struct event_loop *el;
	assert_int_equal(event_loop_create(&el), 0);
	struct call_arg a = { .el = el };
	/* Not running: runs in the caller. */
	assert_int_equal(event_loop_call(el, set_value, &a), 0);
	assert_int_equal(a.value, 42);
	assert_false(a.ran_on_loop);
	assert_int_equal(event_loop_start(el), 0);
	a.value = 0;
	assert_int_equal(event_loop_call(el, set_value, &a), 0);
	assert_int_equal(a.value, 42); /* call waited for completion */
	assert_true(a.ran_on_loop);
	event_loop_destroy(el); /* stops the running loop */
}

struct tick {
	_Atomic int n;
};

static void on_tick(void *opaque) { atomic_fetch_add(&((struct tick *)opaque)->n, 1); }

static void timers_fire_once_or_periodically(void **state)
{
	(void)state;
	struct event_loop *el;
	assert_int_equal(event_loop_create(&el), 0);
	assert_int_equal(event_loop_start(el), 0);
	struct tick once = { 0 }, periodic = { 0 };
	struct event_timer *t1, *t2;
	assert_int_equal(event_loop_add_timer(el, 1000000, 0, on_tick, &once, &t1), 0);
	assert_int_equal(event_loop_add_timer(el, 1000000, 2000000, on_tick, &periodic, &t2), 0);
	assert_true(wait_for(&periodic.n, 3));
	assert_int_equal(atomic_load(&once.n), 1);
	event_timer_free(t2);
	int n = atomic_load(&periodic.n);
	usleep(20000);
	assert_int_equal(atomic_load(&periodic.n), n);
	/* A one-shot timer can be re-armed. */
	assert_int_equal(event_timer_set(t1, 1000000, 0), 0);
	assert_true(wait_for(&once.n, 2));
	event_timer_free(t1);
	event_loop_destroy(el);
}

struct self_remover {
	struct event_loop *el;
	int fd;
	_Atomic int hits;
};

static void remove_self(void *opaque, uint32_t events)
{
	(void)events;
	struct self_remover *s = opaque;
	atomic_fetch_add(&s->hits, 1);
	event_loop_remove_fd(s->el, s->fd);
}

static void a_callback_can_remove_itself(void **state)
{
	(void)state;
	struct event_loop *el;
	assert_int_equal(event_loop_create(&el), 0);
	struct self_remover s = { .el = el, .fd = eventfd(0, EFD_NONBLOCK) };
	assert_int_equal(event_loop_add_fd(el, s.fd, EPOLLIN, remove_self, &s), 0);
	assert_int_equal(event_loop_start(el), 0);
	kick(s.fd); /* level-triggered and never drained: would spin if the removal failed */
	assert_true(wait_for(&s.hits, 1));
	usleep(20000);
	assert_int_equal(atomic_load(&s.hits), 1);
	event_loop_destroy(el);
	close(s.fd);
}

/* A paused loop runs no fd callbacks (the VM is paused) but still runs calls (snapshots). */
static void a_paused_loop_runs_calls_but_no_callbacks(void **state)
{
	(void)state;
	struct event_loop *el;
	assert_int_equal(event_loop_create(&el), 0);
	struct counter c = { .el = el, .fd = eventfd(0, EFD_NONBLOCK) };
	assert_int_equal(event_loop_add_fd(el, c.fd, EPOLLIN, drain_and_count, &c), 0);
	assert_int_equal(event_loop_start(el), 0);
	kick(c.fd);
	assert_true(wait_for(&c.hits, 1));

	event_loop_pause(el);
	kick(c.fd);
	usleep(50000);
	assert_int_equal(atomic_load(&c.hits), 1);
	struct call_arg a = { .el = el };
	assert_int_equal(event_loop_call(el, set_value, &a), 0);
	assert_int_equal(a.value, 42);
	assert_true(a.ran_on_loop);
	assert_int_equal(atomic_load(&c.hits), 1);

	event_loop_resume(el);
	assert_true(wait_for(&c.hits, 2));
	/* Stopping a paused loop does not hang. */
	event_loop_pause(el);
	event_loop_stop(el);
	event_loop_destroy(el);
	close(c.fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(fd_events_run_the_callback_on_the_loop_thread),
		cmocka_unit_test(calls_run_on_the_loop_thread_and_wait),
		cmocka_unit_test(timers_fire_once_or_periodically),
		cmocka_unit_test(a_callback_can_remove_itself),
		cmocka_unit_test(a_paused_loop_runs_calls_but_no_callbacks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
