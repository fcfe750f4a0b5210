/*
 * The --net option ("net" in the JSON config): one network card per occurrence.
 *
 *   user[,hostfwd=PROTO:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT ...][,host-loopback=on|off][,mac=MAC]
 *   tap=IFNAME[,mac=MAC]
 *
 * PROTO is tcp or udp; HOSTADDR defaults to 127.0.0.1 (only this machine can connect; give
 * 0.0.0.0 to accept connections from anywhere), GUESTADDR to 10.0.2.15; the ':' before HOSTPORT
 * may be left out (tcp:8080-:80). host-loopback=on lets the guest reach the host's loopback
 * services at 10.0.2.2 (off by default). MAC is six hex bytes, e.g. 52:54:00:12:34:56, a unicast address.
 */
#ifndef VMON_CONFIG_CONFIG_NET_H
#define VMON_CONFIG_CONFIG_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/net_slirp.h"
#include "backends/net_tap.h"

enum net_kind { NET_USER, NET_TAP };

struct net_spec {
	enum net_kind kind;
	char ifname[NET_TAP_IFNAME_MAX + 1]; /* tap */
	bool has_mac;
	uint8_t mac[6];
	struct net_slirp_fwd fwd[NET_SLIRP_MAX_FWD]; /* user */
	unsigned int nfwd;
	bool host_loopback; /* user: 10.0.2.2 reaches the host's 127.0.0.1 */
};

/*
 * Parses one --net value. On error writes one sentence naming --net and what to fix into err
 * and returns -EINVAL.
 */
int config_net_parse(const char *spec, struct net_spec *out, char *err, size_t errlen);

/*
 * The MAC for NIC number index when the user gave none: locally administered (52:54:00 first,
 * as most VMMs use) and derived from the process id and the index, so NICs of the VMs on one
 * host differ while each VM keeps its MAC for its lifetime (a restored VM keeps the one its
 * guest saw, from the snapshot).
 */
void config_net_default_mac(unsigned int index, uint8_t mac[6]);

#endif
