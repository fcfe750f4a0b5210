/*
 * Mutual TLS 1.3 for migrations (GnuTLS): both sides present a certificate signed by the CA of
 * tls-ca= and verify the peer's; the source also checks that the destination's certificate is
 * made out to the host it connected to (or tls-hostname=). The destination checks no name: a
 * source is whoever holds a key the CA certified. Failures are named (expired, not signed by the
 * CA, key and certificate that do not match, a peer that speaks plain TCP).
 */
#include "migration/transport_conn.h"

#include <errno.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "lib/util.h"
#include "migration/stream.h"
#include "migration/stream_wire.h"

/* TLS 1.3 only: both ends are vmon, there is no older peer to talk to. */
#define PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3"
#define PEM_MAX (1024 * 1024)

struct mig_tls_creds {
	gnutls_certificate_credentials_t cred;
	atomic_int refs;
	char ca[PATH_MAX]; /* the file, for messages */
};

static const char *date_of(time_t t, char *buf, size_t len)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M UTC", &tm);
	return buf;
}

static int read_pem(const char *opt, const char *path, gnutls_datum_t *d, char *err, size_t errlen)
{
	uint8_t *data;
	size_t len;
	int rc = read_file(path, PEM_MAX, &data, &len);
	if (rc)
		return mig_fail(err, errlen, rc, "cannot read %s=%s: %s", opt, path, strerror(-rc));
	d->data = data;
	d->size = (unsigned int)len;
	return 0;
}

/* This side's own certificate, checked before any peer sees it: in its validity period, signed by the CA. */
static int check_own_cert(const struct mig_tls_files *f, const gnutls_datum_t *cert, const gnutls_datum_t *ca,
			  char *err, size_t errlen)
{
	gnutls_x509_crt_t *cas = NULL, *crts = NULL;
	unsigned int ncas = 0, ncrts = 0;
	int g = gnutls_x509_crt_list_import2(&cas, &ncas, ca, GNUTLS_X509_FMT_PEM, 0);
	int rc = 0;
	char when[64];
	if (g < 0 || ncas == 0) {
		rc = mig_fail(err, errlen, -EINVAL, "tls-ca=%s holds no PEM certificate (%s)", f->ca,
			      g < 0 ? gnutls_strerror(g) : "empty");
		goto out;
	}
	g = gnutls_x509_crt_list_import2(&crts, &ncrts, cert, GNUTLS_X509_FMT_PEM, 0);
	if (g < 0 || ncrts == 0) {
		rc = mig_fail(err, errlen, -EINVAL, "tls-cert=%s holds no PEM certificate (%s)", f->cert,
			      g < 0 ? gnutls_strerror(g) : "empty");
		goto out;
	}
	time_t now = time(NULL), expires = gnutls_x509_crt_get_expiration_time(crts[0]),
	       starts = gnutls_x509_crt_get_activation_time(crts[0]);
	if (expires != (time_t)-1 && expires < now) {
		rc = mig_fail(err, errlen, -EINVAL, "tls-cert=%s expired on %s: make a new certificate signed by tls-ca=%s",
			      f->cert, date_of(expires, when, sizeof(when)), f->ca);
		goto out;
	}
	if (starts != (time_t)-1 && starts > now) {
		rc = mig_fail(err, errlen, -EINVAL, "tls-cert=%s is not valid before %s: check this host's clock", f->cert,
			      date_of(starts, when, sizeof(when)));
		goto out;
	}
	unsigned int status = 0;
	g = gnutls_x509_crt_list_verify(crts, ncrts, cas, ncas, NULL, 0, 0, &status);
	if (g < 0 || status)
		rc = mig_fail(err, errlen, -EINVAL,
			      "tls-cert=%s is not signed by the CA in tls-ca=%s, so the peer would refuse it: sign it "
			      "with that CA (docs/migration.md)",
			      f->cert, f->ca);
out:
	for (unsigned int i = 0; i < ncas; i++)
		gnutls_x509_crt_deinit(cas[i]);
	for (unsigned int i = 0; i < ncrts; i++)
		gnutls_x509_crt_deinit(crts[i]);
	gnutls_free(cas);
	gnutls_free(crts);
	return rc;
}

