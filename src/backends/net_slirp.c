#include "backends/net_slirp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <slirp/libslirp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "lib/log.h"
#include "lib/util.h"

#define COMP "net-user"

/* A socket slirp asked us to watch, registered on the event loop with these epoll events. */
struct watch {
	struct net_slirp *ns;
	int fd;
	uint32_t events;
	unsigned int gen; /* the fill that last wanted it */
	struct watch *next;
};

struct fd_slot {
	struct watch *watch; /* NULL when not watched */
	bool open;           /* slirp registered it and has not unregistered it */
};

/* One entry of the last slirp_pollfds_fill, in the order slirp numbered them. */
struct poll_entry {
	int fd;
	int events;
};

struct slirp_timer {
	struct net_slirp *ns;
	struct event_timer *t;
	SlirpTimerCb cb;
	void *cb_opaque;
};

struct net_slirp {
	struct net_backend be;
	struct event_loop *loop;
	Slirp *slirp;
	struct event_timer *poll_timer; /* slirp's TCP timers, armed with the timeout slirp asks for */

	struct watch *watches;
	struct fd_slot *fds; /* by fd number: slirp's sockets */
	size_t fds_len;
	unsigned int gen;
	unsigned int nsockets;      /* host sockets slirp has open (registered, not yet unregistered) */
	unsigned long long refused; /* guest packets dropped because they would open one more */

	struct poll_entry *polls;
	size_t npolls, polls_cap;
	int fired_fd; /* during slirp_pollfds_poll: the socket whose events are in fired_events */
	int fired_events;

	uint8_t *rxbuf; /* header + frame for the guest */
	struct log_ratelimit rl;
};

static struct net_slirp *from_be(struct net_backend *be) { return (struct net_slirp *)be; }

/* ---- keeping the loop's registrations in line with what slirp wants ---- */

static uint32_t to_epoll(int slirp_events)
{
	uint32_t ev = 0;
	if (slirp_events & SLIRP_POLL_IN)
		ev |= EPOLLIN;
	if (slirp_events & SLIRP_POLL_OUT)
		ev |= EPOLLOUT;
	if (slirp_events & SLIRP_POLL_PRI)
		ev |= EPOLLPRI;
	return ev;
}

static int from_epoll(uint32_t ev)
{
	int r = 0;
	if (ev & EPOLLIN)
		r |= SLIRP_POLL_IN;
	if (ev & EPOLLOUT)
		r |= SLIRP_POLL_OUT;
	if (ev & EPOLLPRI)
		r |= SLIRP_POLL_PRI;
	if (ev & EPOLLERR)
		r |= SLIRP_POLL_ERR;
	if (ev & EPOLLHUP)
		r |= SLIRP_POLL_HUP;
	return r;
}

static void unwatch(struct net_slirp *ns, struct watch *w)
{
	event_loop_remove_fd(ns->loop, w->fd);
	if ((size_t)w->fd < ns->fds_len && ns->fds[w->fd].watch == w)
		ns->fds[w->fd].watch = NULL;
	for (struct watch **p = &ns->watches; *p; p = &(*p)->next) {
		if (*p == w) {
			*p = w->next;
			break;
		}
	}
	free(w);
}

static void rearm(struct net_slirp *ns);

static int get_revents(int idx, void *opaque)
{
	struct net_slirp *ns = opaque;
	if (idx < 0 || (size_t)idx >= ns->npolls || ns->polls[idx].fd != ns->fired_fd)
		return 0;
	return ns->fired_events;
}

/* Runs slirp's socket handling and timers; fd/events: what fired (-1: nothing, a timer). */
static void run_slirp(struct net_slirp *ns, int fd, int events)
{
	ns->fired_fd = fd;
	ns->fired_events = events;
	slirp_pollfds_poll(ns->slirp, 0, get_revents, ns);
	ns->fired_fd = -1;
	rearm(ns);
}

static void on_socket(void *opaque, uint32_t events)
{
	struct watch *w = opaque;
	run_slirp(w->ns, w->fd, from_epoll(events));
}

static bool fds_fit(struct net_slirp *ns, int fd)
{
	if (fd < 0)
		return false;
	if ((size_t)fd < ns->fds_len)
		return true;
	size_t n = MAX((size_t)fd + 1, ns->fds_len * 2);
	struct fd_slot *more = realloc(ns->fds, n * sizeof(*more));
	if (!more)
		return false;
	memset(more + ns->fds_len, 0, (n - ns->fds_len) * sizeof(*more));
	ns->fds = more;
	ns->fds_len = n;
	return true;
}

