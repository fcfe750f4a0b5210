/*
 * Keeps one API client from locking the others out. Every connection must deliver each request
 * (headers and body) within a total deadline, however slowly it trickles bytes in, and a client
 * process may hold only a few connections at once; a connection of a process over that share
 * gets a short grace to be told so (HTTP 429) and is then dropped.
 */
#ifndef VMON_API_API_CONN_GUARD_H
#define VMON_API_API_CONN_GUARD_H

#include <stdbool.h>
#include <sys/types.h>

struct api_conn_guard;
struct api_conn;

struct api_conn_limits {
	unsigned int deadline_ms;       /* to deliver one whole request */
	unsigned int per_peer;          /* connections one process may hold */
	unsigned int over_limit_ms;     /* deadline of a connection beyond per_peer */
};

/* Starts the watchdog thread. 0 or -errno. */
int api_conn_guard_start(struct api_conn_guard **out, const struct api_conn_limits *limits);
/* Stops the watchdog; every connection must have been closed. NULL is ignored. */
void api_conn_guard_stop(struct api_conn_guard *g);

/*
 * A connection on socket fd was accepted; its deadline runs from now. *out is its record (NULL
 * when out of memory: the connection is then unguarded, never refused).
 */
void api_conn_opened(struct api_conn_guard *g, int fd, struct api_conn **out);
/* The connection is about to be closed (before its fd is). NULL is ignored. */
void api_conn_closed(struct api_conn_guard *g, struct api_conn *c);

/* Whether the connection's process already held its share of connections when it connected. */
bool api_conn_over_limit(const struct api_conn *c);
/* The process at the other end (0 when unknown). */
pid_t api_conn_peer_pid(const struct api_conn *c);
/*
 * The whole request has arrived: the deadline stops while it is handled and answered. false when
 * the deadline already cut the connection (the request must then not be carried out).
 */
bool api_conn_request_received(struct api_conn_guard *g, struct api_conn *c);
/* The reply went out: the next request on this connection has a fresh deadline. */
void api_conn_request_done(struct api_conn_guard *g, struct api_conn *c);

/* Whether the client closed its end of socket fd (it can no longer read a reply). */
bool api_conn_peer_gone(int fd);

#endif
