#include "virtio/console_file.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "sandbox/sandbox.h"
#include "lib/util.h"

#define COMP "virtio-console"

struct console_file {
	char *path;
	int fd;
	int efd;                 /* the writer thread tells the loop a write finished */
	struct event_loop *loop;
	void (*done)(void *opaque);
	void *opaque;

	/* Loop thread. */
	uint64_t max_size;
	uint64_t size;           /* bytes in the file, plus those being written */
	uint64_t asked, granted; /* the write in progress: bytes the guest gave, bytes under the cap */
	bool warned_full;
	_Atomic bool busy;
	struct console_file_result last;
	struct log_ratelimit rl;

	/* The writer thread's job, under lock. */
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop, job;
	const struct iovec *iov;
	unsigned int n;
	uint64_t written;
	int error;
};

/* Writer thread: appends the first len bytes of iov; returns the bytes written, *error on failure. */
static uint64_t append(int fd, const struct iovec *iov, unsigned int n, uint64_t len, int *error)
{
	uint64_t done = 0;
	*error = 0;
	for (unsigned int i = 0; i < n && done < len; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t seg = (size_t)MIN((uint64_t)iov[i].iov_len, len - done);
		size_t off = 0;
		while (off < seg) {
			ssize_t w = write(fd, p + off, seg - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				*error = w < 0 ? errno : EIO;
				return done;
			}
			off += (size_t)w;
			done += (uint64_t)w;
		}
	}
	return done;
}

static void signal_loop(struct console_file *cf)
{
	uint64_t one = 1;
	/* Fails only if the counter would overflow, which needs 2^64 unread writes. */
	(void)!write(cf->efd, &one, sizeof(one));
}

static void *writer_thread(void *arg)
{
	struct console_file *cf = arg;
	sandbox_enter(SANDBOX_CONSOLE_OUT);
	pthread_mutex_lock(&cf->lock);
	for (;;) {
		while (!cf->job && !cf->stop)
			pthread_cond_wait(&cf->cond, &cf->lock);
		if (cf->stop)
			break;
		const struct iovec *iov = cf->iov;
		unsigned int n = cf->n;
		uint64_t len = cf->granted;
		pthread_mutex_unlock(&cf->lock);
		int error;
		uint64_t written = append(cf->fd, iov, n, len, &error);
		pthread_mutex_lock(&cf->lock);
		cf->written = written;
		cf->error = error;
		cf->job = false;
		signal_loop(cf);
	}
	pthread_mutex_unlock(&cf->lock);
	return NULL;
}

static void on_written(void *opaque, uint32_t events)
{
	(void)events;
	struct console_file *cf = opaque;
	uint64_t n;
	if (read(cf->efd, &n, sizeof(n)) < 0 || !atomic_load(&cf->busy))
		return;
	pthread_mutex_lock(&cf->lock);
	struct console_file_result r = { .written = cf->written, .error = cf->error };
	pthread_mutex_unlock(&cf->lock);
	r.dropped = cf->asked - r.written;
	cf->size -= cf->granted - r.written; /* what a failed write did not put in the file */
	if (r.error)
		log_warn_ratelimited(&cf->rl, COMP, "cannot write the console output to %s: %s; that output is dropped",
				     cf->path, strerror(r.error));
	cf->last = r;
	atomic_store(&cf->busy, false);
	cf->done(cf->opaque);
}

void console_file_write(struct console_file *cf, const struct iovec *iov, unsigned int n)
{
	uint64_t total = 0;
	for (unsigned int i = 0; i < n; i++)
		total += iov[i].iov_len;
	uint64_t room = cf->size < cf->max_size ? cf->max_size - cf->size : 0;
	cf->asked = total;
	cf->granted = MIN(total, room);
	cf->size += cf->granted;
	if (cf->granted < total && !cf->warned_full) {
		cf->warned_full = true;
		log_warn(COMP, "--console2 file %s reached max_size (%llu bytes): further guest output is dropped "
			       "(counted in vmon_console2_dropped_bytes_total)",
			 cf->path, (unsigned long long)cf->max_size);
	}
	atomic_store(&cf->busy, true);
	pthread_mutex_lock(&cf->lock);
	cf->written = 0;
	cf->error = 0;
	if (cf->granted) {
		cf->iov = iov;
		cf->n = n;
		cf->job = true;
		pthread_cond_signal(&cf->cond);
	} else {
		/* Nothing to write: still finish through the loop, so done() never runs inside this call. */
		signal_loop(cf);
	}
	pthread_mutex_unlock(&cf->lock);
}

bool console_file_busy(const struct console_file *cf) { return atomic_load(&cf->busy); }

struct console_file_result console_file_result(const struct console_file *cf) { return cf->last; }

int console_file_open(const char *path, uint64_t max_size, struct event_loop *loop, void (*done)(void *opaque),
		      void *opaque, struct console_file **out)
{
	struct console_file *cf = calloc(1, sizeof(*cf));
	if (!cf)
		return -ENOMEM;
	cf->loop = loop;
	cf->done = done;
	cf->opaque = opaque;
	cf->max_size = max_size;
	cf->efd = -1;
	pthread_mutex_init(&cf->lock, NULL);
	pthread_cond_init(&cf->cond, NULL);
	cf->path = strdup(path);
	cf->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	int rc = cf->path ? 0 : -ENOMEM;
	struct stat st;
	if (!rc && (cf->fd < 0 || fstat(cf->fd, &st) < 0)) {
		rc = -errno;
		log_error(COMP, "--console2 file=%s: cannot open the file: %s", path, strerror(-rc));
	}
	if (!rc)
		cf->size = (uint64_t)st.st_size; /* the limit is on the file, whatever it held before */
	if (!rc) {
		cf->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		rc = cf->efd < 0 ? -errno : event_loop_add_fd(loop, cf->efd, EPOLLIN, on_written, cf);
	}
	if (!rc) {
		rc = -pthread_create(&cf->thread, NULL, writer_thread, cf);
		cf->thread_started = rc == 0;
		if (cf->thread_started)
			pthread_setname_np(cf->thread, "console2-file");
	}
	if (rc) {
		if (cf->path && cf->fd >= 0)
			log_error(COMP, "--console2 file=%s: cannot start its writer: %s", path, strerror(-rc));
		console_file_close(cf);
		return rc;
	}
	*out = cf;
	return 0;
}

void console_file_close(struct console_file *cf)
{
	if (!cf)
		return;
	if (cf->thread_started) {
		pthread_mutex_lock(&cf->lock);
		cf->stop = true;
		pthread_cond_signal(&cf->cond);
		pthread_mutex_unlock(&cf->lock);
		pthread_join(cf->thread, NULL);
	}
	if (cf->efd >= 0) {
		event_loop_remove_fd(cf->loop, cf->efd);
		close(cf->efd);
	}
	if (cf->fd >= 0)
		close(cf->fd);
	pthread_mutex_destroy(&cf->lock);
	pthread_cond_destroy(&cf->cond);
	free(cf->path);
	free(cf);
}
