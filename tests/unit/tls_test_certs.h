/*
 * Test certificates made on the spot with GnuTLS: a CA, and certificates it signs, ECDSA P-256
 * (fast to generate), written as PEM files into a directory. For the migration TLS tests.
 */
#ifndef VMON_TESTS_UNIT_TLS_TEST_CERTS_H
#define VMON_TESTS_UNIT_TLS_TEST_CERTS_H

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct test_cert {
	gnutls_x509_privkey_t key;
	gnutls_x509_crt_t crt;
};

struct test_cert_spec {
	const char *cn;
	bool ca;
	const char *dns;    /* a subjectAltName DNS entry, or NULL */
	bool loopback_ips;  /* subjectAltName 127.0.0.1 and ::1 */
	long not_before_s;  /* relative to now */
	long not_after_s;
};

static bool test_cert_write(const char *path, int (*export2)(void *, gnutls_x509_crt_fmt_t, gnutls_datum_t *),
			    void *obj)
{
	gnutls_datum_t d = { 0 };
	if (export2(obj, GNUTLS_X509_FMT_PEM, &d) < 0)
		return false;
	FILE *f = fopen(path, "w");
	bool ok = f && fwrite(d.data, 1, d.size, f) == d.size;
	if (f)
		ok = fclose(f) == 0 && ok;
	gnutls_free(d.data);
	return ok;
}

static int export_crt(void *o, gnutls_x509_crt_fmt_t fmt, gnutls_datum_t *d)
{
	return gnutls_x509_crt_export2(o, fmt, d);
}

static int export_key(void *o, gnutls_x509_crt_fmt_t fmt, gnutls_datum_t *d)
{
	return gnutls_x509_privkey_export2(o, fmt, d);
}

/* Makes c (a new key and its certificate), signed by issuer, or by itself when issuer is NULL. */
static bool test_cert_make(struct test_cert *c, const struct test_cert_spec *s, const struct test_cert *issuer)
{
	static unsigned char serial = 1;
	time_t now = time(NULL);
	if (gnutls_x509_privkey_init(&c->key) < 0 ||
	    gnutls_x509_privkey_generate(c->key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0) < 0 ||
	    gnutls_x509_crt_init(&c->crt) < 0)
		return false;
	unsigned char sn[2] = { 0x01, serial++ };
	bool ok = gnutls_x509_crt_set_version(c->crt, 3) >= 0 && gnutls_x509_crt_set_serial(c->crt, sn, sizeof(sn)) >= 0 &&
		  gnutls_x509_crt_set_activation_time(c->crt, now + s->not_before_s) >= 0 &&
		  gnutls_x509_crt_set_expiration_time(c->crt, now + s->not_after_s) >= 0 &&
		  gnutls_x509_crt_set_dn_by_oid(c->crt, GNUTLS_OID_X520_COMMON_NAME, 0, s->cn, strlen(s->cn)) >= 0 &&
		  gnutls_x509_crt_set_key(c->crt, c->key) >= 0 &&
		  gnutls_x509_crt_set_basic_constraints(c->crt, s->ca, -1) >= 0 &&
		  gnutls_x509_crt_set_key_usage(c->crt, s->ca ? GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN
							      : GNUTLS_KEY_DIGITAL_SIGNATURE) >= 0;
	if (ok && !s->ca)
		ok = gnutls_x509_crt_set_key_purpose_oid(c->crt, GNUTLS_KP_TLS_WWW_SERVER, 0) >= 0 &&
		     gnutls_x509_crt_set_key_purpose_oid(c->crt, GNUTLS_KP_TLS_WWW_CLIENT, 0) >= 0;
	if (ok && s->dns)
		ok = gnutls_x509_crt_set_subject_alt_name(c->crt, GNUTLS_SAN_DNSNAME, s->dns, strlen(s->dns),
							  GNUTLS_FSAN_APPEND) >= 0;
	if (ok && s->loopback_ips) {
		struct in_addr v4;
		struct in6_addr v6;
		inet_pton(AF_INET, "127.0.0.1", &v4);
		inet_pton(AF_INET6, "::1", &v6);
		ok = gnutls_x509_crt_set_subject_alt_name(c->crt, GNUTLS_SAN_IPADDRESS, &v4, sizeof(v4),
							  GNUTLS_FSAN_APPEND) >= 0 &&
		     gnutls_x509_crt_set_subject_alt_name(c->crt, GNUTLS_SAN_IPADDRESS, &v6, sizeof(v6),
							  GNUTLS_FSAN_APPEND) >= 0;
	}
	const struct test_cert *by = issuer ? issuer : c;
	return ok && gnutls_x509_crt_sign2(c->crt, by->crt, by->key, GNUTLS_DIG_SHA256, 0) >= 0;
}

/* Writes DIR/NAME.pem (the certificate) and DIR/NAME.key. */
static bool test_cert_save(const struct test_cert *c, const char *dir, const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s.pem", dir, name);
	bool ok = test_cert_write(path, export_crt, c->crt);
	snprintf(path, sizeof(path), "%s/%s.key", dir, name);
	return ok && test_cert_write(path, export_key, c->key);
}

static void test_cert_free(struct test_cert *c)
{
	gnutls_x509_crt_deinit(c->crt);
	gnutls_x509_privkey_deinit(c->key);
}

#endif
