#include "migration/handshake.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "migration/stream_wire.h"
#include "migration/transport_conn.h"

/* What one side sends at once: the preamble, its hello, its verdict (each optional). */
struct out {
	uint8_t *buf;
	size_t len;
};

static void put(struct out *o, const void *p, size_t len)
{
	if (len)
		memcpy(o->buf + o->len, p, len);
	o->len += len;
}

static void put_preamble(struct out *o)
{
	struct mig_preamble p = { .version = MIG_VERSION };
	memcpy(p.magic, MIG_MAGIC, sizeof(p.magic));
	put(o, &p, sizeof(p));
}

static void put_record(struct out *o, uint32_t type, const void *head, size_t hlen, const void *data, size_t dlen)
{
	uint32_t crc = mig_crc(mig_crc(0, head, hlen), data, dlen);
	struct mig_rec_hdr h = mig_rec_hdr_make(type, (uint32_t)(hlen + dlen), crc);
	put(o, &h, sizeof(h));
	put(o, head, hlen);
	put(o, data, dlen);
}

static void put_hello(struct out *o, const struct mig_conn *c, const struct mig_hello *h)
{
	struct mig_rec_hello r = {
		.role = mig_conn_is_source(c) ? MIG_ROLE_SOURCE : MIG_ROLE_DESTINATION,
		.compat_len = (uint32_t)h->compat_len,
	};
	snprintf(r.vmon_version, sizeof(r.vmon_version), "%s", h->vmon_version);
	put_record(o, MIG_REC_HELLO, &r, sizeof(r), h->compat, h->compat_len);
}

