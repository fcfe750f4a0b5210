/* TCP for migrations: a source's connect, a destination's listen and accept, with deadlines. */
#include "migration/transport_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration/handshake.h"
#include "migration/stream_wire.h"

/* The first byte of a TLS handshake record: what a TLS peer sends first. */
#define TLS_HANDSHAKE_BYTE 0x16

struct mig_listener {
	int fd;
	uint16_t port;
	char where[MIG_HOST_MAX + 16];
	struct mig_tls_creds *creds; /* NULL: plain TCP */
};

static void no_delay(int fd)
{
	/* The handshake's messages and the last round's small records must not wait for an ACK. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int connect_failed(struct mig_conn *c, int e)
{
	switch (e) {
	case ECONNREFUSED:
		return mig_conn_fail(c, -e,
				     "%s refused the connection: nothing listens on that port; start `vmon receive "
				     "--listen` with this port on the destination first",
				     c->peer);
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EHOSTDOWN:
	case ENETDOWN:
		return mig_conn_fail(c, -e, "%s is unreachable (%s): check the address and the route to that host",
				     c->peer, strerror(e));
	case EACCES:
	case EPERM:
		return mig_conn_fail(c, -e,
				     "cannot connect to %s: %s (a firewall rule, or a sandbox around this vmon, forbids "
				     "the connection)",
				     c->peer, strerror(e));
	case ETIMEDOUT:
		return mig_conn_fail(c, -e,
				     "%s did not answer the connection (%s): the host is down, or a firewall drops the "
				     "connection",
				     c->peer, strerror(e));
	default:
		return mig_conn_fail(c, -e, "cannot connect to %s: %s", c->peer, strerror(e));
	}
}

static int connect_one(struct mig_conn *c, int fd, const struct addrinfo *ai)
{
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return 0;
	if (errno != EINPROGRESS && errno != EINTR)
		return connect_failed(c, errno);
	int rc = mig_wait_fd(c, fd, POLLOUT, c->timeout_ms, "connecting");
	if (rc)
		return rc;
	int e = 0;
	socklen_t len = sizeof(e);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
		e = errno;
	return e ? connect_failed(c, e) : 0;
}

/* Each of the addresses the host resolves to, in turn, until one answers. */
static int connect_any(struct mig_conn *c, const struct addrinfo *res)
{
	int rc = -EHOSTUNREACH;
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			rc = mig_conn_fail(c, -errno, "cannot make a socket to connect to %s: %s", c->peer, strerror(errno));
			continue;
		}
		rc = connect_one(c, fd, ai);
		if (!rc) {
			c->fd = fd;
			return 0;
		}
		close(fd);
		if (rc == -ECANCELED)
			break;
	}
	return rc;
}

int mig_conn_connect(struct mig_conn **out, const struct mig_address *a, const struct mig_conn_opts *o, char *err,
		     size_t errlen)
{
	*out = NULL;
	char where[MIG_HOST_MAX + 16];
	mig_address_str(a, where, sizeof(where));
	struct mig_tls_creds *creds = NULL;
	int rc = mig_address_has_tls(a) ? mig_tls_creds_load(&creds, &a->tls, err, errlen) : 0;
	if (rc)
		return rc;
	struct addrinfo *res;
	if ((rc = mig_address_resolve(a, false, &res, err, errlen))) {
		mig_tls_creds_free(creds);
		return rc;
	}
	struct mig_conn *c = mig_conn_new(-1, where, true, o);
	if (!c) {
		freeaddrinfo(res);
		mig_tls_creds_free(creds);
		return mig_fail(err, errlen, -ENOMEM, "out of memory for the connection to %s", where);
	}
	rc = connect_any(c, res);
	freeaddrinfo(res);
	if (!rc) {
		no_delay(c->fd);
		if (creds)
			rc = mig_tls_start(c, creds, a->tls.hostname[0] ? a->tls.hostname : a->host);
	}
	mig_tls_creds_free(creds); /* the connection holds its own reference */
	if (rc) {
		mig_fail(err, errlen, rc, "%s", c->why);
		mig_conn_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

static int listen_failed(const char *where, const struct mig_address *a, int e, char *err, size_t errlen)
{
	char other[MIG_HOST_MAX + 16];
	struct mig_address next = *a;
	next.port = a->port < 65535 ? a->port + 1 : 49152;
	mig_address_str(&next, other, sizeof(other));
	switch (e) {
	case EADDRINUSE:
		return mig_fail(err, errlen, -e,
				"cannot listen on %s: the port is in use (another program or another vmon receive "
				"listens there); choose another port, e.g. %s",
				where, other);
	case EADDRNOTAVAIL:
		return mig_fail(err, errlen, -e,
				"cannot listen on %s: %s is not an address of this host; give one of its addresses, or "
				"0.0.0.0 (or [::]) for all of them",
				where, a->host);
	case EACCES:
		return mig_fail(err, errlen, -e,
				"cannot listen on %s: ports below 1024 need privileges vmon does not have; choose a "
				"port from 1024 up, e.g. %s",
				where, other);
	default:
		return mig_fail(err, errlen, -e, "cannot listen on %s: %s", where, strerror(e));
	}
}

static int listen_on(const struct addrinfo *ai, int *out)
{
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* A destination restarted right after a migration must not wait out TIME_WAIT. */
	int one = 1;
	int rc = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (!rc)
		rc = bind(fd, ai->ai_addr, ai->ai_addrlen);
	if (!rc)
		rc = listen(fd, 1);
	if (rc) {
		rc = -errno;
		close(fd);
		return rc;
	}
	*out = fd;
	return 0;
}

static uint16_t bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					      : ((struct sockaddr_in *)&ss)->sin_port);
}

