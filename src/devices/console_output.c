/*
 * Guest console output: a bounded ring filled by vCPU threads, drained by one writer thread.
 *
 * Only the writer advances the ring's head and only producers extend its tail, both under the
 * mutex, so the writer can write() straight from the ring without holding the lock. The fd is
 * left in blocking mode (it is usually shared with the user's shell, whose terminal must not
 * be switched to non-blocking): the writer waits for POLLOUT and writes at most PIPE_BUF bytes,
 * which a pipe with room takes without blocking; anything that still blocks (a terminal, a
 * socket) is interrupted at stop time by a signal whose handler does nothing.
 */
#include "devices/console_output.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "sandbox/sandbox.h"
#include "lib/util.h"

/* Interrupts a write() the writer is stuck in; vCPU kicks use the same no-op handler. */
#define WRITER_INTERRUPT_SIGNAL SIGUSR1
/* A warning about dropped output is repeated at most this often while it lasts. */
#define DROP_WARN_INTERVAL_NS (30ULL * 1000000000ULL)

struct console_output {
	int fd;
	bool fd_is_socket;
	int wake_fd; /* eventfd: output appended to an empty ring, first drops, stop */
	pthread_t thread;
	atomic_bool done;

	pthread_mutex_t lock; /* protects everything below */
	uint8_t *ring;
	size_t cap, head, len;
	uint64_t dropped;
	uint64_t dropped_seen; /* by the writer, which warns about the difference */
	bool stopping;
	uint64_t flush_deadline_ns;
};

static void interrupt_handler(int sig) { (void)sig; }

static void install_interrupt_handler(void)
{
	struct sigaction old;
	if (sigaction(WRITER_INTERRUPT_SIGNAL, NULL, &old) == 0 && old.sa_handler == SIG_DFL &&
	    !(old.sa_flags & SA_SIGINFO)) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = interrupt_handler; /* no SA_RESTART: a blocked write() returns */
		sigemptyset(&sa.sa_mask);
		sigaction(WRITER_INTERRUPT_SIGNAL, &sa, NULL);
	}
}

static void wake_writer(struct console_output *o)
{
	uint64_t one = 1;
	ssize_t n = write(o->wake_fd, &one, sizeof(one));
	(void)n; /* EAGAIN: a wake-up is already pending */
}

void console_output_write(void *opaque, const uint8_t *buf, size_t len)
{
	struct console_output *o = opaque;
	bool wake;

	pthread_mutex_lock(&o->lock);
	bool was_empty = o->len == 0;
	size_t room = o->cap - o->len;
	size_t take = MIN(len, room);
	for (size_t i = 0; i < take; i++)
		o->ring[(o->head + o->len + i) % o->cap] = buf[i];
	o->len += take;
	bool first_drop = take < len && o->dropped == o->dropped_seen;
	o->dropped += len - take;
	wake = (was_empty && take > 0) || first_drop;
	pthread_mutex_unlock(&o->lock);
	if (wake)
		wake_writer(o);
}

uint64_t console_output_dropped(struct console_output *o)
{
	pthread_mutex_lock(&o->lock);
	uint64_t d = o->dropped;
	pthread_mutex_unlock(&o->lock);
	return d;
}