static void watch(struct net_slirp *ns, int fd, uint32_t events)
{
	if (!fds_fit(ns, fd))
		return;
	struct watch *w = ns->fds[fd].watch;
	if (w && w->events == events) {
		w->gen = ns->gen;
		return;
	}
	if (w)
		unwatch(ns, w);
	w = calloc(1, sizeof(*w));
	if (!w)
		return;
	*w = (struct watch){ .ns = ns, .fd = fd, .events = events, .gen = ns->gen, .next = ns->watches };
	int rc = event_loop_add_fd(ns->loop, fd, events, on_socket, w);
	if (rc == -EEXIST) { /* a closed socket's number reused before we heard of the close */
		event_loop_remove_fd(ns->loop, fd);
		rc = event_loop_add_fd(ns->loop, fd, events, on_socket, w);
	}
	if (rc) {
		log_warn_ratelimited(&ns->rl, COMP, "cannot watch a slirp socket: %s; that connection may stall",
				     strerror(-rc));
		free(w);
		return;
	}
	ns->watches = w;
	ns->fds[fd].watch = w;
}

static int add_poll(int fd, int events, void *opaque)
{
	struct net_slirp *ns = opaque;
	if (fd < 0)
		return -1;
	for (size_t i = ns->npolls; i-- > 0;) {
		if (ns->polls[i].fd == fd) { /* the same socket twice: watch the union */
			ns->polls[i].events |= events;
			return (int)i;
		}
	}
	if (ns->npolls == ns->polls_cap) {
		size_t cap = ns->polls_cap ? ns->polls_cap * 2 : 16;
		struct poll_entry *more = realloc(ns->polls, cap * sizeof(*more));
		if (!more)
			return -1;
		ns->polls = more;
		ns->polls_cap = cap;
	}
	ns->polls[ns->npolls] = (struct poll_entry){ .fd = fd, .events = events };
	return (int)ns->npolls++;
}

/* Asks slirp what to watch next and makes the loop's registrations and timer match. */
static void rearm(struct net_slirp *ns)
{
	uint32_t timeout_ms = UINT32_MAX;
	ns->npolls = 0;
	slirp_pollfds_fill(ns->slirp, &timeout_ms, add_poll, ns);
	ns->gen++;
	for (size_t i = 0; i < ns->npolls; i++)
		watch(ns, ns->polls[i].fd, to_epoll(ns->polls[i].events));
	for (struct watch *w = ns->watches, *next; w; w = next) {
		next = w->next;
		if (w->gen != ns->gen)
			unwatch(ns, w);
	}
	uint64_t ns_delay = timeout_ms == UINT32_MAX ? 0 : MAX((uint64_t)timeout_ms, 1) * 1000000ull;
	event_timer_set(ns->poll_timer, ns_delay, 0);
}

static void on_poll_timer(void *opaque)
{
	run_slirp(opaque, -1, 0);
}

/* ---- slirp callbacks ---- */

static ssize_t slirp_send_packet(const void *buf, size_t len, void *opaque)
{
	struct net_slirp *ns = opaque;
	if (len < NET_MIN_FRAME || len > NET_MAX_FRAME || !ns->be.peer.deliver)
		return (ssize_t)len; /* slirp never makes these; nothing to tell it */
	memset(ns->rxbuf, 0, VIRTIO_NET_HDR_LEN);
	memcpy(ns->rxbuf + VIRTIO_NET_HDR_LEN, buf, len);
	/* A full device queue drops the frame; TCP retransmits, as slirp expects. */
	ns->be.peer.deliver(ns->be.peer.dev, ns->rxbuf, VIRTIO_NET_HDR_LEN + len);
	return (ssize_t)len;
}

static void slirp_guest_error(const char *msg, void *opaque)
{
	struct net_slirp *ns = opaque;
	log_warn_ratelimited(&ns->rl, COMP, "the guest sent something the user-mode network refused: %s", msg);
}

static int64_t slirp_clock_ns(void *opaque)
{
	(void)opaque;
	return (int64_t)monotonic_ns();
}

