#include "api/api_conn_guard.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "lib/log.h"
#include "sandbox/sandbox.h"
#include "lib/util.h"

#define TICK_MS 100

struct api_conn {
	struct api_conn *next, *prev;
	int fd;
	pid_t pid;
	bool over_limit;
	bool handling; /* the whole request arrived: no deadline while it is handled */
	bool cut;      /* the deadline passed and the socket was shut down */
	uint64_t deadline_ns;
};

struct api_conn_guard {
	struct api_conn_limits limits;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_t thread;
	bool stopping;
	struct api_conn *head;
};

static uint64_t ms_from_now(unsigned int ms) { return monotonic_ns() + (uint64_t)ms * 1000000ULL; }

static void cut_overdue(struct api_conn_guard *g, uint64_t now)
{
	for (struct api_conn *c = g->head; c; c = c->next) {
		if (c->handling || c->cut || now < c->deadline_ns)
			continue;
		/*
		 * Shutting the socket down wakes the connection's thread out of its read, and libmicrohttpd
		 * then closes it. The fd cannot have been reused: records leave the list before the close.
		 */
		c->cut = true;
		shutdown(c->fd, SHUT_RDWR);
		if (c->over_limit)
			log_info("api", "dropped a connection from pid %d: that process holds %u API connections already",
				 (int)c->pid, g->limits.per_peer);
		else
			log_info("api", "dropped a connection from pid %d: its request was not complete within %u ms",
				 (int)c->pid, g->limits.deadline_ms);
	}
}

static void *watchdog(void *arg)
{
	struct api_conn_guard *g = arg;
	sandbox_enter(SANDBOX_API);
	pthread_mutex_lock(&g->lock);
	while (!g->stopping) {
		cut_overdue(g, monotonic_ns());
		struct timespec ts = ns_to_timespec(monotonic_ns() + TICK_MS * 1000000ull);
		pthread_cond_timedwait(&g->wake, &g->lock, &ts);
	}
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

int api_conn_guard_start(struct api_conn_guard **out, const struct api_conn_limits *limits)
{
	*out = NULL;
	struct api_conn_guard *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->limits = *limits;
	cond_init_monotonic(&g->wake);
	pthread_mutex_init(&g->lock, NULL);
	int rc = pthread_create(&g->thread, NULL, watchdog, g);
	if (rc) {
		pthread_cond_destroy(&g->wake);
		pthread_mutex_destroy(&g->lock);
		free(g);
		return -rc;
	}
	*out = g;
	return 0;
}

void api_conn_guard_stop(struct api_conn_guard *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	g->stopping = true;
	pthread_cond_signal(&g->wake);
	pthread_mutex_unlock(&g->lock);
	pthread_join(g->thread, NULL);
	while (g->head) {
		struct api_conn *c = g->head;
		g->head = c->next;
		free(c);
	}
	pthread_cond_destroy(&g->wake);
	pthread_mutex_destroy(&g->lock);
	free(g);
}

static pid_t peer_pid(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof(cred))
		return 0;
	return cred.pid;
}

void api_conn_opened(struct api_conn_guard *g, int fd, struct api_conn **out)
{
	struct api_conn *c = calloc(1, sizeof(*c));
	*out = c;
	if (!c)
		return;
	c->fd = fd;
	c->pid = peer_pid(fd);
	pthread_mutex_lock(&g->lock);
	/*
	 * A client that closed its last connection and opened the next one at once must not be
	 * refused because libmicrohttpd has not yet noticed the close: a hung-up peer holds nothing.
	 */
	unsigned int held = 0;
	for (struct api_conn *o = g->head; o && c->pid; o = o->next)
		held += o->pid == c->pid && !o->cut && !api_conn_peer_gone(o->fd);
	c->over_limit = c->pid && held >= g->limits.per_peer;
	c->deadline_ns = ms_from_now(c->over_limit ? g->limits.over_limit_ms : g->limits.deadline_ms);
	c->next = g->head;
	if (g->head)
		g->head->prev = c;
	g->head = c;
	pthread_mutex_unlock(&g->lock);
}

void api_conn_closed(struct api_conn_guard *g, struct api_conn *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&g->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		g->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&g->lock);
	free(c);
}

bool api_conn_over_limit(const struct api_conn *c) { return c && c->over_limit; }

pid_t api_conn_peer_pid(const struct api_conn *c) { return c ? c->pid : 0; }

bool api_conn_request_received(struct api_conn_guard *g, struct api_conn *c)
{
	if (!c)
		return true;
	pthread_mutex_lock(&g->lock);
	bool alive = !c->cut;
	c->handling = alive;
	pthread_mutex_unlock(&g->lock);
	return alive;
}

void api_conn_request_done(struct api_conn_guard *g, struct api_conn *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&g->lock);
	c->handling = false;
	c->deadline_ns = ms_from_now(g->limits.deadline_ms);
	pthread_mutex_unlock(&g->lock);
}

bool api_conn_peer_gone(int fd)
{
	/* POLLHUP on a Unix stream socket: the peer closed it; a half-close (SHUT_WR) is not that. */
	struct pollfd p = { .fd = fd, .events = 0 };
	return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}
