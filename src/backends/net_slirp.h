/*
 * User-mode networking through libslirp: no root, no host configuration. The guest sees the
 * network 10.0.2.0/24 with a gateway at 10.0.2.2, a DNS forwarder at 10.0.2.3 and a DHCP server
 * handing out 10.0.2.15 first. 10.0.2.2 is the host's 127.0.0.1 only with host_loopback (services
 * listening on the host's loopback trust whoever reaches them, so a guest does not by default).
 * Outbound TCP and UDP leave through ordinary host sockets, at most NET_SLIRP_MAX_SOCKETS at a
 * time: past that, guest packets that would open another are dropped (counted, logged once).
 * Inbound connections arrive through port forwards (hostfwd).
 *
 * libslirp is driven from the device event loop: after every call into slirp (a frame from the
 * guest, a socket event, a timer) the backend asks slirp which sockets it wants watched and for
 * what (slirp_pollfds_fill), updates the loop's registrations to match, and arms one timer for
 * slirp's TCP timers. Nothing polls while slirp is idle beyond that timer (at most once a second).
 * No checksum or segmentation offloads: slirp needs complete frames with valid checksums.
 */
#ifndef VMON_BACKENDS_NET_SLIRP_H
#define VMON_BACKENDS_NET_SLIRP_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "backends/event_loop.h"
#include "backends/net_backend.h"

#define NET_SLIRP_MAX_FWD 8
#define NET_SLIRP_MAX_SOCKETS 256

struct net_slirp_fwd {
	bool udp;
	struct in_addr host_addr; /* where vmon listens (default 127.0.0.1) */
	uint16_t host_port;
	struct in_addr guest_addr; /* default 10.0.2.15, the first DHCP address */
	uint16_t guest_port;
};

/*
 * Creates the slirp stack and its port forwards on loop. Returns 0 and *out, or a negative
 * errno with a message logged (e.g. a host port already in use).
 */
int net_slirp_create(struct event_loop *loop, const struct net_slirp_fwd *fwd, unsigned int nfwd, bool host_loopback,
		     struct net_backend **out);

/* How many guest packets were dropped because they would have opened a host socket past the cap. */
unsigned long long net_slirp_refused(const struct net_backend *be);

#endif
