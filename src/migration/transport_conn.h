/*
 * Inside a migration connection: shared by transport.c (waits, reads and writes),
 * transport_socket.c (connect, listen, accept) and transport_tls.c (GnuTLS). Private to
 * src/migration/.
 */
#ifndef VMON_MIGRATION_TRANSPORT_CONN_H
#define VMON_MIGRATION_TRANSPORT_CONN_H

#include <gnutls/gnutls.h>
#include <poll.h>

#include "migration/transport.h"

#define MIG_WHY_MAX 512

struct mig_tls_creds; /* a side's loaded certificate, key and CA (transport_tls.c) */

struct mig_conn {
	int fd;
	int timeout_ms;
	const struct mig_cancel *cancel;
	bool source;
	gnutls_session_t tls; /* NULL: plain TCP */
	struct mig_tls_creds *creds; /* a reference, held while tls is */
	int sys_errno;       /* of the socket call under GnuTLS that failed last */
	uint8_t first[8];    /* the first bytes that arrived under TLS, to tell a peer that answers without it */
	size_t nfirst;
	atomic_uint_fast64_t sent, received;
	char peer[MIG_HOST_MAX + 16];
	char why[MIG_WHY_MAX];
};

/* A new connection on fd (taken), or NULL when out of memory (fd closed). */
struct mig_conn *mig_conn_new(int fd, const char *peer, bool source, const struct mig_conn_opts *o);

/* Sets c->why and returns rc. */
int mig_conn_fail(struct mig_conn *c, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * Waits until fd has events, the deadline of c's timeout passes (-ETIMEDOUT, "sent nothing for
 * N s while vmon was doing"), or c is cancelled (-ECANCELED). A timeout_ms < 0 waits without limit.
 */
int mig_wait_fd(struct mig_conn *c, int fd, short events, int timeout_ms, const char *doing);

/* "2.5 s", "10 s", "300 ms": how long a wait lasted, for messages. */
const char *mig_duration(int ms, char *buf, size_t len);

/* "the destination" or "the source": the peer of c, for messages. */
const char *mig_peer_role(const struct mig_conn *c);

/* ---- TLS (transport_tls.c) ---- */

/* Loads and checks a side's certificate files; -EINVAL etc. with the file named in err. */
int mig_tls_creds_load(struct mig_tls_creds **out, const struct mig_tls_files *f, char *err, size_t errlen);
/* Drops a reference (the loader's or a connection's); NULL is ignored. */
void mig_tls_creds_free(struct mig_tls_creds *creds);
/*
 * Runs the TLS handshake on c as its side (a source checks the destination's certificate is
 * made out to hostname), holding a reference to creds. 0 or -errno with c->why set.
 */
int mig_tls_start(struct mig_conn *c, struct mig_tls_creds *creds, const char *hostname);
/* One TLS record's worth: bytes moved, 0 at the peer's close, -EAGAIN (wait for *events), -errno. */
ssize_t mig_tls_send(struct mig_conn *c, const void *p, size_t len, short *events);
ssize_t mig_tls_recv(struct mig_conn *c, void *p, size_t len, short *events);
void mig_tls_end(struct mig_conn *c);

#endif