void mig_verdict_make(struct mig_rec_verdict *v, const char *refusal)
{
	memset(v, 0, sizeof(*v));
	v->accept = !refusal;
	if (refusal)
		snprintf(v->reason, sizeof(v->reason), "%s", refusal);
	/* The reason travels as printable ASCII: anything else in it would make the peer refuse the record. */
	for (char *p = v->reason; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			*p = '?';
}

int mig_verdict_parse(const void *payload, char reason[MIG_REASON_MAX], bool *accept)
{
	struct mig_rec_verdict v;
	memcpy(&v, payload, sizeof(v));
	if (v.accept > 1 || v.reserved || !mig_printable(v.reason, sizeof(v.reason)) || (v.accept && v.reason[0]))
		return -EPROTO;
	*accept = v.accept;
	memcpy(reason, v.reason, sizeof(v.reason));
	return 0;
}

static void put_verdict(struct out *o, const char *reason)
{
	struct mig_rec_verdict v;
	mig_verdict_make(&v, reason);
	put_record(o, MIG_REC_VERDICT, &v, sizeof(v), NULL, 0);
}

static int send_out(struct mig_conn *c, struct out *o, char *err, size_t errlen)
{
	int rc = mig_conn_write(c, o->buf, o->len);
	free(o->buf);
	o->buf = NULL;
	if (rc)
		return mig_fail(err, errlen, rc, "migration handshake: %s", mig_conn_error(c));
	return 0;
}

static int start_out(struct out *o, size_t compat_len, char *err, size_t errlen)
{
	o->len = 0;
	o->buf = malloc(sizeof(struct mig_preamble) + 2 * sizeof(struct mig_rec_hdr) + sizeof(struct mig_rec_hello) +
			compat_len + sizeof(struct mig_rec_verdict));
	return o->buf ? 0 : mig_fail(err, errlen, -ENOMEM, "migration handshake: out of memory");
}

void mig_handshake_refuse(struct mig_conn *c, const char *reason)
{
	struct out o;
	if (start_out(&o, 0, NULL, 0))
		return;
	put_preamble(&o);
	put_verdict(&o, reason);
	send_out(c, &o, NULL, 0);
}

/* "the destination at tcp:host:4444", "the source at 192.0.2.1:50000". */
static const char *who(const struct mig_conn *c, char *buf, size_t len)
{
	snprintf(buf, len, "%s at %s", mig_peer_role(c), mig_conn_peer(c));
	return buf;
}

/* What a peer that is not vmon sent, quoted with anything unprintable as \xNN. */
static void quote(const uint8_t *b, size_t n, char *buf, size_t len)
{
	size_t k = 0;
	for (size_t i = 0; i < n && k + 5 < len; i++)
		k += (size_t)snprintf(buf + k, len - k, b[i] >= 0x20 && b[i] < 0x7f && b[i] != '"' ? "%c" : "\\x%02x", b[i]);
	buf[k] = 0;
}

static int not_vmon(struct mig_conn *c, const uint8_t *b, size_t n, char *err, size_t errlen)
{
	char w[MIG_HOST_MAX + 32], q[80];
	who(c, w, sizeof(w));
	if (b[0] == 0x16 && (n < 2 || b[1] == 0x03)) {
		if (!mig_conn_is_source(c))
			mig_handshake_refuse(c, "this destination listens without TLS: give both sides tls-cert=, tls-key= "
						"and tls-ca=, or neither");
		return mig_fail(err, errlen, -EPROTO,
				"migration handshake: %s speaks TLS, and this side has no certificates: give both sides "
				"tls-cert=, tls-key= and tls-ca=, or neither",
				w);
	}
	quote(b, n, q, sizeof(q));
	return mig_fail(err, errlen, -EPROTO, "migration handshake: %s is not vmon: it %s \"%s\" where vmon sends %s",
			w, mig_conn_is_source(c) ? "answered" : "sent", q, MIG_MAGIC);
}

static int closed_early(struct mig_conn *c, size_t got, char *err, size_t errlen)
{
	char w[MIG_HOST_MAX + 32];
	who(c, w, sizeof(w));
	if (mig_conn_is_source(c))
		return mig_fail(err, errlen, -EPROTO,
				"migration handshake: %s closed the connection %s: it is not a vmon receiving a "
				"migration (start `vmon receive --listen` there), or it refused this host",
				w, got ? "in the middle of its answer" : "without answering");
	return mig_fail(err, errlen, -EPROTO, "migration handshake: %s closed the connection %s: it is not a vmon "
			"sending a VM", w, got ? "in the middle of its hello" : "without saying anything");
}

/* The peer's preamble, read as it arrives, so a peer that is not vmon is told apart at its first bytes. */
static int read_preamble(struct mig_conn *c, struct mig_preamble *p, char *err, size_t errlen)
{
	uint8_t *b = (uint8_t *)p;
	size_t got = 0;
	while (got < sizeof(*p)) {
		ssize_t n = mig_conn_read_some(c, b + got, sizeof(*p) - got);
		if (n == -EPIPE)
			return closed_early(c, got, err, errlen);
		if (n < 0)
			return mig_fail(err, errlen, (int)n, "migration handshake: %s", mig_conn_error(c));
		if (n == 0)
			return closed_early(c, got, err, errlen);
		got += (size_t)n;
		if (memcmp(b, MIG_MAGIC, MIN(got, sizeof(p->magic))))
			return not_vmon(c, b, got, err, errlen);
	}
	if (p->reserved)
		return mig_fail(err, errlen, -EPROTO, "migration handshake: the preamble from %s is damaged",
				mig_conn_peer(c));
	return 0;
}

/* The next record of the handshake, checked (framing, length, checksum); *payload is malloc'ed. */
static int read_record(struct mig_conn *c, struct mig_rec_hdr *h, uint8_t **payload, char *err, size_t errlen)
{
	char w[MIG_HOST_MAX + 32];
	who(c, w, sizeof(w));
	*payload = NULL;
	ssize_t n = mig_conn_read(c, h, sizeof(*h));
	if (n < 0)
		return mig_fail(err, errlen, (int)n, "migration handshake: %s", mig_conn_error(c));
	if ((size_t)n < sizeof(*h))
		return closed_early(c, 1, err, errlen);
	if (mig_crc(0, h, offsetof(struct mig_rec_hdr, hdr_crc)) != h->hdr_crc)
		return mig_fail(err, errlen, -EPROTO, "migration handshake: a record header from %s is corrupted", w);
	if (h->type != MIG_REC_HELLO && h->type != MIG_REC_VERDICT)
		return mig_fail(err, errlen, -EPROTO, "migration handshake: %s sent a %s (type %u) where the handshake's "
				"hello or verdict belongs", w, mig_rec_name(h->type), h->type);
	if (!mig_rec_len_ok(h->type, h->len))
		return mig_fail(err, errlen, -EPROTO, "migration handshake: %s sent a %s of %u bytes, which no %s has", w,
				mig_rec_name(h->type), h->len, mig_rec_name(h->type));
	if (!(*payload = malloc(h->len)))
		return mig_fail(err, errlen, -ENOMEM, "migration handshake: out of memory");
	n = mig_conn_read(c, *payload, h->len);
	int rc = n < 0 ? mig_fail(err, errlen, (int)n, "migration handshake: %s", mig_conn_error(c))
		 : (size_t)n < h->len ? closed_early(c, 1, err, errlen)
		 : mig_crc(0, *payload, h->len) != h->crc
			 ? mig_fail(err, errlen, -EPROTO, "migration handshake: the %s from %s is corrupted (checksum "
				    "mismatch)", mig_rec_name(h->type), w)
			 : 0;
	if (rc) {
		free(*payload);
		*payload = NULL;
	}
	return rc;
}

static int parse_hello(struct mig_conn *c, const uint8_t *payload, uint32_t len, struct mig_peer *peer, char *err,
		       size_t errlen)
{
	char w[MIG_HOST_MAX + 32];
	who(c, w, sizeof(w));
	struct mig_rec_hello r;
	memcpy(&r, payload, sizeof(r));
	uint32_t want = mig_conn_is_source(c) ? MIG_ROLE_DESTINATION : MIG_ROLE_SOURCE;
	if (r.role != want)
		return mig_fail(err, errlen, -EPROTO, "migration handshake: %s is a %s too: one side sends (PUT "
				"/vm/migrate), the other receives (vmon receive)", w,
				r.role == MIG_ROLE_SOURCE ? "source" : r.role == MIG_ROLE_DESTINATION ? "destination" : "stranger");
	if (r.flags || r.reserved || r.compat_len != len - sizeof(r) || !mig_printable(r.vmon_version, sizeof(r.vmon_version)))
		return mig_fail(err, errlen, -EPROTO, "migration handshake: the hello record from %s holds bytes vmon never "
				"writes (flags, reserved field, blob length or version string)", w);
	memcpy(peer->vmon_version, r.vmon_version, sizeof(peer->vmon_version));
	peer->compat = payload + sizeof(r);
	peer->compat_len = r.compat_len;
	return 0;
}

/* The verdict's reason, or NULL when the peer accepts. */
static int parse_verdict(struct mig_conn *c, const uint8_t *payload, char *reason, bool *accept, char *err,
			 size_t errlen)
{
	if (mig_verdict_parse(payload, reason, accept))
		return mig_fail(err, errlen, -EPROTO, "migration handshake: the verdict record from %s holds bytes vmon "
				"never writes", mig_conn_peer(c));
	return 0;
}

/* This side's verdict on the peer: NULL to accept, or the reason, in reason. */
static const char *judge(const struct mig_conn *c, const struct mig_hello *h, const struct mig_peer *peer,
			 char *reason, size_t len)
{
	if (peer->stream_version != MIG_VERSION) {
		snprintf(reason, len,
			 "the %s (vmon %s) speaks stream format %u and the %s (vmon %s) format %u: migrate between vmon "
			 "releases that share a stream format",
			 mig_conn_is_source(c) ? "source" : "destination", h->vmon_version, MIG_VERSION,
			 mig_conn_is_source(c) ? "destination" : "source", peer->vmon_version, peer->stream_version);
		return reason;
	}
	reason[0] = 0;
	if (h->check && h->check(h->opaque, peer, reason, len)) {
		if (!reason[0])
			snprintf(reason, len, "the %s cannot run this VM", mig_conn_is_source(c) ? "source" : "destination");
		return reason;
	}
	return NULL;
}

/* Reads the peer's verdict; -EPERM with its reason when it refuses. */
static int read_verdict(struct mig_conn *c, const uint8_t *payload, const struct mig_peer *peer, char *err,
			size_t errlen)
{
	char reason[MIG_REASON_MAX], w[MIG_HOST_MAX + 32];
	bool accept = false;
	int rc = parse_verdict(c, payload, reason, &accept, err, errlen);
	if (rc || accept)
		return rc;
	return mig_fail(err, errlen, -EPERM, "migration handshake: %s%s%s%s refused the %s: %s", who(c, w, sizeof(w)),
			peer ? " (vmon " : "", peer ? peer->vmon_version : "", peer ? ")" : "",
			mig_conn_is_source(c) ? "migration" : "destination", reason);
}

static int refused_here(struct mig_conn *c, const struct mig_peer *peer, const char *reason, char *err,
			size_t errlen)
{
	char w[MIG_HOST_MAX + 32];
	return mig_fail(err, errlen, peer->stream_version != MIG_VERSION ? -EPROTO : -EPERM,
			"migration handshake: this vmon refused %s (vmon %s): %s", who(c, w, sizeof(w)),
			peer->vmon_version, reason);
}

static int source_side(struct mig_conn *c, const struct mig_hello *h, struct mig_peer *peer, char *err,
		       size_t errlen)
{
	struct out o;
	int rc = start_out(&o, h->compat_len, err, errlen);
	if (rc)
		return rc;
	put_preamble(&o);
	put_hello(&o, c, h);
	struct mig_preamble pre;
	/* A peer that closes at once may do so before the hello is out: not vmon all the same. */
	if ((rc = send_out(c, &o, err, errlen)) == -EPIPE)
		return closed_early(c, 0, err, errlen);
	if (rc || (rc = read_preamble(c, &pre, err, errlen)))
		return rc;
	peer->stream_version = pre.version;
	struct mig_rec_hdr rh;
	uint8_t *hello = NULL, *verdict = NULL;
	if ((rc = read_record(c, &rh, &hello, err, errlen)))
		return rc;
	if (rh.type == MIG_REC_VERDICT) { /* refused before any hello: this vmon does not fit its listener */
		rc = read_verdict(c, hello, NULL, err, errlen);
		free(hello);
		return rc ? rc : mig_fail(err, errlen, -EPROTO, "migration handshake: %s accepted before it said hello",
					  mig_conn_peer(c));
	}
	if (!(rc = parse_hello(c, hello, rh.len, peer, err, errlen)) &&
	    !(rc = read_record(c, &rh, &verdict, err, errlen)))
		rc = rh.type != MIG_REC_VERDICT ? mig_fail(err, errlen, -EPROTO, "migration handshake: %s sent a second "
							 "hello", mig_conn_peer(c))
						: read_verdict(c, verdict, peer, err, errlen);
	char reason[MIG_REASON_MAX];
	const char *refusal = rc ? NULL : judge(c, h, peer, reason, sizeof(reason));
	if (!rc && !(rc = start_out(&o, 0, err, errlen))) {
		put_verdict(&o, refusal);
		rc = send_out(c, &o, err, errlen);
		if (!rc && refusal)
			rc = refused_here(c, peer, refusal, err, errlen);
	}
	free(hello);
	free(verdict);
	return rc;
}

static int destination_side(struct mig_conn *c, const struct mig_hello *h, struct mig_peer *peer, char *err,
			    size_t errlen)
{
	struct mig_preamble pre;
	struct mig_rec_hdr rh;
	uint8_t *hello = NULL, *verdict = NULL;
	int rc = read_preamble(c, &pre, err, errlen);
	if (!rc)
		rc = read_record(c, &rh, &hello, err, errlen);
	if (!rc && rh.type != MIG_REC_HELLO)
		rc = mig_fail(err, errlen, -EPROTO, "migration handshake: the source at %s sent a verdict before its hello",
			      mig_conn_peer(c));
	peer->stream_version = pre.version;
	if (!rc)
		rc = parse_hello(c, hello, rh.len, peer, err, errlen);
	char reason[MIG_REASON_MAX];
	const char *refusal = rc ? NULL : judge(c, h, peer, reason, sizeof(reason));
	struct out o;
	if (!rc && !(rc = start_out(&o, h->compat_len, err, errlen))) {
		put_preamble(&o);
		put_hello(&o, c, h);
		put_verdict(&o, refusal);
		rc = send_out(c, &o, err, errlen);
		if (!rc && refusal)
			rc = refused_here(c, peer, refusal, err, errlen);
	}
	if (!rc && !(rc = read_record(c, &rh, &verdict, err, errlen)))
		rc = rh.type != MIG_REC_VERDICT ? mig_fail(err, errlen, -EPROTO, "migration handshake: the source at %s "
							 "sent a second hello", mig_conn_peer(c))
						: read_verdict(c, verdict, peer, err, errlen);
	free(hello);
	free(verdict);
	return rc;
}

int mig_handshake(struct mig_conn *c, const struct mig_hello *h, struct mig_peer *peer, char *err, size_t errlen)
{
	struct mig_peer tmp;
	if (!peer)
		peer = &tmp;
	memset(peer, 0, sizeof(*peer));
	if (h->compat_len > MIG_COMPAT_MAX || strlen(h->vmon_version) >= MIG_VMON_VERSION_MAX)
		return mig_fail(err, errlen, -EINVAL, "migration handshake: the compatibility blob (%zu bytes) or the "
				"version string is too long", h->compat_len);
	int rc = mig_conn_is_source(c) ? source_side(c, h, peer, err, errlen) : destination_side(c, h, peer, err, errlen);
	peer->compat = NULL; /* it pointed into a buffer that is gone */
	peer->compat_len = 0;
	return rc;
}

int mig_outcome_send(struct mig_conn *c, const char *refusal, char *err, size_t errlen)
{
	struct out o;
	int rc = start_out(&o, 0, err, errlen);
	if (rc)
		return rc;
	put_verdict(&o, refusal);
	return send_out(c, &o, err, errlen);
}

int mig_outcome_wait(struct mig_conn *c, char *err, size_t errlen)
{
	struct mig_rec_hdr h;
	uint8_t *payload;
	char w[MIG_HOST_MAX + 32];
	who(c, w, sizeof(w));
	int rc = read_record(c, &h, &payload, err, errlen);
	if (rc == -EPROTO && !payload && strstr(err, "closed the connection"))
		return mig_fail(err, errlen, -EPIPE, "migration: %s closed the connection before it said whether the "
				"guest runs there: the guest keeps running here", w);
	if (rc)
		return rc;
	if (h.type != MIG_REC_VERDICT) {
		free(payload);
		return mig_fail(err, errlen, -EPROTO, "migration: %s sent a %s where it says whether the guest runs there",
				w, mig_rec_name(h.type));
	}
	char reason[MIG_REASON_MAX];
	bool accept = false;
	rc = parse_verdict(c, payload, reason, &accept, err, errlen);
	free(payload);
	if (rc || accept)
		return rc;
	return mig_fail(err, errlen, -EPERM, "migration: %s could not start the guest: %s", w, reason);
}