static int load_into(struct mig_tls_creds *t, const struct mig_tls_files *f, const gnutls_datum_t *cert,
		     const gnutls_datum_t *key, const gnutls_datum_t *ca, char *err, size_t errlen)
{
	int rc = check_own_cert(f, cert, ca, err, errlen);
	if (rc)
		return rc;
	if (gnutls_certificate_allocate_credentials(&t->cred) < 0)
		return mig_fail(err, errlen, -ENOMEM, "out of memory for TLS credentials");
	int g = gnutls_certificate_set_x509_trust_mem(t->cred, ca, GNUTLS_X509_FMT_PEM);
	if (g <= 0)
		return mig_fail(err, errlen, -EINVAL, "tls-ca=%s: %s", f->ca, g < 0 ? gnutls_strerror(g) : "no certificate");
	g = gnutls_certificate_set_x509_key_mem(t->cred, cert, key, GNUTLS_X509_FMT_PEM);
	if (g == GNUTLS_E_CERTIFICATE_KEY_MISMATCH)
		return mig_fail(err, errlen, -EINVAL,
				"tls-key=%s does not match tls-cert=%s: give the private key the certificate was made for",
				f->key, f->cert);
	if (g < 0)
		return mig_fail(err, errlen, -EINVAL, "tls-key=%s is not a PEM private key usable with tls-cert=%s (%s)",
				f->key, f->cert, gnutls_strerror(g));
	return 0;
}

int mig_tls_creds_load(struct mig_tls_creds **out, const struct mig_tls_files *f, char *err, size_t errlen)
{
	*out = NULL;
	struct mig_tls_creds *t = calloc(1, sizeof(*t));
	if (!t)
		return mig_fail(err, errlen, -ENOMEM, "out of memory for TLS credentials");
	atomic_init(&t->refs, 1);
	snprintf(t->ca, sizeof(t->ca), "%s", f->ca);
	gnutls_datum_t cert = { 0 }, key = { 0 }, ca = { 0 };
	int rc = read_pem("tls-cert", f->cert, &cert, err, errlen);
	if (!rc)
		rc = read_pem("tls-key", f->key, &key, err, errlen);
	if (!rc)
		rc = read_pem("tls-ca", f->ca, &ca, err, errlen);
	if (!rc)
		rc = load_into(t, f, &cert, &key, &ca, err, errlen);
	if (key.data)
		gnutls_memset(key.data, 0, key.size); /* GnuTLS keeps its own copy */
	free(cert.data);
	free(key.data);
	free(ca.data);
	if (rc) {
		mig_tls_creds_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

void mig_tls_creds_free(struct mig_tls_creds *t)
{
	if (!t || atomic_fetch_sub(&t->refs, 1) != 1)
		return;
	if (t->cred)
		gnutls_certificate_free_credentials(t->cred);
	free(t);
}

static ssize_t push(gnutls_transport_ptr_t ptr, const void *data, size_t len)
{
	struct mig_conn *c = ptr;
	ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0) {
		c->sys_errno = errno == EWOULDBLOCK ? EAGAIN : errno;
		gnutls_transport_set_errno(c->tls, c->sys_errno);
	}
	return n;
}

static ssize_t pull(gnutls_transport_ptr_t ptr, void *data, size_t len)
{
	struct mig_conn *c = ptr;
	ssize_t n = recv(c->fd, data, len, MSG_DONTWAIT);
	if (n < 0) {
		c->sys_errno = errno == EWOULDBLOCK ? EAGAIN : errno;
		gnutls_transport_set_errno(c->tls, c->sys_errno);
	} else if (c->nfirst < sizeof(c->first)) {
		size_t k = MIN((size_t)n, sizeof(c->first) - c->nfirst);
		memcpy(c->first + c->nfirst, data, k);
		c->nfirst += k;
	}
	return n;
}

/* Why the peer's certificate failed verification, from GnuTLS's status bits. */
static int verify_failed(struct mig_conn *c, const char *hostname)
{
	unsigned int st = gnutls_session_get_verify_cert_status(c->tls);
	const char *who = mig_peer_role(c);
	if (st & GNUTLS_CERT_EXPIRED)
		return mig_conn_fail(c, -EACCES, "%s at %s presented a certificate that has expired: it needs a new one "
				     "signed by the CA", who, c->peer);
	if (st & GNUTLS_CERT_NOT_ACTIVATED)
		return mig_conn_fail(c, -EACCES, "%s at %s presented a certificate that is not valid yet: check the "
				     "clocks of both hosts", who, c->peer);
	if (st & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA))
		return mig_conn_fail(c, -EACCES,
				     "%s at %s presented a certificate that is not signed by the CA in tls-ca=%s: give "
				     "both sides certificates from the same CA",
				     who, c->peer, c->creds->ca);
	if (st & GNUTLS_CERT_UNEXPECTED_OWNER)
		return mig_conn_fail(c, -EACCES,
				     "%s at %s presented a certificate that is not made out to %s: connect by a name or "
				     "address the certificate carries, or give tls-hostname=NAME",
				     who, c->peer, hostname ? hostname : "this host");
	if (st & GNUTLS_CERT_REVOKED)
		return mig_conn_fail(c, -EACCES, "%s at %s presented a revoked certificate", who, c->peer);
	gnutls_datum_t out = { 0 };
	gnutls_certificate_verification_status_print(st, GNUTLS_CRT_X509, &out, 0);
	mig_conn_fail(c, -EACCES, "%s at %s presented a certificate that does not verify: %s", who, c->peer,
		      out.data ? (const char *)out.data : "unknown reason");
	gnutls_free(out.data);
	return -EACCES;
}

