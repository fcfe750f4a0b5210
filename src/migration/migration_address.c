#include "migration/migration_address.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lib/util.h"
#include "migration/stream_wire.h"

#define FORM "tcp:HOST:PORT (tcp:[IPv6]:PORT for an IPv6 address)"

static int bad(char *err, size_t errlen, const char *text, const char *why)
{
	return mig_fail(err, errlen, -EINVAL, "migration address \"%.300s\": %s; the form is " FORM, text, why);
}

/* Letters, digits, '-', '.' and '_': host names and IPv4 addresses; nothing a resolver could misread. */
static bool host_chars_ok(const char *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)h[i]) && h[i] != '-' && h[i] != '.' && h[i] != '_')
			return false;
	return true;
}

static int parse_port(const char *p, size_t n, uint16_t *port, const char *text, char *err, size_t errlen)
{
	if (n == 0)
		return bad(err, errlen, text, "the port is missing after the last ':'");
	unsigned long v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)p[i]))
			return bad(err, errlen, text, "the port is not a number");
		if (v <= 65535)
			v = v * 10 + (unsigned long)(p[i] - '0');
	}
	if (v == 0 || v > 65535)
		return mig_fail(err, errlen, -EINVAL,
				"migration address \"%.300s\": port %.*s is not a TCP port a source can reach; give 1 to "
				"65535",
				text, (int)MIN(n, (size_t)12), p);
	*port = (uint16_t)v;
	return 0;
}

/* HOST:PORT or [IPv6]:PORT, n bytes of it. */
static int parse_endpoint(const char *s, size_t n, struct mig_address *a, const char *text, char *err,
			  size_t errlen)
{
	const char *host = s, *colon;
	size_t host_len;
	if (n && s[0] == '[') {
		const char *close = memchr(s, ']', n);
		if (!close)
			return bad(err, errlen, text, "the IPv6 address has no closing ']'");
		host = s + 1;
		host_len = (size_t)(close - host);
		colon = close + 1;
		if (colon == s + n || *colon != ':')
			return bad(err, errlen, text, "the port is missing after the ']'");
		a->ipv6 = true;
	} else {
		colon = memrchr(s, ':', n);
		if (!colon)
			return bad(err, errlen, text, "the port is missing (no ':PORT' after the host)");
		host_len = (size_t)(colon - s);
		if (memchr(s, ':', host_len))
			return bad(err, errlen, text, "an IPv6 address goes in brackets, as in tcp:[::1]:4444");
	}
	if (host_len == 0)
		return bad(err, errlen, text,
			   "the host is empty (to listen on every address give tcp:0.0.0.0:PORT or tcp:[::]:PORT)");
	if (host_len >= sizeof(a->host))
		return bad(err, errlen, text, "the host is longer than a DNS name can be");
	memcpy(a->host, host, host_len);
	a->host[host_len] = 0;
	if (a->ipv6) {
		struct in6_addr in6;
		if (inet_pton(AF_INET6, a->host, &in6) != 1)
			return bad(err, errlen, text, "what is in brackets is not an IPv6 address");
	} else if (!host_chars_ok(a->host, host_len)) {
		return bad(err, errlen, text, "the host holds characters no host name or IPv4 address has");
	}
	return parse_port(colon + 1, (size_t)(s + n - colon - 1), &a->port, text, err, errlen);
}

struct tls_option {
	const char *key;
	size_t offset, size;
};

static const struct tls_option tls_options[] = {
	{ "tls-cert", offsetof(struct mig_tls_files, cert), sizeof(((struct mig_tls_files *)0)->cert) },
	{ "tls-key", offsetof(struct mig_tls_files, key), sizeof(((struct mig_tls_files *)0)->key) },
	{ "tls-ca", offsetof(struct mig_tls_files, ca), sizeof(((struct mig_tls_files *)0)->ca) },
	{ "tls-hostname", offsetof(struct mig_tls_files, hostname), sizeof(((struct mig_tls_files *)0)->hostname) },
};