static void on_slirp_timer(void *opaque)
{
	struct slirp_timer *t = opaque;
	t->cb(t->cb_opaque);
	rearm(t->ns);
}

static void *slirp_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
	struct net_slirp *ns = opaque;
	struct slirp_timer *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	*t = (struct slirp_timer){ .ns = ns, .cb = cb, .cb_opaque = cb_opaque };
	if (event_loop_add_timer(ns->loop, 0, 0, on_slirp_timer, t, &t->t)) {
		free(t);
		return NULL;
	}
	return t;
}

static void slirp_timer_free(void *timer, void *opaque)
{
	(void)opaque;
	struct slirp_timer *t = timer;
	if (!t)
		return;
	event_timer_free(t->t);
	free(t);
}

static void slirp_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
	(void)opaque;
	struct slirp_timer *t = timer;
	if (!t)
		return;
	int64_t delay = expire_ms * 1000000 - (int64_t)monotonic_ns();
	event_timer_set(t->t, delay > 0 ? (uint64_t)delay : 1, 0);
}

/* Slirp opened a host socket (the next fill says how to watch it): counted against the cap. */
static void slirp_register_fd(int fd, void *opaque)
{
	struct net_slirp *ns = opaque;
	if (fds_fit(ns, fd) && !ns->fds[fd].open) {
		ns->fds[fd].open = true;
		ns->nsockets++;
	}
}

static void slirp_unregister_fd(int fd, void *opaque)
{
	struct net_slirp *ns = opaque;
	if (fd < 0 || (size_t)fd >= ns->fds_len)
		return;
	if (ns->fds[fd].open) {
		ns->fds[fd].open = false;
		ns->nsockets--;
	}
	/* Slirp is about to close it: forget it now, the number may come back as another socket. */
	if (ns->fds[fd].watch)
		unwatch(ns, ns->fds[fd].watch);
}

static void slirp_notify(void *opaque)
{
	(void)opaque; /* every call into slirp is followed by a rearm already */
}

static const SlirpCb slirp_callbacks = {
	.send_packet = slirp_send_packet,
	.guest_error = slirp_guest_error,
	.clock_get_ns = slirp_clock_ns,
	.timer_new = slirp_timer_new,
	.timer_free = slirp_timer_free,
	.timer_mod = slirp_timer_mod,
	.register_poll_fd = slirp_register_fd,
	.unregister_poll_fd = slirp_unregister_fd,
	.notify = slirp_notify,
};

/* ---- backend ops ---- */

/* ---- the cap on host sockets ---- */

static bool internal_udp_port(uint16_t port)
{
	return port == 67 || port == 547; /* DHCP and DHCPv6: answered by slirp itself, no socket */
}

/*
 * Whether a guest frame may make slirp open a host socket: a TCP SYN without ACK (a new
 * connection), a UDP datagram (slirp keeps one socket per guest source port, and a datagram
 * cannot be told from the first of a flow here), an ICMP echo request (ping sockets).
 */
static bool may_open_socket(const uint8_t *f, size_t len)
{
	if (len < 14)
		return false;
	uint16_t type = (uint16_t)(f[12] << 8 | f[13]);
	const uint8_t *ip = f + 14;
	size_t iplen = len - 14, hlen;
	uint8_t proto;
	if (type == 0x0800 && iplen >= 20) {
		hlen = (size_t)(ip[0] & 0xf) * 4;
		if ((ip[6] & 0x1f) | ip[7])
			return false; /* not the first fragment: its first one decides */
		proto = ip[9];
	} else if (type == 0x86dd && iplen >= 40) {
		hlen = 40;
		proto = ip[6]; /* slirp takes no IPv6 extension headers */
	} else {
		return false;
	}
	if (hlen > iplen)
		return false;
	const uint8_t *l4 = ip + hlen;
	size_t l4len = iplen - hlen;
	switch (proto) {
	case 6: /* TCP: flags in byte 13; too short to tell counts as a new connection */
		return l4len < 14 || (l4[13] & 0x12) == 0x02;
	case 17:
		return l4len < 4 || !internal_udp_port((uint16_t)(l4[2] << 8 | l4[3]));
	case 1:
		return l4len < 1 || l4[0] == 8;
	case 58:
		return l4len < 1 || l4[0] == 128;
	default:
		return false;
	}
}

