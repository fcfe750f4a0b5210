#include "migration/transport_conn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/util.h"

int mig_cancel_init(struct mig_cancel *c)
{
	atomic_init(&c->fired, false);
	c->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return c->fd < 0 ? -errno : 0;
}

void mig_cancel_fire(struct mig_cancel *c)
{
	atomic_store(&c->fired, true);
	uint64_t one = 1;
	/* A full counter (never, at one write per cancel) still reads as fired. */
	ssize_t n = write(c->fd, &one, sizeof(one));
	(void)n;
}

void mig_cancel_destroy(struct mig_cancel *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static bool cancelled(const struct mig_conn *c)
{
	return c->cancel && atomic_load(&c->cancel->fired);
}

struct mig_conn *mig_conn_new(int fd, const char *peer, bool source, const struct mig_conn_opts *o)
{
	struct mig_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return NULL;
	}
	c->fd = fd;
	c->source = source;
	c->timeout_ms = o && o->timeout_ms > 0 ? o->timeout_ms : MIG_TIMEOUT_MS_DEFAULT;
	c->cancel = o ? o->cancel : NULL;
	atomic_init(&c->sent, 0);
	atomic_init(&c->received, 0);
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	return c;
}

int mig_conn_wrap(struct mig_conn **out, int fd, const char *peer, bool source, const struct mig_conn_opts *o)
{
	*out = mig_conn_new(fd, peer, source, o);
	return *out ? 0 : -ENOMEM;
}

int mig_conn_fail(struct mig_conn *c, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
	return rc;
}

const char *mig_peer_role(const struct mig_conn *c)
{
	return c->source ? "the destination" : "the source";
}

const char *mig_duration(int ms, char *buf, size_t len)
{
	if (ms < 1000)
		snprintf(buf, len, "%d ms", ms);
	else if (ms % 1000)
		snprintf(buf, len, "%.1f s", ms / 1000.0);
	else
		snprintf(buf, len, "%d s", ms / 1000);
	return buf;
}