/* One KEY=VALUE of the options after the endpoint, n bytes of it. */
static int parse_option(const char *s, size_t n, struct mig_address *a, const char *text, char *err, size_t errlen)
{
	const char *eq = memchr(s, '=', n);
	size_t klen = eq ? (size_t)(eq - s) : n;
	for (size_t i = 0; i < ARRAY_SIZE(tls_options); i++) {
		const struct tls_option *o = &tls_options[i];
		if (strlen(o->key) != klen || memcmp(o->key, s, klen))
			continue;
		char *dst = (char *)&a->tls + o->offset;
		size_t vlen = eq ? n - klen - 1 : 0;
		if (vlen == 0)
			return mig_fail(err, errlen, -EINVAL, "migration address \"%.300s\": %s= needs a value", text, o->key);
		if (dst[0])
			return mig_fail(err, errlen, -EINVAL, "migration address \"%.300s\": %s is given twice", text, o->key);
		if (vlen >= o->size || memchr(eq + 1, 0, vlen))
			return mig_fail(err, errlen, -EINVAL, "migration address \"%.300s\": the %s value is too long", text,
					o->key);
		memcpy(dst, eq + 1, vlen);
		dst[vlen] = 0;
		return 0;
	}
	return mig_fail(err, errlen, -EINVAL,
			"migration address \"%.300s\": unknown option \"%.*s\"; the options are tls-cert=FILE, "
			"tls-key=FILE, tls-ca=FILE and tls-hostname=NAME",
			text, (int)MIN(klen, (size_t)40), s);
}

static int check_tls(const struct mig_address *a, const char *text, char *err, size_t errlen)
{
	int given = !!a->tls.cert[0] + !!a->tls.key[0] + !!a->tls.ca[0];
	if (given != 0 && given != 3)
		return mig_fail(err, errlen, -EINVAL,
				"migration address \"%.300s\": TLS needs all of tls-cert=, tls-key= and tls-ca= (both "
				"sides present a certificate signed by the CA)",
				text);
	if (a->tls.hostname[0] && !given)
		return mig_fail(err, errlen, -EINVAL, "migration address \"%.300s\": tls-hostname= is for TLS; give "
				"tls-cert=, tls-key= and tls-ca= too", text);
	return 0;
}

int mig_address_parse(const char *text, struct mig_address *a, char *err, size_t errlen)
{
	memset(a, 0, sizeof(*a));
	const char *colon = strchr(text, ':');
	if (!colon)
		return bad(err, errlen, text, "there is no scheme");
	if ((size_t)(colon - text) != 3 || strncmp(text, "tcp", 3))
		return mig_fail(err, errlen, -EINVAL,
				"migration address \"%.300s\": unknown scheme \"%.*s\"; vmon migrates over " FORM, text,
				(int)MIN((size_t)(colon - text), (size_t)20), text);
	const char *s = colon + 1;
	size_t n = strcspn(s, ",");
	int rc = parse_endpoint(s, n, a, text, err, errlen);
	for (s += n; !rc && *s == ','; s += n) {
		s++;
		n = strcspn(s, ",");
		rc = parse_option(s, n, a, text, err, errlen);
	}
	return rc ? rc : check_tls(a, text, err, errlen);
}

const char *mig_address_str(const struct mig_address *a, char *buf, size_t len)
{
	snprintf(buf, len, a->ipv6 ? "tcp:[%s]:%u" : "tcp:%s:%u", a->host, a->port);
	return buf;
}

int mig_address_resolve(const struct mig_address *a, bool passive, struct addrinfo **res, char *err, size_t errlen)
{
	/* No AI_ADDRCONFIG: it asks the kernel over netlink, which the api thread's filter does not allow. */
	struct addrinfo hints = {
		.ai_family = a->ipv6 ? AF_INET6 : AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_protocol = IPPROTO_TCP,
		.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0) | (a->ipv6 ? AI_NUMERICHOST : 0),
	};
	char port[8], where[MIG_HOST_MAX + 16];
	snprintf(port, sizeof(port), "%u", a->port);
	int rc = getaddrinfo(a->host, port, &hints, res);
	if (rc == 0)
		return 0;
	*res = NULL;
	mig_address_str(a, where, sizeof(where));
	if (rc == EAI_NONAME || rc == EAI_NODATA || rc == EAI_FAIL)
		return mig_fail(err, errlen, -EHOSTUNREACH,
				"%s: host name %s does not resolve (%s); check the name, or give an IP address", where,
				a->host, gai_strerror(rc));
	if (rc == EAI_AGAIN)
		return mig_fail(err, errlen, -EAGAIN, "%s: the name server did not answer for %s (%s); try again, or give "
				"an IP address", where, a->host, gai_strerror(rc));
	if (rc == EAI_MEMORY)
		return mig_fail(err, errlen, -ENOMEM, "%s: out of memory resolving %s", where, a->host);
	int e = rc == EAI_SYSTEM ? errno : EHOSTUNREACH;
	return mig_fail(err, errlen, -e, "%s: cannot resolve %s: %s", where, a->host,
			rc == EAI_SYSTEM ? strerror(e) : gai_strerror(rc));
}
