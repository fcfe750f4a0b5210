/*
 * User-mode networking as a hostile guest meets it: the host's loopback is out of reach unless
 * asked for, and a guest opening connection after connection gets at most NET_SLIRP_MAX_SOCKETS
 * host sockets.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "backends/event_loop.h"
#include "backends/net_slirp.h"

struct rig {
	struct event_loop *loop;
	struct net_backend *be;
	int listen_fd;
	uint16_t port; /* where a service on the host's loopback listens */
};

static int setup_rig(void **state, bool host_loopback)
{
	struct rig *r = calloc(1, sizeof(*r));
	assert_int_equal(event_loop_create(&r->loop), 0);
	assert_int_equal(net_slirp_create(r->loop, NULL, 0, host_loopback, &r->be), 0);
	r->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(bind(r->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(r->listen_fd, 1024), 0);
	socklen_t sl = sizeof(sa);
	assert_int_equal(getsockname(r->listen_fd, (struct sockaddr *)&sa, &sl), 0);
	r->port = ntohs(sa.sin_port);
	*state = r;
	return 0;
}

static int setup_loopback_on(void **state) { return setup_rig(state, true); }
static int setup_default(void **state) { return setup_rig(state, false); }

static int teardown(void **state)
{
	struct rig *r = *state;
	r->be->ops->destroy(r->be);
	event_loop_destroy(r->loop);
	close(r->listen_fd);
	free(r);
	return 0;
}

static uint16_t csum(const uint8_t *p, size_t len, uint32_t sum)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* The guest (10.0.2.15) sends a TCP SYN from sport to 10.0.2.2:dport. */
static void send_syn(struct rig *r, uint16_t sport, uint16_t dport)
{
	uint8_t pkt[VIRTIO_NET_HDR_LEN + 14 + 20 + 20] = { 0 };
	uint8_t *eth = pkt + VIRTIO_NET_HDR_LEN, *ip = eth + 14, *tcp = ip + 20;
	static const uint8_t hdr[14] = { 0x52, 0x55, 0x0a, 0x00, 0x02, 0x02, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00 };
	memcpy(eth, hdr, sizeof(hdr));
	ip[0] = 0x45;
	ip[3] = 40;
	ip[6] = 0x40; /* DF */
	ip[8] = 64;
	ip[9] = 6;
	static const uint8_t addrs[8] = { 10, 0, 2, 15, 10, 0, 2, 2 };
	memcpy(ip + 12, addrs, 8);
	uint16_t c = csum(ip, 20, 0);
	ip[10] = (uint8_t)(c >> 8), ip[11] = (uint8_t)c;
	tcp[0] = (uint8_t)(sport >> 8), tcp[1] = (uint8_t)sport;
	tcp[2] = (uint8_t)(dport >> 8), tcp[3] = (uint8_t)dport;
	tcp[4] = 0x12; /* sequence number */
	tcp[12] = 5 << 4;
	tcp[13] = 0x02; /* SYN */
	tcp[14] = 0xff, tcp[15] = 0xff;
	uint8_t pseudo[12];
	memcpy(pseudo, addrs, 8);
	pseudo[8] = 0, pseudo[9] = 6, pseudo[10] = 0, pseudo[11] = 20;
	uint32_t sum = (uint16_t)~csum(pseudo, sizeof(pseudo), 0);
	c = csum(tcp, 20, sum);
	tcp[16] = (uint8_t)(c >> 8), tcp[17] = (uint8_t)c;
	assert_int_equal(r->be->ops->send(r->be, pkt, sizeof(pkt)), 0);
}

/* Connections that reached the host service, waiting until none arrives for half a second. */
static int accepted(struct rig *r)
{
	int n = 0;
	struct pollfd p = { .fd = r->listen_fd, .events = POLLIN };
	while (poll(&p, 1, 500) > 0) {
		int fd;
		while ((fd = accept4(r->listen_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
			close(fd);
			n++;
		}
	}
	return n;
}

static void test_host_loopback_off_by_default(void **state)
{
	struct rig *r = *state;
	send_syn(r, 40000, r->port);
	assert_int_equal(accepted(r), 0);
}

static void test_host_loopback_on_reaches_host(void **state)
{
	struct rig *r = *state;
	send_syn(r, 40000, r->port);
	assert_int_equal(accepted(r), 1);
}

/* 300 new connections: the first NET_SLIRP_MAX_SOCKETS reach the host, the rest are refused and counted. */
static void test_socket_cap(void **state)
{
	struct rig *r = *state;
	for (uint16_t i = 0; i < 300; i++)
		send_syn(r, (uint16_t)(20000 + i), r->port);
	assert_int_equal(accepted(r), NET_SLIRP_MAX_SOCKETS);
	assert_int_equal(net_slirp_refused(r->be), 300 - NET_SLIRP_MAX_SOCKETS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_host_loopback_off_by_default, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_host_loopback_on_reaches_host, setup_loopback_on, teardown),
		cmocka_unit_test_setup_teardown(test_socket_cap, setup_loopback_on, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