int mig_wait_fd(struct mig_conn *c, int fd, short events, int timeout_ms, const char *doing)
{
	struct pollfd pfd[2] = { { .fd = fd, .events = events }, { .fd = c->cancel ? c->cancel->fd : -1, .events = POLLIN } };
	uint64_t start = monotonic_ns();
	for (;;) {
		if (cancelled(c))
			return mig_conn_fail(c, -ECANCELED, "the migration was cancelled while vmon was %s", doing);
		int left = -1;
		if (timeout_ms >= 0) {
			uint64_t spent = (monotonic_ns() - start) / 1000000;
			left = spent >= (uint64_t)timeout_ms ? 0 : timeout_ms - (int)spent;
		}
		int n = poll(pfd, 2, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return mig_conn_fail(c, -errno, "cannot wait for %s at %s: %s", mig_peer_role(c), c->peer,
					     strerror(errno));
		if (pfd[1].revents)
			continue; /* the cancel is seen at the top */
		if (n > 0)
			return 0; /* readiness or an error (POLLERR, POLLHUP): the next call says which */
		if (left == 0) {
			char d[32];
			return mig_conn_fail(c, -ETIMEDOUT,
					     "%s at %s did not respond for %s while vmon was %s: it stalled, or the network "
					     "between the hosts is down",
					     mig_peer_role(c), c->peer, mig_duration(timeout_ms, d, sizeof(d)), doing);
		}
	}
}

/* One send or receive of plain TCP: bytes, 0 at the peer's close, -EAGAIN, -errno. */
static ssize_t plain_io(struct mig_conn *c, void *p, size_t len, bool out, short *events)
{
	*events = out ? POLLOUT : POLLIN;
	ssize_t n = out ? send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT) : recv(c->fd, p, len, MSG_DONTWAIT);
	if (n >= 0)
		return n;
	return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

static int io_failed(struct mig_conn *c, int rc, bool out)
{
	if (rc == -EPIPE || rc == -ECONNRESET)
		return mig_conn_fail(c, -EPIPE, "%s at %s closed the connection (it stopped, or refused the migration)",
				     mig_peer_role(c), c->peer);
	return mig_conn_fail(c, rc, "cannot %s %s at %s: %s", out ? "send to" : "receive from", mig_peer_role(c),
			     c->peer, strerror(-rc));
}

/* Moves up to len bytes once something can move: bytes, 0 at the peer's close, or -errno. */
static ssize_t transfer_some(struct mig_conn *c, void *p, size_t len, bool out)
{
	for (;;) {
		if (cancelled(c))
			return mig_conn_fail(c, -ECANCELED, "the migration was cancelled");
		short events;
		ssize_t n = c->tls ? (out ? mig_tls_send(c, p, len, &events) : mig_tls_recv(c, p, len, &events))
				   : plain_io(c, p, len, out, &events);
		if (n > 0) {
			atomic_fetch_add_explicit(out ? &c->sent : &c->received, (uint64_t)n, memory_order_relaxed);
			return n;
		}
		if (n == 0 && !out)
			return 0;
		if (n == -EINTR)
			continue;
		if (n != -EAGAIN)
			return c->tls ? n : io_failed(c, (int)n, out);
		int rc = mig_wait_fd(c, c->fd, events, c->timeout_ms, out ? "sending" : "waiting for data");
		if (rc)
			return rc;
	}
}

int mig_conn_write(struct mig_conn *c, const void *p, size_t len)
{
	const uint8_t *b = p;
	while (len > 0) {
		ssize_t n = transfer_some(c, (void *)b, len, true);
		if (n < 0)
			return (int)n;
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t mig_conn_read_some(struct mig_conn *c, void *p, size_t len)
{
	return len ? transfer_some(c, p, len, false) : 0;
}

ssize_t mig_conn_read(struct mig_conn *c, void *p, size_t len)
{
	uint8_t *b = p;
	size_t got = 0;
	while (got < len) {
		ssize_t n = transfer_some(c, b + got, len - got, false);
		if (n < 0)
			return n;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

const char *mig_conn_error(const struct mig_conn *c)
{
	return c->why;
}

static int io_write(void *ctx, const void *p, size_t len)
{
	return mig_conn_write(ctx, p, len);
}

static ssize_t io_read(void *ctx, void *p, size_t len)
{
	return mig_conn_read(ctx, p, len);
}

static const char *io_why(void *ctx)
{
	return mig_conn_error(ctx);
}

struct mig_io mig_conn_io(struct mig_conn *c)
{
	return (struct mig_io){ .write = io_write, .read = io_read, .why = io_why, .ctx = c };
}

uint64_t mig_conn_bytes_sent(const struct mig_conn *c)
{
	return atomic_load_explicit(&c->sent, memory_order_relaxed);
}

uint64_t mig_conn_bytes_received(const struct mig_conn *c)
{
	return atomic_load_explicit(&c->received, memory_order_relaxed);
}

const char *mig_conn_peer(const struct mig_conn *c)
{
	return c->peer;
}

bool mig_conn_is_source(const struct mig_conn *c)
{
	return c->source;
}

bool mig_conn_uses_tls(const struct mig_conn *c)
{
	return c->tls != NULL;
}

/*
 * Closing a socket with unread bytes sends a reset, which can make the peer lose what was sent
 * last (a refusal, a TLS alert): half-close, and read until the peer closes too, for a moment.
 */
static void linger_close(int fd)
{
	shutdown(fd, SHUT_WR);
	uint64_t end = monotonic_ns() + 250 * 1000000ull;
	char buf[4096];
	for (uint64_t now = monotonic_ns(); now < end; now = monotonic_ns()) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, (int)((end - now) / 1000000) + 1) <= 0 || recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0)
			break;
	}
	close(fd);
}

void mig_conn_close(struct mig_conn *c)
{
	if (!c)
		return;
	if (c->tls)
		mig_tls_end(c);
	if (c->fd >= 0)
		linger_close(c->fd);
	free(c);
}