static bool refuses_certificate(int alert)
{
	switch (alert) {
	case GNUTLS_A_BAD_CERTIFICATE:
	case GNUTLS_A_UNSUPPORTED_CERTIFICATE:
	case GNUTLS_A_CERTIFICATE_REVOKED:
	case GNUTLS_A_CERTIFICATE_EXPIRED:
	case GNUTLS_A_CERTIFICATE_UNKNOWN:
	case GNUTLS_A_UNKNOWN_CA:
	case GNUTLS_A_ACCESS_DENIED:
	case GNUTLS_A_CERTIFICATE_REQUIRED:
		return true;
	default:
		return false;
	}
}

/* One sentence for a GnuTLS failure g on c, "during" saying when. */
static int tls_failed(struct mig_conn *c, int g, const char *hostname, const char *during)
{
	const char *who = mig_peer_role(c);
	switch (g) {
	case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR:
		return verify_failed(c, hostname);
	case GNUTLS_E_NO_CERTIFICATE_FOUND:
	case GNUTLS_E_CERTIFICATE_REQUIRED:
		/* A TLS client leaves out a certificate the server's CA list does not cover. */
		return mig_conn_fail(c, -EACCES,
				     "%s at %s presented no certificate signed by the CA in tls-ca=%s: give it tls-cert= "
				     "and tls-key= from that CA",
				     who, c->peer, c->creds->ca);
	case GNUTLS_E_FATAL_ALERT_RECEIVED: {
		int alert = gnutls_alert_get(c->tls);
		if (refuses_certificate(alert))
			return mig_conn_fail(c, -EACCES,
					     "%s at %s refused this vmon's certificate (TLS alert: %s): check that tls-cert= "
					     "is signed by the CA that side trusts and has not expired",
					     who, c->peer, gnutls_alert_get_name(alert));
		if (alert == GNUTLS_A_PROTOCOL_VERSION)
			return mig_conn_fail(c, -EPROTO, "%s at %s does not speak TLS 1.3", who, c->peer);
		return mig_conn_fail(c, -EPROTO, "%s at %s ended the TLS session %s (TLS alert: %s)", who, c->peer,
				     during, gnutls_alert_get_name(alert));
	}
	case GNUTLS_E_UNEXPECTED_PACKET_LENGTH:
	case GNUTLS_E_UNEXPECTED_PACKET:
	case GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR:
		if (c->nfirst >= 4 && !memcmp(c->first, MIG_MAGIC, 4))
			return mig_conn_fail(c, -EPROTO,
					     "%s at %s answered without TLS: give both sides tls-cert=, tls-key= and "
					     "tls-ca=, or neither",
					     who, c->peer);
		if (g != GNUTLS_E_PULL_ERROR && g != GNUTLS_E_PUSH_ERROR && g != GNUTLS_E_PREMATURE_TERMINATION)
			return mig_conn_fail(c, -EPROTO, "%s at %s does not speak TLS (%s)", who, c->peer, gnutls_strerror(g));
		return mig_conn_fail(c, -EPIPE,
				     "%s at %s closed the connection %s%s",
				     who, c->peer, during,
				     c->source && !strcmp(during, "during the TLS handshake")
					     ? ": it may listen without TLS, or refused this vmon's certificate"
					     : "");
	default:
		return mig_conn_fail(c, -EPROTO, "TLS with %s at %s failed %s: %s", who, c->peer, during,
				     gnutls_strerror(g));
	}
}

