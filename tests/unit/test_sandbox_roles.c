/*
 * vmon's own code running under the real seccomp filters (--seccomp on), in a forked child: every
 * thread confines itself where it does in `vmon run` (the event loop, the API's threads), a
 * stand-in vCPU thread enters the vcpu role before it drives a device as the guest would, and the
 * main thread enters the main role before the teardown. A system call missing from a role's list
 * kills the child with SIGSYS, which is what a user would see as exit status 159.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api/api_server.h"
#include "api/http_client.h"
#include "backends/event_loop.h"
#include "backends/net_slirp.h"
#include "sandbox/sandbox.h"
#include "virtio/virtio_blk.h"

#include "api_fake_vm.h"
#include "virtio_rig.h"

/* Runs fn in a child with the filters on and returns its wait status; fn ends it with exit(). */
static int confined_child(int (*fn)(void))
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (sandbox_configure(SECCOMP_MODE_ON))
			_exit(100);
		/* Returning from main: stdio flushed, atexit handlers, exit_group, as vmon's main() ends. */
		exit(fn());
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static void assert_ended_normally(int status)
{
	if (WIFSIGNALED(status))
		fail_msg("the confined child was killed by signal %d (%s): a role's filter lacks a call it makes",
			 WTERMSIG(status), strsignal(WTERMSIG(status)));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- a disk: vCPU register writes, virtio activation, io_uring on the event loop ---- */

#define BLK_QSZ 16
#define BLK_SECTORS 64
#define BLK_HDR 0x80000u
#define BLK_DATA 0x90000u
#define BLK_STATUS 0xa0000u

struct blk_run {
	struct vrig v;
	struct virtio_blk *blk;
	char path[64];
	bool ok;
};

/* One request as the guest driver makes it: header | data | status. The status byte, or 0xff. */
static uint8_t blk_request(struct vrig *v, uint32_t type, uint64_t sector, uint32_t len)
{
	uint8_t *hdr = v->ram + BLK_HDR;
	memset(hdr, 0, VIRTIO_BLK_HDR_SIZE);
	memcpy(hdr, &type, 4);
	memcpy(hdr + 8, &sector, 8);
	v->ram[BLK_STATUS] = 0xee;
	struct seg segs[3] = { { BLK_HDR, VIRTIO_BLK_HDR_SIZE, false }, { BLK_DATA, len, type == VIRTIO_BLK_T_IN },
			       { BLK_STATUS, 1, true } };
	if (!len)
		segs[1] = segs[2];
	add_chain(v, 0, segs, len ? 3 : 2, true);
	uint32_t id, used;
	return next_used(v, 0, &id, &used) ? v->ram[BLK_STATUS] : 0xff;
}

/* The guest's side, from a thread confined as a vCPU: the driver's set-up, then I/O. */
static void *blk_vcpu(void *arg)
{
	struct blk_run *b = arg;
	sandbox_enter(SANDBOX_VCPU);
	struct vrig *v = &b->v;
	start_driver(v, 0);
	memset(v->ram + BLK_DATA, 0x5a, 1024);
	bool ok = blk_request(v, VIRTIO_BLK_T_OUT, 4, 1024) == VIRTIO_BLK_S_OK;
	ok = ok && blk_request(v, VIRTIO_BLK_T_FLUSH, 0, 0) == VIRTIO_BLK_S_OK;
	memset(v->ram + BLK_DATA, 0, 1024);
	ok = ok && blk_request(v, VIRTIO_BLK_T_IN, 4, 1024) == VIRTIO_BLK_S_OK;
	for (unsigned int i = 0; ok && i < 1024; i++)
		ok = v->ram[BLK_DATA + i] == 0x5a;
	/* A driver reset (the guest rebooting) quiesces the device from the vCPU. */
	wr(v, STATUS, 0, 1);
	b->ok = ok;
	return NULL;
}

static int disk_io_under_the_filters_as(bool qcow2)
{
	static const struct vrig_spec spec = { .ram = 1u << 20, .device_id = VIRTIO_ID_BLOCK, .queues = 1,
					       .qsize = BLK_QSZ, .max_qsize = VIRTIO_BLK_QUEUE_SIZE };
	struct blk_run *b = calloc(1, sizeof(*b));
	vrig_init(&b->v, &spec);
	snprintf(b->path, sizeof(b->path), "/tmp/vmon-sandbox-blk.XXXXXX");
	int fd = mkstemp(b->path);
	if (fd < 0 || ftruncate(fd, BLK_SECTORS * 512) < 0)
		return 10;
	close(fd);
	if (qcow2) {
		/* qcow2 clusters are allocated, written and flushed by the thread serving the queue. */
		char cmd[256];
		snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 %s %u >/dev/null 2>&1", b->path, BLK_SECTORS * 512);
		if (system(cmd) != 0)
			return 77; /* no qemu-img (scripts/install-deps.sh test installs it) */
	}
	if (virtio_blk_create(&b->v.deps, b->path, qcow2 ? DISK_FORMAT_QCOW2 : DISK_FORMAT_AUTO, false, "sandbox",
			      &b->blk))
		return 77; /* io_uring unavailable here */
	vrig_attach(&b->v);
	pthread_t vcpu;
	if (pthread_create(&vcpu, NULL, blk_vcpu, b))
		return 11;
	/* What vm_runner's main thread does once the others have started: wait, then tear down. */
	sandbox_enter(SANDBOX_MAIN);
	pthread_join(vcpu, NULL);
	event_loop_stop(b->v.loop);
	virtio_blk_destroy(b->blk);
	vrig_free(&b->v);
	unlink(b->path);
	int rc = b->ok ? 0 : 12;
	free(b);
	return rc;
}

static int disk_io_under_the_filters(void)
{
	return disk_io_under_the_filters_as(false);
}

static int qcow2_io_under_the_filters(void)
{
	return disk_io_under_the_filters_as(true);
}

static void test_a_qcow2_disk_works_under_the_vcpu_event_loop_and_main_filters(void **state)
{
	(void)state;
	int status = confined_child(qcow2_io_under_the_filters);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		skip();
	assert_ended_normally(status);
}

static void test_a_disk_works_under_the_vcpu_event_loop_and_main_filters(void **state)
{
	(void)state;
	int status = confined_child(disk_io_under_the_filters);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		skip();
	assert_ended_normally(status);
}

/* ---- user-mode networking: libslirp on the event loop ---- */

/*
 * The guest (10.0.2.15) asks the user-mode network's DNS server (10.0.2.3) for a name, in a
 * UDP datagram without checksum; libslirp forwards it to the host's resolver.
 */
static void send_dns_query(void *opaque)
{
	struct net_backend *be = opaque;
	uint8_t pkt[VIRTIO_NET_HDR_LEN + 14 + 20 + 8 + 12] = { 0 };
	uint8_t *eth = pkt + VIRTIO_NET_HDR_LEN, *ip = eth + 14, *udp = ip + 20, *dns = udp + 8;
	static const uint8_t hdr[14] = { 0x52, 0x55, 0x0a, 0x00, 0x02, 0x02, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00 };
	memcpy(eth, hdr, sizeof(hdr));
	ip[0] = 0x45;
	ip[3] = 20 + 8 + 12;
	ip[8] = 64;
	ip[9] = 17;
	static const uint8_t addrs[8] = { 10, 0, 2, 15, 10, 0, 2, 3 };
	memcpy(ip + 12, addrs, 8);
	uint32_t sum = 0;
	for (int i = 0; i < 20; i += 2)
		sum += (uint32_t)(ip[i] << 8 | ip[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	ip[10] = (uint8_t)(~sum >> 8), ip[11] = (uint8_t)~sum;
	udp[0] = 0x9c, udp[1] = 0x40; /* source port 40000 */
	udp[3] = 53;
	udp[5] = 8 + 12;
	dns[0] = 0x12, dns[1] = 0x34; /* a query id; the question does not matter */
	be->ops->send(be, pkt, sizeof(pkt));
}

static int dns_under_the_filters(void)
{
	struct event_loop *loop;
	struct net_backend *be;
	if (event_loop_create(&loop) || net_slirp_create(loop, NULL, 0, false, &be) || event_loop_start(loop))
		return 30;
	if (event_loop_call(loop, send_dns_query, be))
		return 31;
	sandbox_enter(SANDBOX_MAIN);
	event_loop_stop(loop);
	be->ops->destroy(be);
	event_loop_destroy(loop);
	return 0;
}

static void test_a_guest_dns_query_works_under_the_event_loop_filter(void **state)
{
	(void)state;
	assert_ended_normally(confined_child(dns_under_the_filters));
}

/* ---- the API: libmicrohttpd's threads, the routes a client uses, the server's stop ---- */

static char api_dir[64];

static int status_of(const char *sock, const char *method, const char *path, const char *body)
{
	struct http_response r;
	int rc = http_unix_request(sock, method, path, body, 15000, &r);
	if (rc)
		return rc;
	free(r.body);
	return r.status;
}

static int api_under_the_filters(void)
{
	char sock[128];
	snprintf(sock, sizeof(sock), "%s/api.sock", api_dir);
	static struct fake_vm f;
	fake_vm_init(&f, 1, true, true);
	struct api_server *srv;
	if (api_server_start(&srv, sock, &f.vm))
		return 20;
	/* The client is this (unconfined) thread; every request is handled on the API's threads. */
	int rc = 0;
	if (status_of(sock, "GET", "/vm", NULL) != 200)
		rc = 21;
	else if (status_of(sock, "PUT", "/vm/state", "{\"state\": \"paused\"}") != 200)
		rc = 22;
	else if (status_of(sock, "GET", "/metrics", NULL) != 200)
		rc = 23;
	else if (status_of(sock, "PUT", "/vm/state", "{\"state\": \"running\"}") != 200)
		rc = 24;
	else if (status_of(sock, "PUT", "/vm/stop", NULL) != 200)
		rc = 25;
	sandbox_enter(SANDBOX_MAIN);
	api_server_stop(srv);
	fake_vm_destroy(&f);
	return rc;
}

static void test_the_api_works_under_the_api_and_main_filters(void **state)
{
	(void)state;
	strcpy(api_dir, "/tmp/vmon-sandbox-api.XXXXXX");
	assert_non_null(mkdtemp(api_dir));
	int status = confined_child(api_under_the_filters);
	rmdir(api_dir);
	assert_ended_normally(status);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_disk_works_under_the_vcpu_event_loop_and_main_filters),
		cmocka_unit_test(test_a_qcow2_disk_works_under_the_vcpu_event_loop_and_main_filters),
		cmocka_unit_test(test_a_guest_dns_query_works_under_the_event_loop_filter),
		cmocka_unit_test(test_the_api_works_under_the_api_and_main_filters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
