#include "backends/net_tap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

#define COMP "net-tap"
#define READ_BURST 64 /* frames per wake-up, so one busy tap cannot starve the loop */

#define BIT(n) (1ull << (n))
#define TAP_OFFLOADS                                                                                            \
	(BIT(VIRTIO_NET_F_CSUM) | BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_GUEST_TSO4) |                 \
	 BIT(VIRTIO_NET_F_GUEST_TSO6) | BIT(VIRTIO_NET_F_HOST_TSO4) | BIT(VIRTIO_NET_F_HOST_TSO6))

struct net_tap {
	struct net_backend be;
	struct event_loop *loop;
	int fd;
	bool watching;
	char ifname[IFNAMSIZ];
	uint8_t *buf; /* header + frame from the kernel */
	struct log_ratelimit rl;
};

static struct net_tap *from_be(struct net_backend *be) { return (struct net_tap *)be; }

static void on_readable(void *opaque, uint32_t events)
{
	(void)events;
	struct net_tap *t = opaque;
	for (int i = 0; i < READ_BURST; i++) {
		ssize_t n = read(t->fd, t->buf, VIRTIO_NET_HDR_LEN + NET_MAX_FRAME);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn_ratelimited(&t->rl, COMP, "%s: read failed: %s", t->ifname, strerror(errno));
			return;
		}
		if (n < VIRTIO_NET_HDR_LEN + NET_MIN_FRAME || !t->be.peer.deliver)
			continue;
		if (t->be.peer.deliver(t->be.peer.dev, t->buf, (size_t)n) == 1) {
			/* No receive buffers: leave the rest in the kernel's queue until resume(). */
			event_loop_remove_fd(t->loop, t->fd);
			t->watching = false;
			return;
		}
	}
}

static void tap_resume(struct net_backend *be)
{
	struct net_tap *t = from_be(be);
	if (t->watching)
		return;
	int rc = event_loop_add_fd(t->loop, t->fd, EPOLLIN, on_readable, t);
	if (rc)
		log_warn_ratelimited(&t->rl, COMP, "%s: cannot watch the tap again: %s; receiving stops", t->ifname,
				     strerror(-rc));
	t->watching = rc == 0;
}

static int tap_send(struct net_backend *be, const void *pkt, size_t len)
{
	struct net_tap *t = from_be(be);
	ssize_t n = write(t->fd, pkt, len);
	if (n == (ssize_t)len)
		return 0;
	int rc = n < 0 ? -errno : -EIO;
	if (rc != -EAGAIN)
		log_warn_ratelimited(&t->rl, COMP, "%s: a frame from the guest was refused: %s", t->ifname,
				     strerror(-rc));
	return rc;
}

static unsigned int tun_offload_flags(uint64_t features)
{
	unsigned int f = 0;
	if (features & BIT(VIRTIO_NET_F_GUEST_CSUM)) {
		f |= TUN_F_CSUM;
		if (features & BIT(VIRTIO_NET_F_GUEST_TSO4))
			f |= TUN_F_TSO4;
		if (features & BIT(VIRTIO_NET_F_GUEST_TSO6))
			f |= TUN_F_TSO6;
	}
	return f;
}

static int tap_set_offloads(struct net_backend *be, uint64_t features)
{
	struct net_tap *t = from_be(be);
	/* What the kernel may hand us: exactly what the guest said it can take. */
	return ioctl(t->fd, TUNSETOFFLOAD, tun_offload_flags(features)) < 0 ? -errno : 0;
}

static void tap_destroy(struct net_backend *be)
{
	struct net_tap *t = from_be(be);
	if (t->watching)
		event_loop_remove_fd(t->loop, t->fd);
	if (t->fd >= 0)
		close(t->fd);
	free(t->buf);
	free(t);
}

static const struct net_backend_ops tap_ops = {
	.kind = "tap",
	.send = tap_send,
	.set_offloads = tap_set_offloads,
	.resume = tap_resume,
	.destroy = tap_destroy,
};

/* Logs "tap IFNAME: why (errno text)" and frees t. */
static int fail(struct net_tap *t, int rc, const char *why)
{
	log_error(COMP, "tap %s: %s (%s)", t->ifname, why, strerror(-rc));
	tap_destroy(&t->be);
	return rc;
}

/*
 * TUNSETIFF on an existing interface that the tun driver did not make (lo, eth0) fails with
 * EINVAL, which says nothing; sysfs tells: only tun/tap interfaces have tun_flags.
 */
static bool is_tap_interface_or_absent(const char *ifname)
{
	char path[128];
	snprintf(path, sizeof(path), "/sys/class/net/%s", ifname);
	if (access(path, F_OK) != 0)
		return true;
	snprintf(path, sizeof(path), "/sys/class/net/%s/tun_flags", ifname);
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	unsigned int flags = 0;
	bool tap = fscanf(f, "%x", &flags) == 1 && (flags & IFF_TAP);
	fclose(f);
	return tap;
}

int net_tap_create(struct event_loop *loop, const char *ifname, struct net_backend **out)
{
	if (!ifname || !*ifname || strlen(ifname) > NET_TAP_IFNAME_MAX)
		return -EINVAL;
	struct net_tap *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->fd = -1;
	t->be.ops = &tap_ops;
	t->loop = loop;
	snprintf(t->ifname, sizeof(t->ifname), "%s", ifname);
	t->buf = malloc(VIRTIO_NET_HDR_LEN + NET_MAX_FRAME);
	if (!t->buf)
		return fail(t, -ENOMEM, "out of memory");
	t->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (t->fd < 0)
		return fail(t, -errno, "cannot open /dev/net/tun; load the tun module or make the device accessible");
	unsigned int features = 0;
	if (ioctl(t->fd, TUNGETFEATURES, &features) < 0 || !(features & IFF_VNET_HDR))
		return fail(t, -ENOTSUP, "this kernel's tun driver lacks IFF_VNET_HDR, which vmon needs");
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(t->fd, TUNSETIFF, &ifr) < 0) {
		int rc = -errno;
		if (!is_tap_interface_or_absent(ifname)) {
			log_error(COMP, "interface %s exists but is not a tap device: give --net tap= a tap "
					"interface (ip tuntap add dev NAME mode tap user $USER)", ifname);
			tap_destroy(&t->be);
			return rc;
		}
		return fail(t, rc,
			    "cannot attach to the tap interface: create it first and give it to your user "
			    "(ip tuntap add dev NAME mode tap user $USER), or run vmon with CAP_NET_ADMIN");
	}
	int hdr_len = VIRTIO_NET_HDR_LEN;
	if (ioctl(t->fd, TUNSETVNETHDRSZ, &hdr_len) < 0)
		return fail(t, -errno, "cannot set the 12-byte vnet header");
	/* Offer the offloads only if this tap accepts them. */
	t->be.offloads = TAP_OFFLOADS;
	if (ioctl(t->fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0)
		t->be.offloads = 0;
	ioctl(t->fd, TUNSETOFFLOAD, 0);
	int rc = event_loop_add_fd(loop, t->fd, EPOLLIN, on_readable, t);
	if (rc)
		return fail(t, rc, "cannot watch it on the event loop");
	t->watching = true;
	*out = &t->be;
	return 0;
}
