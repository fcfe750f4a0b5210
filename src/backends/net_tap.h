/*
 * A tap device as the network backend: frames go to and come from a host network interface
 * (created beforehand, e.g. `ip tuntap add dev tap0 mode tap user $USER`, or created here when
 * vmon may, i.e. with CAP_NET_ADMIN). Opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR and a
 * 12-byte vnet header, so the guest's virtio-net header passes through unchanged: the guest may
 * send partially checksummed and TSO frames (the host kernel finishes them) and, once it
 * negotiates them, receive such frames too (TUNSETOFFLOAD).
 *
 * Receive flow control: when the device has no receive buffers the backend stops reading, so
 * frames wait in the tap's own bounded kernel queue (txqueuelen) and no memory grows here.
 */
#ifndef VMON_BACKENDS_NET_TAP_H
#define VMON_BACKENDS_NET_TAP_H

#include "backends/event_loop.h"
#include "backends/net_backend.h"

#define NET_TAP_IFNAME_MAX 15 /* IFNAMSIZ - 1 */

/* Opens (or creates) tap interface ifname. Returns 0 and *out, or a negative errno (logged). */
int net_tap_create(struct event_loop *loop, const char *ifname, struct net_backend **out);

#endif