/* Drops what would open one host socket too many; counts it and says so once. */
static bool over_socket_cap(struct net_slirp *ns, const uint8_t *frame, size_t len)
{
	if (ns->nsockets < NET_SLIRP_MAX_SOCKETS || !may_open_socket(frame, len))
		return false;
	if (ns->refused++ == 0)
		log_warn(COMP, "the guest has %u host connections open through user-mode networking, the limit: new "
			       "connections, UDP flows and pings are refused until some close (said once)",
			 ns->nsockets);
	return true;
}

unsigned long long net_slirp_refused(const struct net_backend *be)
{
	return ((const struct net_slirp *)be)->refused;
}

static int slirp_send(struct net_backend *be, const void *pkt, size_t len)
{
	struct net_slirp *ns = from_be(be);
	if (len < VIRTIO_NET_HDR_LEN + NET_MIN_FRAME)
		return -EINVAL;
	if (over_socket_cap(ns, (const uint8_t *)pkt + VIRTIO_NET_HDR_LEN, len - VIRTIO_NET_HDR_LEN))
		return 0; /* as if lost on the wire: TCP and the guest's resolver retry */
	slirp_input(ns->slirp, (const uint8_t *)pkt + VIRTIO_NET_HDR_LEN, (int)(len - VIRTIO_NET_HDR_LEN));
	rearm(ns); /* a new connection has a new socket to watch */
	return 0;
}

static void slirp_destroy(struct net_backend *be)
{
	struct net_slirp *ns = from_be(be);
	if (ns->slirp)
		slirp_cleanup(ns->slirp);
	while (ns->watches)
		unwatch(ns, ns->watches);
	event_timer_free(ns->poll_timer);
	free(ns->fds);
	free(ns->polls);
	free(ns->rxbuf);
	free(ns);
}

static const struct net_backend_ops slirp_ops = {
	.kind = "user",
	.send = slirp_send,
	.destroy = slirp_destroy,
};

static struct in_addr ip4(const char *s)
{
	struct in_addr a;
	inet_pton(AF_INET, s, &a);
	return a;
}

int net_slirp_create(struct event_loop *loop, const struct net_slirp_fwd *fwd, unsigned int nfwd, bool host_loopback,
		     struct net_backend **out)
{
	struct net_slirp *ns = calloc(1, sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	ns->be.ops = &slirp_ops;
	ns->be.offloads = 0;
	ns->loop = loop;
	ns->fired_fd = -1;
	ns->rxbuf = malloc(VIRTIO_NET_HDR_LEN + NET_MAX_FRAME);
	int rc = ns->rxbuf ? event_loop_add_timer(loop, 0, 0, on_poll_timer, ns, &ns->poll_timer) : -ENOMEM;
	if (rc) {
		free(ns->rxbuf);
		free(ns);
		return rc;
	}
	SlirpConfig cfg = {
		.version = 3,
		.in_enabled = true,
		.vnetwork = ip4("10.0.2.0"),
		.vnetmask = ip4("255.255.255.0"),
		.vhost = ip4("10.0.2.2"),
		.vdhcp_start = ip4("10.0.2.15"),
		.vnameserver = ip4("10.0.2.3"),
		.vhostname = "vmon",
		/* 10.0.2.2 reaches the host's loopback services only when asked for. */
		.disable_host_loopback = !host_loopback,
	};
	ns->slirp = slirp_new(&cfg, &slirp_callbacks, ns);
	if (!ns->slirp) {
		log_error(COMP, "cannot start the user-mode network (libslirp refused its configuration)");
		slirp_destroy(&ns->be);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < nfwd; i++) {
		const struct net_slirp_fwd *f = &fwd[i];
		if (slirp_add_hostfwd(ns->slirp, f->udp, f->host_addr, f->host_port, f->guest_addr, f->guest_port) < 0) {
			char host[INET_ADDRSTRLEN];
			inet_ntop(AF_INET, &f->host_addr, host, sizeof(host));
			log_error(COMP, "cannot forward %s port %s:%u to the guest: the port is in use or not allowed; "
					"pick another host port in hostfwd=",
				  f->udp ? "UDP" : "TCP", host, f->host_port);
			slirp_destroy(&ns->be);
			return -EADDRINUSE;
		}
	}
	rearm(ns); /* the forwards' listening sockets */
	*out = &ns->be;
	return 0;
}
