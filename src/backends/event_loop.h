/*
 * The I/O event loop: one thread waiting in epoll for guest notifications (ioeventfds),
 * backend fds (tap, disk completions, sockets) and timers, and running their callbacks.
 * Device work runs here, never on vCPU threads, so devices need no locking among themselves:
 * every callback registered on a loop runs on that loop's one thread, one at a time.
 *
 * Lifetime: create, register fds (before or after start), start, ..., stop (joins the thread),
 * destroy. Registration calls are safe from any thread.
 */
#ifndef VMON_BACKENDS_EVENT_LOOP_H
#define VMON_BACKENDS_EVENT_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct event_loop;

/* Called on the loop thread with the epoll events (EPOLLIN, EPOLLOUT, EPOLLERR, ...) that fired. */
typedef void (*event_fn)(void *opaque, uint32_t events);
/* A function run once on the loop thread (event_loop_call) or when a timer expires. */
typedef void (*event_call_fn)(void *opaque);

/* Allocates a stopped loop. Returns 0 or a negative errno. */
int event_loop_create(struct event_loop **out);
/* Stops the loop if it runs and frees it; registered fds are not closed (their owners close them). */
void event_loop_destroy(struct event_loop *el);

/* Starts the loop thread. Returns 0, -EALREADY, or a negative errno. */
int event_loop_start(struct event_loop *el);
/*
 * Stops the loop thread and joins it; the callback running at the time finishes first.
 * Idempotent. Must not be called from the loop thread.
 */
void event_loop_stop(struct event_loop *el);

/*
 * Watches fd for events (EPOLLIN etc.; level-triggered) and calls fn(opaque, revents) on the
 * loop thread. Returns 0, -EEXIST if fd is already watched, or a negative errno.
 */
int event_loop_add_fd(struct event_loop *el, int fd, uint32_t events, event_fn fn, void *opaque);
/*
 * Stops watching fd. When it returns, fn is not running and will not be called again (unless
 * the caller is fn itself, on the loop thread). Returns 0 or -ENOENT.
 */
int event_loop_remove_fd(struct event_loop *el, int fd);

/*
 * A timer: fn(opaque) runs on the loop thread first_ns from now, then every period_ns
 * (0: once). Returns 0 and a handle in *out, or a negative errno.
 */
struct event_timer;
int event_loop_add_timer(struct event_loop *el, uint64_t first_ns, uint64_t period_ns, event_call_fn fn,
			 void *opaque, struct event_timer **out);
/* Re-arms a timer (first_ns 0 disarms it). Returns 0 or a negative errno. */
int event_timer_set(struct event_timer *t, uint64_t first_ns, uint64_t period_ns);
/* Cancels and frees a timer; as with remove_fd, fn is not running when this returns. */
void event_timer_free(struct event_timer *t);

/*
 * Runs fn(opaque) on the loop thread and waits until it has returned. Called on the loop
 * thread, or while the loop is not running, it calls fn directly. Returns 0.
 * Used to serialise vCPU-side events (device reset, activation) with device work.
 */
int event_loop_call(struct event_loop *el, event_call_fn fn, void *opaque);

/*
 * Pauses device work while the VM is paused: once event_loop_pause() returns, no fd or timer
 * callback runs until event_loop_resume(); event_loop_call() still works (snapshots use it).
 * Either may be called from any thread but the loop thread.
 */
void event_loop_pause(struct event_loop *el);
void event_loop_resume(struct event_loop *el);

/*
 * For a loop that was never started (fuzzing drives devices without threads): runs, on the
 * caller's thread, the callbacks of the fds that become ready within timeout_ms. Returns how
 * many ran, or a negative errno.
 */
int event_loop_run_ready(struct event_loop *el, int timeout_ms);

/* True on the loop's own thread. */
bool event_loop_on_loop_thread(const struct event_loop *el);

#endif