int mig_listener_open(struct mig_listener **out, const struct mig_address *a, char *err, size_t errlen)
{
	*out = NULL;
	struct mig_listener *l = calloc(1, sizeof(*l));
	if (!l)
		return mig_fail(err, errlen, -ENOMEM, "out of memory for a migration listener");
	l->fd = -1;
	mig_address_str(a, l->where, sizeof(l->where));
	int rc = mig_address_has_tls(a) ? mig_tls_creds_load(&l->creds, &a->tls, err, errlen) : 0;
	struct addrinfo *res = NULL;
	if (!rc)
		rc = mig_address_resolve(a, true, &res, err, errlen);
	int e = EADDRNOTAVAIL;
	for (const struct addrinfo *ai = res; !rc && ai && l->fd < 0; ai = ai->ai_next)
		e = -listen_on(ai, &l->fd);
	if (res)
		freeaddrinfo(res);
	if (!rc && l->fd < 0)
		rc = listen_failed(l->where, a, e, err, errlen);
	if (rc) {
		mig_listener_close(l);
		return rc;
	}
	l->port = bound_port(l->fd);
	*out = l;
	return 0;
}

uint16_t mig_listener_port(const struct mig_listener *l)
{
	return l->port;
}

static void peer_name(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(s4->sin_port));
	}
}

/* On a TLS listener, a source that starts with anything but a TLS handshake speaks plain TCP. */
static int refuse_plain_peer(struct mig_conn *c)
{
	int rc = mig_wait_fd(c, c->fd, POLLIN, c->timeout_ms, "waiting for the TLS handshake");
	if (rc)
		return rc;
	uint8_t b;
	ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0)
		return mig_conn_fail(c, -EPIPE, "the source at %s closed the connection before it said anything", c->peer);
	if (n < 0 || b == TLS_HANDSHAKE_BYTE)
		return 0; /* the TLS handshake says what is wrong */
	static const char why[] = "this destination accepts TLS connections only: give the source tls-cert=, "
				  "tls-key= and tls-ca= too";
	mig_handshake_refuse(c, why);
	return mig_conn_fail(c, -EPROTO,
			     "the source at %s speaks plain TCP to this listener, which requires TLS: give the source "
			     "tls-cert=, tls-key= and tls-ca= too (its own certificate, signed by the same CA)",
			     c->peer);
}

int mig_listener_accept(struct mig_listener *l, int wait_ms, const struct mig_conn_opts *o, struct mig_conn **out,
			char *err, size_t errlen)
{
	*out = NULL;
	struct mig_conn *c = mig_conn_new(-1, l->where, false, o);
	if (!c)
		return mig_fail(err, errlen, -ENOMEM, "out of memory for a migration connection");
	int fd = -1, rc;
	while (fd < 0) {
		if ((rc = mig_wait_fd(c, l->fd, POLLIN, wait_ms, "waiting for a source to connect"))) {
			char d[32];
			if (rc == -ETIMEDOUT)
				mig_conn_fail(c, rc,
					      "no source connected to %s within %s: start the migration on the source "
					      "with this host's address and port",
					      l->where, mig_duration(wait_ms, d, sizeof(d)));
			goto fail;
		}
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0 && errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
			rc = mig_conn_fail(c, -errno, "cannot accept a connection on %s: %s", l->where, strerror(errno));
			goto fail;
		}
		if (fd >= 0)
			peer_name(&ss, c->peer, sizeof(c->peer));
	}
	c->fd = fd;
	no_delay(fd);
	if (l->creds && !(rc = refuse_plain_peer(c)))
		rc = mig_tls_start(c, l->creds, NULL);
	if (rc)
		goto fail;
	*out = c;
	return 0;
fail:
	mig_fail(err, errlen, rc, "%s", c->why);
	mig_conn_close(c);
	return rc;
}

void mig_listener_close(struct mig_listener *l)
{
	if (!l)
		return;
	if (l->fd >= 0)
		close(l->fd);
	mig_tls_creds_free(l->creds);
	free(l);
}