static ssize_t write_without_waiting(const struct console_output *o, const uint8_t *buf, size_t len)
{
	if (o->fd_is_socket)
		return send(o->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	return write(o->fd, buf, len);
}

static void warn_about_drops(struct console_output *o, uint64_t *last_warn_ns)
{
	pthread_mutex_lock(&o->lock);
	uint64_t dropped = o->dropped;
	bool news = dropped != o->dropped_seen;
	o->dropped_seen = dropped;
	pthread_mutex_unlock(&o->lock);

	uint64_t now = monotonic_ns();
	if (news && (*last_warn_ns == 0 || now - *last_warn_ns >= DROP_WARN_INTERVAL_NS)) {
		*last_warn_ns = now;
		log_warn("console", "guest console output is not being read; dropped %llu bytes so far "
				    "(read vmon's stdout, or send the console elsewhere)",
			 (unsigned long long)dropped);
	}
}

/* Writes one chunk from the ring. Returns false when fd can take no more output at all. */
static bool write_chunk(struct console_output *o)
{
	pthread_mutex_lock(&o->lock);
	size_t head = o->head;
	size_t chunk = MIN(MIN(o->len, o->cap - head), (size_t)PIPE_BUF);
	pthread_mutex_unlock(&o->lock);
	if (chunk == 0)
		return true;

	ssize_t n = write_without_waiting(o, o->ring + head, chunk);
	if (n > 0) {
		pthread_mutex_lock(&o->lock);
		o->head = (o->head + (size_t)n) % o->cap;
		o->len -= (size_t)n;
		pthread_mutex_unlock(&o->lock);
		return true;
	}
	if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return true;
	log_warn("console", "cannot write guest console output: %s; further output is discarded",
		 n < 0 ? strerror(errno) : "nothing written");
	return false;
}

static void *writer_thread(void *arg)
{
	struct console_output *o = arg;
	sandbox_enter(SANDBOX_CONSOLE_OUT);
	bool writable = true;
	uint64_t last_warn_ns = 0;

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, WRITER_INTERRUPT_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	for (;;) {
		pthread_mutex_lock(&o->lock);
		if (!writable) {
			o->len = 0; /* nowhere to write it */
			o->dropped_seen = o->dropped;
		}
		size_t len = o->len;
		bool stopping = o->stopping;
		uint64_t deadline = o->flush_deadline_ns;
		pthread_mutex_unlock(&o->lock);

		uint64_t now = monotonic_ns();
		if (stopping && (len == 0 || now >= deadline))
			break;
		if (writable)
			warn_about_drops(o, &last_warn_ns);

		struct pollfd fds[2] = {
			{ .fd = o->wake_fd, .events = POLLIN },
			{ .fd = o->fd, .events = POLLOUT },
		};
		int timeout = stopping ? (int)((deadline - now + 999999) / 1000000) : -1;
		int r = poll(fds, len > 0 ? 2 : 1, timeout);
		if (r < 0 && errno != EINTR) {
			log_error("console", "waiting to write guest console output failed: %s", strerror(errno));
			break;
		}
		if (r <= 0)
			continue;
		if (fds[0].revents & POLLIN) {
			uint64_t v;
			ssize_t n = read(o->wake_fd, &v, sizeof(v));
			(void)n;
		}
		if (len > 0 && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP | POLLNVAL)))
			writable = write_chunk(o);
	}
	atomic_store(&o->done, true);
	return NULL;
}

int console_output_start(struct console_output **out, int fd, size_t capacity)
{
	struct console_output *o = calloc(1, sizeof(*o));
	int rc;

	if (!o || capacity == 0 || !(o->ring = malloc(capacity))) {
		free(o);
		log_error("console", "cannot allocate the console output buffer");
		return -ENOMEM;
	}
	o->fd = fd;
	o->cap = capacity;
	struct stat st;
	o->fd_is_socket = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
	atomic_init(&o->done, false);
	pthread_mutex_init(&o->lock, NULL);
	o->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (o->wake_fd < 0) {
		rc = -errno;
		log_error("console", "cannot create the console output eventfd: %s", strerror(-rc));
		goto fail;
	}
	install_interrupt_handler();
	rc = pthread_create(&o->thread, NULL, writer_thread, o);
	if (rc != 0) {
		log_error("console", "cannot start the console output thread: %s", strerror(rc));
		close(o->wake_fd);
		rc = -rc;
		goto fail;
	}
	*out = o;
	return 0;
fail:
	pthread_mutex_destroy(&o->lock);
	free(o->ring);
	free(o);
	return rc;
}

void console_output_stop(struct console_output *o, unsigned int flush_ms)
{
	if (!o)
		return;
	pthread_mutex_lock(&o->lock);
	o->stopping = true;
	o->flush_deadline_ns = monotonic_ns() + (uint64_t)flush_ms * 1000000ULL;
	pthread_mutex_unlock(&o->lock);
	wake_writer(o);

	/* Past the deadline the writer may sit in a write() the reader never completes. */
	while (!atomic_load(&o->done)) {
		if (monotonic_ns() >= o->flush_deadline_ns)
			pthread_kill(o->thread, WRITER_INTERRUPT_SIGNAL);
		nanosleep(&(struct timespec){ .tv_nsec = 2000000 }, NULL);
	}
	pthread_join(o->thread, NULL);

	uint64_t lost = o->dropped + o->len; /* what the reader did not take in time is lost too */
	if (lost)
		log_warn("console", "%llu bytes of guest console output were dropped because the reader "
				    "did not keep up",
			 (unsigned long long)lost);
	close(o->wake_fd);
	pthread_mutex_destroy(&o->lock);
	free(o->ring);
	free(o);
}
