/*
 * The connection a migration stream travels over: TCP between two vmon processes, with mutual
 * TLS 1.3 (GnuTLS) when the address names certificates. A source connects, a destination
 * listens and accepts one connection; every step that waits for the peer (connect, accept, the
 * TLS handshake, each read and write) waits at most a deadline and can be cancelled from another
 * thread, so a stalled or vanished peer never hangs vmon. The connection counts the stream's
 * bytes for progress and bandwidth figures. docs/migration.md has the user's view.
 *
 * Every failure is one sentence in the caller's err (or mig_conn_error() for reads and writes)
 * that names the peer, what failed and what to do about it.
 */
#ifndef VMON_MIGRATION_TRANSPORT_H
#define VMON_MIGRATION_TRANSPORT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "migration/migration_address.h"
#include "migration/stream.h"

/* How long a step waits for the peer when the caller does not say. */
#define MIG_TIMEOUT_MS_DEFAULT 10000

/*
 * Stops a migration's connection from another thread (DELETE /vm/migration): every wait of a
 * connection made with it returns -ECANCELED at once, and so does every later step.
 */
struct mig_cancel {
	int fd; /* an eventfd: readable once fired, wakes the waits */
	atomic_bool fired;
};

int mig_cancel_init(struct mig_cancel *c);
/* Any thread, any time, more than once. */
void mig_cancel_fire(struct mig_cancel *c);
void mig_cancel_destroy(struct mig_cancel *c);

struct mig_conn_opts {
	/* The longest any step waits without progress from the peer; 0 = MIG_TIMEOUT_MS_DEFAULT. */
	int timeout_ms;
	const struct mig_cancel *cancel; /* NULL: not cancellable */
};

struct mig_conn;
struct mig_listener;

/*
 * The source: resolves a's host, connects (each address it resolves to in turn, within the
 * deadline), and runs the TLS handshake when a names certificates. 0 or -errno: -ECONNREFUSED,
 * -EHOSTUNREACH, -ETIMEDOUT, -ECANCELED, -EACCES (a certificate refused), -EPROTO (the peer
 * does not speak TLS), -EINVAL (certificate files).
 */
int mig_conn_connect(struct mig_conn **out, const struct mig_address *a, const struct mig_conn_opts *o, char *err,
		     size_t errlen);

/*
 * The destination: listens on a (SO_REUSEADDR) and loads its certificates, so a port in use or
 * a bad certificate is reported before any wait. -EADDRINUSE, -EADDRNOTAVAIL, -EACCES, -EINVAL.
 */
int mig_listener_open(struct mig_listener **out, const struct mig_address *a, char *err, size_t errlen);
/* The port the listener is bound to. */
uint16_t mig_listener_port(const struct mig_listener *l);
/*
 * Waits up to wait_ms (< 0: without limit) for one connection and runs the TLS handshake on it
 * (refusing a peer that speaks plain TCP to a TLS listener). The listener stays open: after a
 * peer that is refused the caller may accept again; it closes the listener once it has its source.
 */
int mig_listener_accept(struct mig_listener *l, int wait_ms, const struct mig_conn_opts *o, struct mig_conn **out,
			char *err, size_t errlen);
void mig_listener_close(struct mig_listener *l);

/*
 * A connection on a connected socket of the caller's (tests, fuzzing), plain TCP; takes the
 * descriptor. peer names it in messages; source says which end this is.
 */
int mig_conn_wrap(struct mig_conn **out, int fd, const char *peer, bool source, const struct mig_conn_opts *o);

/* All of len bytes, or -errno (-ETIMEDOUT, -ECANCELED, -EPIPE...) with the reason in mig_conn_error(). */
int mig_conn_write(struct mig_conn *c, const void *p, size_t len);
/* All of len bytes, fewer when the peer closed the connection, or -errno as mig_conn_write. */
ssize_t mig_conn_read(struct mig_conn *c, void *p, size_t len);
/* What arrives first, 1 to len bytes; 0 when the peer closed the connection; or -errno. */
ssize_t mig_conn_read_some(struct mig_conn *c, void *p, size_t len);
/* The sentence of the last failure, "" if none. */
const char *mig_conn_error(const struct mig_conn *c);

/* The stream's reads and writes over c (mig_writer_start_io, mig_reader_open_io). */
struct mig_io mig_conn_io(struct mig_conn *c);

/* Bytes of the stream sent and received so far (before TLS); any thread may read them. */
uint64_t mig_conn_bytes_sent(const struct mig_conn *c);
uint64_t mig_conn_bytes_received(const struct mig_conn *c);

/* The peer as messages name it: the address connected to, or the source's IP and port. */
const char *mig_conn_peer(const struct mig_conn *c);
bool mig_conn_is_source(const struct mig_conn *c);
bool mig_conn_uses_tls(const struct mig_conn *c);

/* Ends TLS (close_notify, without waiting) and closes the socket. NULL is ignored. */
void mig_conn_close(struct mig_conn *c);

#endif
