/*
 * User-mode networking through libslirp: no root, no host configuration. The guest sees the
 * network 10.0.2.0/24 with a gateway and host alias at 10.0.2.2 (the host's 127.0.0.1, so a
 * server on the host's loopback is reachable from the guest), a DNS forwarder at 10.0.2.3 and a
 * DHCP server handing out 10.0.2.15 first. Outbound TCP and UDP leave through ordinary host
 * sockets; inbound connections arrive through port forwards (hostfwd).
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
int net_slirp_create(struct event_loop *loop, const struct net_slirp_fwd *fwd, unsigned int nfwd,
		     struct net_backend **out);

#endif