static int session_init(struct mig_conn *c, struct mig_tls_creds *creds, const char *hostname)
{
	int g = gnutls_init(&c->tls, (c->source ? GNUTLS_CLIENT : GNUTLS_SERVER) | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
	if (g < 0) {
		c->tls = NULL;
		return mig_conn_fail(c, -ENOMEM, "cannot start TLS with %s: %s", c->peer, gnutls_strerror(g));
	}
	c->creds = creds;
	atomic_fetch_add(&creds->refs, 1);
	if ((g = gnutls_priority_set_direct(c->tls, PRIORITIES, NULL)) >= 0)
		g = gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, creds->cred);
	if (g < 0)
		return mig_conn_fail(c, -EPROTO, "cannot set up TLS 1.3 with %s: %s", c->peer, gnutls_strerror(g));
	if (!c->source)
		gnutls_certificate_server_set_request(c->tls, GNUTLS_CERT_REQUIRE);
	/* Verified during the handshake: a failure there is the peer's certificate's fault. */
	gnutls_session_set_verify_cert(c->tls, c->source ? hostname : NULL, 0);
	gnutls_transport_set_ptr(c->tls, c);
	gnutls_transport_set_push_function(c->tls, push);
	gnutls_transport_set_pull_function(c->tls, pull);
	return 0;
}

int mig_tls_start(struct mig_conn *c, struct mig_tls_creds *creds, const char *hostname)
{
	int rc = session_init(c, creds, hostname);
	if (rc)
		return rc;
	for (;;) {
		int g = gnutls_handshake(c->tls);
		if (g == 0)
			return 0;
		if (g == GNUTLS_E_AGAIN || g == GNUTLS_E_INTERRUPTED) {
			short events = gnutls_record_get_direction(c->tls) ? POLLOUT : POLLIN;
			if ((rc = mig_wait_fd(c, c->fd, events, c->timeout_ms, "in the TLS handshake")))
				return rc;
			continue;
		}
		if (!gnutls_error_is_fatal(g))
			continue;
		/* Tell the peer why (a missing certificate otherwise ends the connection without a word). */
		if (g != GNUTLS_E_FATAL_ALERT_RECEIVED)
			gnutls_alert_send_appropriate(c->tls, g);
		return tls_failed(c, g, hostname, "during the TLS handshake");
	}
}

static ssize_t record_result(struct mig_conn *c, ssize_t g, short *events, const char *during)
{
	if (g >= 0)
		return g;
	if (g == GNUTLS_E_AGAIN) {
		*events = gnutls_record_get_direction(c->tls) ? POLLOUT : POLLIN;
		return -EAGAIN;
	}
	if (g == GNUTLS_E_INTERRUPTED || !gnutls_error_is_fatal((int)g))
		return -EINTR;
	return tls_failed(c, (int)g, NULL, during);
}

ssize_t mig_tls_send(struct mig_conn *c, const void *p, size_t len, short *events)
{
	return record_result(c, gnutls_record_send(c->tls, p, len), events, "while vmon sent");
}

ssize_t mig_tls_recv(struct mig_conn *c, void *p, size_t len, short *events)
{
	ssize_t g = gnutls_record_recv(c->tls, p, len);
	/* A peer gone without close_notify is a closed connection; the stream's end record tells truncation. */
	if (g == GNUTLS_E_PREMATURE_TERMINATION)
		return 0;
	return record_result(c, g, events, "while vmon received");
}

void mig_tls_end(struct mig_conn *c)
{
	gnutls_bye(c->tls, GNUTLS_SHUT_WR); /* once, without waiting: the socket closes next */
	gnutls_deinit(c->tls);
	c->tls = NULL;
	mig_tls_creds_free(c->creds);
	c->creds = NULL;
}
