/*
 * What two vmon processes say before any VM state crosses a migration connection: each sends
 * the stream preamble and a hello record (its role, its vmon version, and a compatibility blob
 * its caller provides, e.g. the guest's CPUID and memory size), framed and checksummed as the
 * stream's records are; the destination answers with a verdict (accept, or refuse with its
 * caller's reason), then the source with its own. A peer that is not vmon (one that closes the
 * connection, or answers something else) and a vmon of another stream format are refused with
 * a sentence that says so, and a refusal's reason travels to the other side and is shown there.
 * docs/migration.md has the byte layout.
 */
#ifndef VMON_MIGRATION_HANDSHAKE_H
#define VMON_MIGRATION_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migration/stream.h"
#include "migration/transport.h"

#define MIG_REASON_MAX 504 /* a refusal's reason, NUL included */

struct mig_rec_verdict; /* stream_wire.h */

/* The peer as its hello describes it. */
struct mig_peer {
	uint32_t stream_version;
	char vmon_version[MIG_VMON_VERSION_MAX];
	const uint8_t *compat; /* its caller's blob: valid during the check only */
	size_t compat_len;
};

/*
 * Judges the peer: 0 to go on, or nonzero with one sentence in reason (the peer shows it, e.g.
 * "this host's CPU lacks AVX2, which the guest uses").
 */
typedef int (*mig_peer_check)(void *opaque, const struct mig_peer *peer, char *reason, size_t len);

struct mig_hello {
	const char *vmon_version; /* VMON_VERSION */
	const void *compat;       /* sent to the peer as it is; at most MIG_COMPAT_MAX (64 KiB) bytes */
	size_t compat_len;
	mig_peer_check check; /* NULL: accept any peer of this stream format */
	void *opaque;
};

/*
 * Runs the handshake on c as the side c is (source or destination). On 0 both sides accepted;
 * peer (may be NULL) gets the other side's versions (its compat pointer is cleared). Otherwise:
 * -EPROTO for a peer that is not vmon or speaks another stream format, -EPERM for a refusal (by
 * either side's check), -EPIPE, -ETIMEDOUT, -ECANCELED; the sentence in err.
 */
int mig_handshake(struct mig_conn *c, const struct mig_hello *h, struct mig_peer *peer, char *err, size_t errlen);

/*
 * Tells the peer of c, before any handshake, that this side refuses it (a destination that
 * requires TLS, reached over plain TCP); best effort, no error.
 */
void mig_handshake_refuse(struct mig_conn *c, const char *reason);

/*
 * The last word of a migration, after the stream's end record: the destination says whether the
 * guest now runs there (refusal NULL), or why it could not start it. A verdict record, framed and
 * checksummed as the handshake's. 0 or -errno (err).
 */
int mig_outcome_send(struct mig_conn *c, const char *refusal, char *err, size_t errlen);
/*
 * The source waits for it (within the connection's deadline): 0 when the guest runs on the
 * destination; -EPERM with the destination's reason; -EPIPE when the destination closed the
 * connection without a word (it died); -ETIMEDOUT, -ECANCELED, -EPROTO. The sentence in err.
 */
int mig_outcome_wait(struct mig_conn *c, char *err, size_t errlen);

/* A verdict record's payload: accept (refusal NULL) or refuse with the reason (cut to fit, made printable). */
void mig_verdict_make(struct mig_rec_verdict *v, const char *refusal);
/* Checks a verdict record's payload (sizeof(struct mig_rec_verdict) bytes): 0, or -EPROTO for bytes vmon never writes. */
int mig_verdict_parse(const void *payload, char reason[MIG_REASON_MAX], bool *accept);

#endif
