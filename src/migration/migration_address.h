/*
 * Where a migration goes: `tcp:HOST:PORT` (an IPv4 address, an IPv6 address in brackets
 * `tcp:[::1]:4444`, or a host name), optionally followed by TLS options
 * `,tls-cert=FILE,tls-key=FILE,tls-ca=FILE[,tls-hostname=NAME]`. The same text names the
 * destination on the source (`PUT /vm/migrate`) and the address to listen on (`vmon receive
 * --listen`). docs/migration.md describes the forms and their errors.
 */
#ifndef VMON_MIGRATION_ADDRESS_H
#define VMON_MIGRATION_ADDRESS_H

#include <limits.h>
#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MIG_HOST_MAX 256 /* a DNS name is at most 253 characters */

/* Certificates for mutual TLS: all three or none (then the stream is plain TCP). */
struct mig_tls_files {
	char cert[PATH_MAX]; /* this vmon's certificate, PEM, signed by ca */
	char key[PATH_MAX];  /* its private key, PEM */
	char ca[PATH_MAX];   /* the CA that signs both sides' certificates, PEM */
	char hostname[MIG_HOST_MAX]; /* the name the destination's certificate must carry; "" = HOST */
};

struct mig_address {
	char host[MIG_HOST_MAX]; /* without the brackets of an IPv6 address */
	uint16_t port;           /* 1-65535 */
	bool ipv6;               /* given in brackets */
	struct mig_tls_files tls;
};

static inline bool mig_address_has_tls(const struct mig_address *a)
{
	return a->tls.cert[0] != 0;
}

/* Parses text into a; 0, or -EINVAL with one sentence in err saying what is wrong and the right form. */
int mig_address_parse(const char *text, struct mig_address *a, char *err, size_t errlen);

/* "tcp:HOST:PORT" (brackets around an IPv6 host), for messages; TLS options left out. */
const char *mig_address_str(const struct mig_address *a, char *buf, size_t len);

/*
 * Resolves the host (getaddrinfo; passive for a listener) into TCP addresses, freed with
 * freeaddrinfo. 0, or -EHOSTUNREACH (-ENOMEM, -EAI...) with the resolver's reason in err.
 */
int mig_address_resolve(const struct mig_address *a, bool passive, struct addrinfo **res, char *err, size_t errlen);

#endif
