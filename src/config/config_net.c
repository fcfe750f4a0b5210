#include "config/config_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SPEC_MAX 1024 /* longer than any sensible --net value */

static int bad(char *err, size_t errlen, const char *fmt, const char *what)
{
	snprintf(err, errlen, fmt, what);
	return -EINVAL;
}

static bool parse_port(const char *s, uint16_t *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 1 || v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

/* "[ADDR:]PORT" (host side) or "[ADDR]:PORT" (guest side); an empty or missing ADDR keeps *addr. */
static bool parse_endpoint(char *s, struct in_addr *addr, uint16_t *port)
{
	char *colon = strrchr(s, ':');
	if (colon) {
		*colon = 0;
		if (*s && inet_pton(AF_INET, s, addr) != 1)
			return false;
		s = colon + 1;
	}
	return parse_port(s, port);
}

static int parse_hostfwd(char *v, struct net_slirp_fwd *f, char *err, size_t errlen)
{
	static const char *usage = "--net user,hostfwd=%s is not a port forward: write "
				   "hostfwd=tcp:HOSTPORT-:GUESTPORT (or udp:, optionally with addresses: "
				   "tcp:127.0.0.1:8080-10.0.2.15:80)";
	char orig[256];
	snprintf(orig, sizeof(orig), "%s", v);
	*f = (struct net_slirp_fwd){ 0 };
	inet_pton(AF_INET, "127.0.0.1", &f->host_addr);
	inet_pton(AF_INET, "10.0.2.15", &f->guest_addr);
	char *rest;
	if (!strncmp(v, "tcp:", 4)) {
		rest = v + 4;
	} else if (!strncmp(v, "udp:", 4)) {
		f->udp = true;
		rest = v + 4;
	} else {
		return bad(err, errlen, usage, orig);
	}
	char *dash = strchr(rest, '-');
	if (!dash)
		return bad(err, errlen, usage, orig);
	*dash = 0;
	char *host = rest, *guest = dash + 1;
	if (*host == ':') /* QEMU's tcp::8080-:80 */
		host++;
	if (!parse_endpoint(host, &f->host_addr, &f->host_port) || !parse_endpoint(guest, &f->guest_addr, &f->guest_port))
		return bad(err, errlen, usage, orig);
	if ((ntohl(f->guest_addr.s_addr) & 0xffffff00u) != 0x0a000200u)
		return bad(err, errlen, "--net user,hostfwd=%s: the guest address must be in the user network "
					"10.0.2.0/24 (the guest gets 10.0.2.15 by DHCP)", orig);
	return 0;
}

static bool parse_mac(const char *s, uint8_t mac[6])
{
	unsigned int b[6];
	char tail;
	if (strlen(s) != 17 ||
	    sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6)
		return false;
	for (int i = 0; i < 6; i++) {
		if (s[3 * i + 2] != ':' && i < 5)
			return false;
		mac[i] = (uint8_t)b[i];
	}
	return true;
}

int config_net_parse(const char *spec, struct net_spec *out, char *err, size_t errlen)
{
	*out = (struct net_spec){ 0 };
	if (!spec || !*spec)
		return bad(err, errlen, "--net%s needs a value: user[,hostfwd=tcp:HOSTPORT-:GUESTPORT] or tap=IFNAME", "");
	if (strlen(spec) >= SPEC_MAX)
		return bad(err, errlen, "--net%s: the value is too long", "");
	char buf[SPEC_MAX];
	snprintf(buf, sizeof(buf), "%s", spec);
	char *save = NULL;
	char *tok = strtok_r(buf, ",", &save);
	if (!tok)
		return bad(err, errlen, "--net %s: expected user[,...] or tap=IFNAME[,...]", spec);
	if (!strcmp(tok, "user")) {
		out->kind = NET_USER;
	} else if (!strncmp(tok, "tap=", 4)) {
		out->kind = NET_TAP;
		const char *name = tok + 4;
		if (!*name || strlen(name) > NET_TAP_IFNAME_MAX || strchr(name, '/'))
			return bad(err, errlen, "--net tap=%s: give an interface name of 1 to 15 characters without '/'",
				   name);
		snprintf(out->ifname, sizeof(out->ifname), "%s", name);
	} else {
		return bad(err, errlen, "--net %s: the network type must be user or tap=IFNAME", spec);
	}
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (!strncmp(tok, "mac=", 4)) {
			if (!parse_mac(tok + 4, out->mac))
				return bad(err, errlen, "--net ...,mac=%s: write the MAC as six hex bytes, e.g. 52:54:00:12:34:56",
					   tok + 4);
			if ((out->mac[0] & 1) || !(out->mac[0] | out->mac[1] | out->mac[2] | out->mac[3] | out->mac[4] | out->mac[5]))
				return bad(err, errlen, "--net ...,mac=%s: a NIC needs a unicast address (the first byte "
							"even) that is not all zeros, e.g. 52:54:00:12:34:56", tok + 4);
			out->has_mac = true;
		} else if (!strncmp(tok, "hostfwd=", 8)) {
			if (out->kind != NET_USER)
				return bad(err, errlen, "--net %s: hostfwd= works with user networking only (a tap is "
							"reachable from the host directly)", spec);
			if (out->nfwd >= NET_SLIRP_MAX_FWD) {
				snprintf(err, errlen, "--net %s: at most %d hostfwd= per network card", spec, NET_SLIRP_MAX_FWD);
				return -EINVAL;
			}
			int rc = parse_hostfwd(tok + 8, &out->fwd[out->nfwd], err, errlen);
			if (rc)
				return rc;
			out->nfwd++;
		} else if (!strncmp(tok, "host-loopback=", 14)) {
			if (out->kind != NET_USER)
				return bad(err, errlen, "--net %s: host-loopback= works with user networking only", spec);
			if (strcmp(tok + 14, "on") && strcmp(tok + 14, "off"))
				return bad(err, errlen, "--net ...,%s: write host-loopback=on or host-loopback=off", tok);
			out->host_loopback = !strcmp(tok + 14, "on");
		} else {
			return bad(err, errlen, "--net ...,%s: unknown setting; the settings are mac= and (for user) hostfwd= "
					       "and host-loopback=", tok);
		}
	}
	return 0;
}

void config_net_default_mac(unsigned int index, uint8_t mac[6])
{
	uint32_t id = (((uint32_t)getpid() << 2) | (index & 3)) & 0xffffff;
	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = 0x00;
	mac[3] = (uint8_t)(id >> 16);
	mac[4] = (uint8_t)(id >> 8);
	mac[5] = (uint8_t)id;
}
