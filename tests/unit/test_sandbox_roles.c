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
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api/api_conn_guard.h"
#include "api/api_server.h"
#include "api/http_client.h"
#include "backends/event_loop.h"
#include "backends/net_slirp.h"
#include "backends/net_tap.h"
#include "devices/console.h"
#include "devices/console_output.h"
#include "devices/i8042.h"
#include "devices/pvpanic.h"
#include "devices/rtc.h"
#include "devices/serial.h"
#include "config/config.h"
#include "lib/unix_socket.h"
#include "memory/kvm_slots.h"
#include "memory/write_track.h"
#include "migration/handshake.h"
#include "migration/postcopy_dest.h"
#include "migration/postcopy_source.h"
#include "migration/migrate_source.h"
#include "migration/transport.h"
#include "sandbox/landlock.h"
#include "sandbox/sandbox.h"
#include "virtio/virtio_balloon.h"
#include "virtio/virtio_blk.h"
#include "virtio/virtio_console.h"
#include "virtio/virtio_net.h"
#include "virtio/virtio_rng.h"
#include "virtio/virtio_vsock.h"

#include "api_fake_vm.h"
#include "fake_vcpu_loop.h"
#include "tls_test_certs.h"
#include "virtio_rig.h"
#include "mig_test_reader.h"

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

/* The status of a case whose child could not set up what it needs here (no io_uring, no qemu-img...). */
#define CHILD_SKIPPED 77

static void assert_ended_normally_or_skipped(int status)
{
	if (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_SKIPPED)
		skip();
	assert_ended_normally(status);
}

struct vcpu_job {
	bool (*fn)(void *arg);
	void *arg;
	bool ok;
};

static void *vcpu_job_thread(void *arg)
{
	struct vcpu_job *j = arg;
	sandbox_enter(SANDBOX_VCPU);
	j->ok = j->fn(j->arg);
	return NULL;
}

/*
 * Runs fn(arg) on a new thread confined as a vCPU, as the guest's register accesses run in vmon,
 * and waits for it; the caller stays unconfined, to play the host programs (socket clients).
 */
static bool as_vcpu(bool (*fn)(void *), void *arg)
{
	struct vcpu_job j = { fn, arg, false };
	pthread_t t;
	if (pthread_create(&t, NULL, vcpu_job_thread, &j))
		return false;
	pthread_join(t, NULL);
	return j.ok;
}

/* A scratch directory for a case's sockets and files; the parent removes it after the child ends. */
static char scratch[64];

static void make_scratch(void)
{
	strcpy(scratch, "/tmp/vmon-sandbox-XXXXXX");
	assert_non_null(mkdtemp(scratch));
}

static void remove_scratch(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", scratch);
	assert_int_equal(system(cmd), 0);
}

/* Runs fn confined in a child with a fresh scratch directory, and checks how the child ended. */
static void run_confined_case(int (*fn)(void))
{
	make_scratch();
	int status = confined_child(fn);
	remove_scratch();
	assert_ended_normally_or_skipped(status);
}

/* Waits up to 2 s for bytes on a host program's socket; compares them with want. */
static bool host_reads(int fd, const char *want)
{
	char buf[128] = { 0 };
	size_t n = strlen(want), got = 0;
	while (got < n) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t r = poll(&pfd, 1, 2000) == 1 ? read(fd, buf + got, n - got) : -1;
		if (r <= 0)
			return false;
		got += (size_t)r;
	}
	return memcmp(buf, want, n) == 0;
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
	char path[128];
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
			return CHILD_SKIPPED; /* no qemu-img (scripts/install-deps.sh test installs it) */
	}
	if (virtio_blk_create(&b->v.deps, b->path, qcow2 ? DISK_FORMAT_QCOW2 : DISK_FORMAT_AUTO, false, "sandbox",
			      &b->blk))
		return CHILD_SKIPPED; /* io_uring unavailable here */
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
	assert_ended_normally_or_skipped(confined_child(qcow2_io_under_the_filters));
}

static void test_a_disk_works_under_the_vcpu_event_loop_and_main_filters(void **state)
{
	(void)state;
	assert_ended_normally_or_skipped(confined_child(disk_io_under_the_filters));
}

/* ---- a disk frozen by a snapshot: the API thread switches it onto an overlay ---- */

struct overlay_run {
	struct blk_run b;
	char overlay[160];
	int switched; /* virtio_blk_switch_to_overlay()'s result */
};

static bool blk_write_pattern(void *arg)
{
	struct blk_run *b = arg;
	uint8_t fill = b->ok ? 0xa5 : 0x5a; /* before the switch, then after */
	memset(b->v.ram + BLK_DATA, fill, 512);
	bool ok = blk_request(&b->v, VIRTIO_BLK_T_OUT, 4, 512) == VIRTIO_BLK_S_OK &&
		  blk_request(&b->v, VIRTIO_BLK_T_FLUSH, 0, 0) == VIRTIO_BLK_S_OK;
	memset(b->v.ram + BLK_DATA, 0, 512);
	ok = ok && blk_request(&b->v, VIRTIO_BLK_T_IN, 4, 512) == VIRTIO_BLK_S_OK;
	for (unsigned int i = 0; ok && i < 512; i++)
		ok = b->v.ram[BLK_DATA + i] == fill;
	return ok;
}

static bool blk_start_and_write(void *arg)
{
	start_driver(&((struct blk_run *)arg)->v, 0);
	return blk_write_pattern(arg);
}

/* What a snapshot does on the API thread: pause the device work, switch, resume. */
static void *switch_as_api(void *arg)
{
	struct overlay_run *o = arg;
	sandbox_enter(SANDBOX_API);
	event_loop_pause(o->b.v.loop);
	virtio_blk_quiesce(o->b.blk);
	o->switched = virtio_blk_switch_to_overlay(o->b.blk, o->overlay);
	event_loop_resume(o->b.v.loop);
	return NULL;
}

static int overlay_switch_under_the_filters_as(bool qcow2)
{
	static const struct vrig_spec spec = { .ram = 1u << 20, .device_id = VIRTIO_ID_BLOCK, .queues = 1,
					       .qsize = BLK_QSZ, .max_qsize = VIRTIO_BLK_QUEUE_SIZE };
	struct overlay_run *o = calloc(1, sizeof(*o));
	struct blk_run *b = &o->b;
	/* Landlock as `vmon run` sets it: the API thread may create files beneath the snapshot directory only. */
	struct vm_config cfg;
	config_init_defaults(&cfg);
	cfg.snapshot_dir = malloc(96);
	snprintf(cfg.snapshot_dir, 96, "%.63s/snap", scratch);
	snprintf(b->path, sizeof(b->path), "%s/top.img", scratch);
	snprintf(o->overlay, sizeof(o->overlay), "%s/disk0-1.qcow2", cfg.snapshot_dir);
	if (landlock_configure(&cfg))
		return 9;
	vrig_init(&b->v, &spec);
	if (virtio_blk_create(&b->v.deps, b->path, qcow2 ? DISK_FORMAT_QCOW2 : DISK_FORMAT_RAW, false, "sandbox",
			      &b->blk))
		return CHILD_SKIPPED; /* io_uring unavailable here */
	vrig_attach(&b->v);
	bool before = as_vcpu(blk_start_and_write, b);
	pthread_t api;
	if (!before || pthread_create(&api, NULL, switch_as_api, o))
		return 10;
	pthread_join(api, NULL);
	if (o->switched)
		return 11;
	b->ok = true; /* the vCPU now writes the second pattern, to the overlay */
	bool after = as_vcpu(blk_write_pattern, b);
	sandbox_enter(SANDBOX_MAIN);
	event_loop_stop(b->v.loop);
	virtio_blk_destroy(b->blk);
	vrig_free(&b->v);
	config_free(&cfg);
	free(o);
	return after ? 0 : 12;
}

static int raw_overlay_switch_under_the_filters(void)
{
	return overlay_switch_under_the_filters_as(false);
}

static int qcow2_overlay_switch_under_the_filters(void)
{
	return overlay_switch_under_the_filters_as(true);
}

/* The byte at offset 4 * 512 of a disk as qemu-io reads it, or -1. */
static int first_byte_of_sector_4(const char *format, const char *path)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "qemu-io -f %s -r -c 'read -v 2048 1' %s 2>/dev/null", format, path);
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	unsigned int byte = 0;
	int got = fscanf(p, "%*x: %x", &byte);
	pclose(p);
	return got == 1 ? (int)byte : -1;
}

static void overlay_switch_case(bool qcow2)
{
	make_scratch();
	char top[96], snap[96], overlay[160], cmd[512];
	snprintf(top, sizeof(top), "%s/top.img", scratch);
	snprintf(snap, sizeof(snap), "%s/snap", scratch);
	snprintf(overlay, sizeof(overlay), "%s/disk0-1.qcow2", snap);
	assert_int_equal(mkdir(snap, 0700), 0);
	snprintf(cmd, sizeof(cmd), "qemu-img create -q -f %s %s %u >/dev/null 2>&1", qcow2 ? "qcow2" : "raw", top,
		 BLK_SECTORS * 512);
	if (system(cmd) != 0) {
		remove_scratch();
		skip(); /* no qemu-img (scripts/install-deps.sh test installs it) */
	}
	int status = confined_child(qcow2 ? qcow2_overlay_switch_under_the_filters : raw_overlay_switch_under_the_filters);
	/* The frozen layer holds what was written before the switch, the overlay what came after. */
	int frozen = first_byte_of_sector_4(qcow2 ? "qcow2" : "raw", top);
	int live = first_byte_of_sector_4("qcow2", overlay);
	snprintf(cmd, sizeof(cmd), "qemu-img check -q %s >/dev/null 2>&1", overlay);
	int check = WIFEXITED(status) && WEXITSTATUS(status) == 0 ? system(cmd) : -1;
	remove_scratch();
	assert_ended_normally_or_skipped(status);
	assert_int_equal(frozen, 0x5a);
	assert_int_equal(live, 0xa5);
	assert_int_equal(check, 0);
}

static void test_a_raw_disk_is_frozen_under_an_overlay_by_the_api_filter(void **state)
{
	(void)state;
	overlay_switch_case(false);
}

static void test_a_qcow2_disk_is_frozen_under_an_overlay_by_the_api_filter(void **state)
{
	(void)state;
	overlay_switch_case(true);
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

/* Does the body of GET path contain want? */
static bool body_has(const char *sock, const char *path, const char *want)
{
	struct http_response r;
	if (http_unix_request(sock, "GET", path, NULL, 15000, &r))
		return false;
	bool has = r.status == 200 && r.body && strstr(r.body, want);
	free(r.body);
	return has;
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

/* ---- virtio-vsock: a guest connection to a host program, and a host program's to the guest ---- */

#define VS_QSZ 32
#define VS_CID 3

struct vs_run {
	struct vrig v;
	struct virtio_vsock *vs;
	uint64_t rx_at[VS_QSZ]; /* the guest address of each receive chain, by head */
	uint32_t host_port;      /* the port vmon gave the host program's connection */
};

static struct vs_run *vs;

static void vs_send(uint16_t op, uint32_t src_port, uint32_t dst_port, const char *data)
{
	uint32_t len = data ? (uint32_t)strlen(data) : 0;
	struct virtio_vsock_hdr h = { .src_cid = VS_CID, .dst_cid = VIRTIO_VSOCK_CID_HOST, .src_port = src_port,
				      .dst_port = dst_port, .len = len, .type = VIRTIO_VSOCK_TYPE_STREAM, .op = op,
				      .buf_alloc = 65536 };
	uint64_t a = alloc_data(&vs->v, VIRTIO_VSOCK_HDR_SIZE + len);
	virtio_vsock_hdr_encode(&h, vs->v.ram + a);
	memcpy(vs->v.ram + a + VIRTIO_VSOCK_HDR_SIZE, data ? data : "", len);
	struct seg s[2] = { { a, VIRTIO_VSOCK_HDR_SIZE, false }, { a + VIRTIO_VSOCK_HDR_SIZE, len, false } };
	add_chain(&vs->v, 1, s, len ? 2 : 1, true);
}

/* The next packet for the guest, of type op (and payload want, when given). */
static bool vs_recv(uint16_t op, const char *want, struct virtio_vsock_hdr *h)
{
	uint32_t id, len;
	if (!next_used(&vs->v, 0, &id, &len))
		return false;
	virtio_vsock_hdr_decode(vs->v.ram + vs->rx_at[id], h);
	if (h->op != op)
		return false;
	return !want || (h->len == strlen(want) && !memcmp(vs->v.ram + vs->rx_at[id] + VIRTIO_VSOCK_HDR_SIZE, want, h->len));
}

/* Driver set-up, receive buffers, and a connection to host port 1234 with a first message. */
static bool vs_guest_connects(void *arg)
{
	(void)arg;
	start_driver(&vs->v, 0);
	for (int i = 0; i < 16; i++) {
		uint64_t a = alloc_data(&vs->v, VIRTIO_VSOCK_HDR_SIZE + 4096);
		vs->rx_at[vs->v.q[0].desc_next % VS_QSZ] = a;
		struct seg s[2] = { { a, VIRTIO_VSOCK_HDR_SIZE, true }, { a + VIRTIO_VSOCK_HDR_SIZE, 4096, true } };
		add_chain(&vs->v, 0, s, 2, i == 15);
	}
	struct virtio_vsock_hdr h;
	vs_send(VIRTIO_VSOCK_OP_REQUEST, 5000, 1234, NULL);
	if (!vs_recv(VIRTIO_VSOCK_OP_RESPONSE, NULL, &h))
		return false;
	vs_send(VIRTIO_VSOCK_OP_RW, 5000, 1234, "ping");
	return true;
}

static bool vs_guest_gets_the_answer(void *arg)
{
	(void)arg;
	struct virtio_vsock_hdr h;
	return vs_recv(VIRTIO_VSOCK_OP_RW, "pong", &h);
}

/* The host program's CONNECT reaches the guest as a REQUEST for port 80, which it accepts. */
static bool vs_guest_accepts(void *arg)
{
	(void)arg;
	struct virtio_vsock_hdr h;
	if (!vs_recv(VIRTIO_VSOCK_OP_REQUEST, NULL, &h) || h.dst_port != 80)
		return false;
	vs->host_port = h.src_port;
	vs_send(VIRTIO_VSOCK_OP_RESPONSE, 80, vs->host_port, NULL);
	return true;
}

static bool vs_guest_echoes(void *arg)
{
	(void)arg;
	struct virtio_vsock_hdr h;
	if (!vs_recv(VIRTIO_VSOCK_OP_RW, "hi", &h))
		return false;
	vs_send(VIRTIO_VSOCK_OP_RW, 80, vs->host_port, "yo");
	return true;
}

static int vsock_under_the_filters(void)
{
	static const struct vrig_spec spec = { .ram = 4u << 20, .device_id = VIRTIO_ID_VSOCK, .queues = 3,
					       .qsize = VS_QSZ };
	vs = calloc(1, sizeof(*vs));
	char uds[128], port_path[140];
	snprintf(uds, sizeof(uds), "%s/v.sock", scratch);
	snprintf(port_path, sizeof(port_path), "%s_1234", uds);
	vrig_init(&vs->v, &spec);
	if (virtio_vsock_create(&vs->v.deps, VS_CID, uds, &vs->vs))
		return 40;
	vrig_attach(&vs->v);
	int lfd = unix_socket_listen(port_path, "test"), hfd = -1, cfd = -1;
	int rc = 0;
	char ok_line[32];
	if (lfd < 0 || !as_vcpu(vs_guest_connects, NULL))
		rc = 41;
	else if ((hfd = unix_socket_accept(lfd)) < 0 || !host_reads(hfd, "ping") || write(hfd, "pong", 4) != 4)
		rc = 42;
	else if (!as_vcpu(vs_guest_gets_the_answer, NULL))
		rc = 43;
	else if ((cfd = unix_socket_connect(uds)) < 0 || write(cfd, "CONNECT 80\n", 11) != 11)
		rc = 44;
	else if (!as_vcpu(vs_guest_accepts, NULL))
		rc = 45;
	else if (snprintf(ok_line, sizeof(ok_line), "OK %u\n", vs->host_port) < 0 || !host_reads(cfd, ok_line) ||
		 write(cfd, "hi", 2) != 2)
		rc = 46;
	else if (!as_vcpu(vs_guest_echoes, NULL) || !host_reads(cfd, "yo"))
		rc = 47;
	sandbox_enter(SANDBOX_MAIN);
	close(cfd);
	close(hfd);
	close(lfd);
	event_loop_stop(vs->v.loop);
	virtio_vsock_destroy(vs->vs);
	vrig_free(&vs->v);
	free(vs);
	return rc;
}

static void test_vsock_both_ways_works_under_the_vcpu_event_loop_and_main_filters(void **state)
{
	(void)state;
	run_confined_case(vsock_under_the_filters);
}

/* ---- a clone's new MAC: the link bounce on the event loop's timer, read by the guest ---- */

struct mac_run {
	struct vrig v;
	struct net_backend be;
	struct virtio_net *net;
};

static struct mac_run *mr;

static bool mr_driver_starts(void *arg)
{
	(void)arg;
	start_driver(&mr->v, (1ull << 5) | (1ull << 16)); /* VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS */
	return true;
}

/* The guest's driver sees the link down, then up again with the new MAC (config generation +2). */
static bool mr_guest_sees_link_up(void *arg)
{
	uint8_t gen0 = *(uint8_t *)arg;
	for (int i = 0; i < 2000; i++) {
		uint8_t gen = (uint8_t)rd(&mr->v, 0x15, 1);
		uint32_t status = rd(&mr->v, VIRTIO_PCI_DEVICE_OFF + 6, 2);
		if (gen == (uint8_t)(gen0 + 2) && status == VIRTIO_NET_S_LINK_UP)
			return rd(&mr->v, VIRTIO_PCI_DEVICE_OFF, 1) == 0x02;
		usleep(1000);
	}
	return false;
}

static int link_bounce_under_the_filters(void)
{
	static const struct vrig_spec spec = { .ram = 2u << 20, .device_id = VIRTIO_ID_NET, .queues = 2, .qsize = 16 };
	mr = calloc(1, sizeof(*mr));
	vrig_init(&mr->v, &spec);
	mr->be.ops = &vrig_null_net_ops;
	const uint8_t mac[6] = { 0x52, 0x54, 0, 1, 2, 3 }, new_mac[6] = { 0x02, 9, 8, 7, 6, 5 };
	if (virtio_net_create(&mr->v.deps, mac, &mr->be, &mr->net))
		return 50;
	vrig_attach(&mr->v);
	int rc = 0;
	if (!as_vcpu(mr_driver_starts, NULL))
		rc = 51;
	uint8_t gen0 = (uint8_t)rd(&mr->v, 0x15, 1);
	/* As vmon restore --clone does before the vCPUs run; the loop thread does the rest. */
	virtio_net_set_mac(mr->net, new_mac, 20);
	if (!rc && !as_vcpu(mr_guest_sees_link_up, &gen0))
		rc = 52;
	sandbox_enter(SANDBOX_MAIN);
	event_loop_stop(mr->v.loop);
	virtio_net_destroy(mr->net);
	vrig_free(&mr->v);
	free(mr);
	return rc;
}

static void test_a_clones_link_bounce_works_under_the_vcpu_event_loop_and_main_filters(void **state)
{
	(void)state;
	run_confined_case(link_bounce_under_the_filters);
}

/* ---- virtio-console (--console2): a socket client both ways, a file that reaches max_size ---- */

struct con_run {
	struct vrig v;
	struct virtio_console *con;
	uint64_t rx;
};

static struct con_run *con;

static bool con_guest_writes(void *arg)
{
	const char *text = arg;
	uint32_t len = (uint32_t)strlen(text);
	uint16_t want = (uint16_t)(used_idx(&con->v, 1) + 1);
	uint64_t a = alloc_data(&con->v, len);
	memcpy(con->v.ram + a, text, len);
	add_buf(&con->v, 1, a, len, false);
	return wait_used(&con->v, 1, want);
}

static bool con_guest_starts(void *arg)
{
	start_driver(&con->v, 0);
	con->rx = alloc_data(&con->v, 64);
	add_buf(&con->v, 0, con->rx, 64, true);
	return !arg || con_guest_writes(arg);
}

static bool con_guest_reads(void *arg)
{
	return wait_used(&con->v, 0, 1) && !memcmp(con->v.ram + con->rx, arg, strlen(arg));
}

static int console2_as(enum virtio_console_backend backend, const char *name)
{
	static const struct vrig_spec spec = { .ram = 2u << 20, .device_id = VIRTIO_ID_CONSOLE, .queues = 2,
					       .qsize = 16 };
	con = calloc(1, sizeof(*con));
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", scratch, name);
	vrig_init(&con->v, &spec);
	if (virtio_console_create(&con->v.deps, backend, path, 8, &con->con))
		return 50;
	vrig_attach(&con->v);
	int rc = 0, fd = -1;
	struct stat st;
	if (backend == VIRTIO_CONSOLE_FILE) {
		/* 16 bytes for a file of at most 8: the writer thread writes 8 and drops the rest. */
		if (!as_vcpu(con_guest_starts, "0123456789abcdef"))
			rc = 51;
		else if (stat(path, &st) || st.st_size != 8)
			rc = 52;
	} else if (!as_vcpu(con_guest_starts, NULL) || (fd = unix_socket_connect(path)) < 0) {
		rc = 53;
	} else {
		usleep(50000); /* accepted on the loop thread */
		if (!as_vcpu(con_guest_writes, "out\n") || !host_reads(fd, "out\n"))
			rc = 54;
		else if (write(fd, "in\n", 3) != 3 || !as_vcpu(con_guest_reads, "in\n"))
			rc = 55;
	}
	sandbox_enter(SANDBOX_MAIN);
	close(fd);
	event_loop_stop(con->v.loop);
	virtio_console_destroy(con->con);
	vrig_free(&con->v);
	free(con);
	return rc;
}

static int console2_socket_under_the_filters(void)
{
	return console2_as(VIRTIO_CONSOLE_SOCKET, "c.sock");
}

static int console2_file_under_the_filters(void)
{
	return console2_as(VIRTIO_CONSOLE_FILE, "c.log");
}

static void test_a_console2_socket_works_under_the_vcpu_event_loop_and_main_filters(void **state)
{
	(void)state;
	run_confined_case(console2_socket_under_the_filters);
}

static void test_a_console2_file_works_under_the_vcpu_console_out_and_main_filters(void **state)
{
	(void)state;
	run_confined_case(console2_file_under_the_filters);
}

/* ---- virtio-rng: getrandom, and the rate limit's retry timer ---- */

struct rng_run {
	struct vrig v;
	struct virtio_rng *rng;
};

/* Two requests of a whole burst each: the second waits for the bucket to refill, on a timer. */
static bool rng_guest_reads(void *arg)
{
	struct rng_run *r = arg;
	start_driver(&r->v, 0);
	add_buf(&r->v, 0, alloc_data(&r->v, VIRTIO_RNG_BURST), VIRTIO_RNG_BURST, true);
	if (!wait_used(&r->v, 0, 1))
		return false;
	add_buf(&r->v, 0, alloc_data(&r->v, VIRTIO_RNG_BURST), VIRTIO_RNG_BURST, true);
	for (int i = 0; i < 100 && virtio_rng_bytes_served(r->rng) < 2 * VIRTIO_RNG_BURST - 4096; i++) {
		if (used_idx(&r->v, 0) == 2)
			add_buf(&r->v, 0, alloc_data(&r->v, 4096), 4096, true);
		usleep(20000);
	}
	return virtio_rng_bytes_served(r->rng) > VIRTIO_RNG_BURST;
}


/* ---- migration's dirty tracking: started and read on an API thread, marked by device threads ---- */

struct track_job {
	struct rng_run *rng;
	int not_kvm_fd; /* stands for the VM's descriptor, opened before the thread confines itself */
	bool (*fn)(struct track_job *j);
	bool ok;
};

static void *api_job_thread(void *arg)
{
	struct track_job *j = arg;
	sandbox_enter(SANDBOX_API);
	j->ok = j->fn(j);
	return NULL;
}

static bool as_api_thread(struct track_job *j)
{
	pthread_t t;
	if (pthread_create(&t, NULL, api_job_thread, j))
		return false;
	pthread_join(t, NULL);
	return j->ok;
}

/*
 * What a migration does first on the API thread: vmon's own log on (membarrier), KVM's log on
 * and read. There is no KVM here, so the KVM calls go to a descriptor that is not one: the
 * filter lets them through (ENOTTY), where a missing entry would have killed the process.
 */
static bool start_tracking(struct track_job *j)
{
	if (write_track_start(&j->rng->v.mem))
		return false;
	int fd = j->not_kvm_fd;
	struct kvm_dirty_ctx ctx = { .vm_fd = fd, .manual_protect = true };
	uint64_t bits[64] = { 0 };
	bool ok = fd >= 0 && kvm_dirty_log_ops.set_logging(&ctx, &j->rng->v.mem, 0, true) == -ENOTTY &&
		  kvm_dirty_log_ops.fetch(&ctx, &j->rng->v.mem, 0, bits) == -ENOTTY;
	struct kvm_clear_dirty_log clear = { .slot = 0, .num_pages = 64, .dirty_bitmap = bits };
	return ok && ioctl(fd, KVM_CLEAR_DIRTY_LOG, &clear) < 0 && errno == ENOTTY;
}

/* The pages the guest's entropy landed in were marked by the event loop, as migration reads them. */
static bool entropy_pages_marked(struct track_job *j)
{
	return vrig_marked(&j->rng->v, VRIG_DATA, VIRTIO_RNG_BURST) && vrig_marked(&j->rng->v, VRIG_USED(0), 4 + 8 * 16);
}

/* tracked: migration's dirty tracking is started first, and the entropy's pages checked after. */
static int rng_under_the_filters_as(bool tracked)
{
	static const struct vrig_spec spec = { .ram = 4u << 20, .device_id = VIRTIO_ID_RNG, .queues = 1, .qsize = 16 };
	struct rng_run *r = calloc(1, sizeof(*r));
	vrig_init(&r->v, &spec);
	if (virtio_rng_create(&r->v.deps, &r->rng))
		return 60;
	vrig_attach(&r->v);
	r->v.marked = calloc(write_track_words(&r->v.mem.regions[0]), sizeof(uint64_t));
	struct track_job start = { .rng = r, .fn = start_tracking, .not_kvm_fd = open("/dev/null", O_RDWR | O_CLOEXEC) },
			 check = { .rng = r, .fn = entropy_pages_marked };
	int rc = tracked && !as_api_thread(&start) ? 61 : !as_vcpu(rng_guest_reads, r) ? 62
		 : tracked && !as_api_thread(&check) ? 63 : 0;
	sandbox_enter(SANDBOX_MAIN);
	close(start.not_kvm_fd);
	event_loop_stop(r->v.loop);
	virtio_rng_destroy(r->rng);
	vrig_free(&r->v);
	free(r);
	return rc;
}

static int rng_under_the_filters(void)
{
	return rng_under_the_filters_as(false);
}

static int tracked_rng_under_the_filters(void)
{
	return rng_under_the_filters_as(true);
}

static void test_rng_works_under_the_vcpu_event_loop_and_main_filters(void **state)
{
	(void)state;
	run_confined_case(rng_under_the_filters);
}

static void test_dirty_tracking_works_under_the_api_vcpu_event_loop_and_main_filters(void **state)
{
	(void)state;
	run_confined_case(tracked_rng_under_the_filters);
}

/* ---- virtio-balloon and PUT /balloon: inflate, deflate, statistics, free page reporting ---- */

#define BAL_RAM (8u << 20)
#define BAL_PAGES (4u << 20) /* the pages the guest gives: clear of the rings and buffers */

static bool bal_guest_works(void *arg)
{
	struct vrig *v = arg;
	start_driver(v, VIRTIO_F_BIT(VIRTIO_BALLOON_F_STATS_VQ) | VIRTIO_F_BIT(VIRTIO_BALLOON_F_DEFLATE_ON_OOM) |
				VIRTIO_F_BIT(VIRTIO_BALLOON_F_REPORTING));
	memset(v->ram + BAL_PAGES, 0xa5, 64 * VIRTIO_BALLOON_PAGE_SIZE);
	uint32_t pfns[16];
	for (uint32_t i = 0; i < 16; i++)
		pfns[i] = BAL_PAGES / VIRTIO_BALLOON_PAGE_SIZE + i;
	uint64_t a = alloc_data(v, sizeof(pfns));
	memcpy(v->ram + a, pfns, sizeof(pfns));
	add_buf(v, 0, a, sizeof(pfns), false); /* inflate */
	add_buf(v, 1, a, sizeof(pfns), false); /* deflate */
	uint8_t stat[10] = { VIRTIO_BALLOON_S_MEMFREE, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
	uint64_t sa = alloc_data(v, sizeof(stat));
	memcpy(v->ram + sa, stat, sizeof(stat));
	add_buf(v, 2, sa, sizeof(stat), false); /* held until the statistics timer fires */
	add_buf(v, 3, BAL_PAGES + 32 * VIRTIO_BALLOON_PAGE_SIZE, 32 * VIRTIO_BALLOON_PAGE_SIZE, true); /* report */
	return wait_used(v, 0, 1) && wait_used(v, 1, 1) && wait_used(v, 2, 1) && wait_used(v, 3, 1);
}

/*
 * RAM backed as vmon backs it: a memfd (discards punch holes in it), or with merge=on private
 * anonymous memory (discards drop pages; GET /vm and GET /metrics read /proc/self/ksm_stat).
 */
static int balloon_under_the_filters_with(enum guest_mem_backing backing)
{
	static const struct vrig_spec spec = { .ram = BAL_RAM, .device_id = VIRTIO_ID_BALLOON, .queues = 4,
					       .qsize = 16 };
	struct vrig *v = calloc(1, sizeof(*v));
	vrig_init(v, &spec);
	free(v->ram);
	char err[256];
	if (guest_mem_init_backed(&v->mem, BAL_RAM, backing, err, sizeof(err)))
		return 70;
	v->ram = v->mem.regions[0].host;
	struct balloon_config cfg;
	config_balloon_defaults(&cfg);
	cfg.enabled = true;
	cfg.stats_interval_s = 1;
	struct virtio_balloon *b;
	if (virtio_balloon_create(&v->deps, &cfg, &b))
		return 71;
	vrig_attach(v);

	char sock[128];
	snprintf(sock, sizeof(sock), "%s/api.sock", scratch);
	static struct fake_vm f;
	fake_vm_init(&f, 1, true, true);
	((struct platform *)f.vm.platform)->balloon = b;
	f.vm.mem = v->mem;
	struct api_server *srv;
	if (api_server_start(&srv, sock, &f.vm))
		return 72;
	int rc = 0;
	if (status_of(sock, "PUT", "/balloon", "{\"target_mib\": 7}") != 200)
		rc = 73;
	else if (!as_vcpu(bal_guest_works, v))
		rc = 74;
	else if (status_of(sock, "GET", "/balloon", NULL) != 200)
		rc = 75;
	else if (backing == GUEST_MEM_MERGEABLE &&
		 (!body_has(sock, "/vm", "\"merging_pages\"") || !body_has(sock, "/metrics", "\nvmon_ksm_merging_pages ")))
		rc = 76; /* this process's KSM figures, read under the API thread's filter */
	else if (v->ram[BAL_PAGES] != 0 || v->ram[BAL_PAGES + 40 * VIRTIO_BALLOON_PAGE_SIZE] != 0)
		rc = 77; /* the inflated and the reported pages went back to the host and read as zero */
	sandbox_enter(SANDBOX_MAIN);
	api_server_stop(srv);
	memset(&f.vm.mem, 0, sizeof(f.vm.mem));
	((struct platform *)f.vm.platform)->balloon = NULL;
	fake_vm_destroy(&f);
	event_loop_stop(v->loop);
	virtio_balloon_destroy(b);
	guest_mem_destroy(&v->mem);
	v->ram = NULL;
	vrig_free(v);
	free(v);
	return rc;
}

static int balloon_under_the_filters(void)
{
	return balloon_under_the_filters_with(GUEST_MEM_MEMFD);
}

static int balloon_with_mergeable_ram_under_the_filters(void)
{
	return balloon_under_the_filters_with(GUEST_MEM_MERGEABLE);
}

static void test_a_balloon_works_under_the_vcpu_event_loop_api_and_main_filters(void **state)
{
	(void)state;
	run_confined_case(balloon_under_the_filters);
}

static void test_a_balloon_and_ksm_figures_work_with_merge_on_under_the_filters(void **state)
{
	(void)state;
	run_confined_case(balloon_with_mergeable_ram_under_the_filters);
}

/* ---- the platform devices from a vCPU, the serial output writer, the console input thread ---- */

struct plat_run {
	struct serial com1;
	struct i8042 kbd;
	struct rtc rtc;
	struct pvpanic pvpanic;
	int panics;
	uint8_t seconds;
	uint8_t rx;
};

static void plat_on_panic(void *opaque, uint8_t events)
{
	(void)events;
	((struct plat_run *)opaque)->panics++;
}

static void plat_on_reset(void *opaque)
{
	(void)opaque;
}

/* What a guest kernel does early on: the clock, the keyboard controller, the serial port, a panic. */
static bool plat_guest_accesses(void *arg)
{
	struct plat_run *p = arg;
	uint8_t v = RTC_REG_SECONDS;
	rtc_ops.write(&p->rtc, 0, &v, 1);
	rtc_ops.read(&p->rtc, 1, &p->seconds, 1); /* the host's wall clock */
	v = 0xaa; /* self-test */
	i8042_cmd_ops.write(&p->kbd, 0, &v, 1);
	i8042_ops.read(&p->kbd, 0, &v, 1);
	for (const char *c = "guest says hi\n"; *c; c++)
		serial_ops.write(&p->com1, 0, c, 1);
	v = PVPANIC_PANICKED;
	pvpanic_ops.write(&p->pvpanic, 0, &v, 1);
	return p->seconds < 0x60 && p->panics == 1;
}

/* The byte the console input thread put in the receive buffer, read as the guest's driver does. */
static bool plat_guest_reads_a_key(void *arg)
{
	struct plat_run *p = arg;
	for (int i = 0; i < 2000; i++) {
		uint8_t lsr = 0;
		serial_ops.read(&p->com1, 5, &lsr, 1);
		if (lsr & 1) {
			serial_ops.read(&p->com1, 0, &p->rx, 1);
			return p->rx == 'k';
		}
		usleep(1000);
	}
	return false;
}

static void plat_on_quit(void *opaque)
{
	(void)opaque;
}

static int platform_under_the_filters(void)
{
	/* The terminal is a pseudo-terminal here: the input thread puts it in raw mode and back. */
	int master = posix_openpt(O_RDWR | O_NOCTTY);
	if (master < 0 || grantpt(master) || unlockpt(master))
		return CHILD_SKIPPED;
	int tty = open(ptsname(master), O_RDWR | O_NOCTTY);
	int out[2];
	if (tty < 0 || dup2(tty, STDIN_FILENO) < 0 || pipe(out))
		return 80;
	struct plat_run *p = calloc(1, sizeof(*p));
	struct console_output *o;
	if (console_output_start(&o, out[1], 4096))
		return 81;
	serial_init(&p->com1, (struct irq_line){ 0 }, console_output_write, o);
	i8042_init(&p->kbd, (struct irq_line){ 0 }, plat_on_reset, p);
	rtc_init(&p->rtc, (struct irq_line){ 0 });
	pvpanic_init(&p->pvpanic, plat_on_panic, p);
	struct console *c;
	if (console_start(&c, &p->com1, plat_on_quit, p))
		return 82;
	int rc = 0;
	if (!as_vcpu(plat_guest_accesses, p))
		rc = 83;
	else if (!host_reads(out[0], "guest says hi\n"))
		rc = 84;
	else if (write(master, "k", 1) != 1 || !as_vcpu(plat_guest_reads_a_key, p))
		rc = 85;
	sandbox_enter(SANDBOX_MAIN);
	console_stop(c);
	console_output_stop(o, 500);
	serial_destroy(&p->com1);
	i8042_destroy(&p->kbd);
	rtc_destroy(&p->rtc);
	close(out[0]);
	close(out[1]);
	close(master);
	free(p);
	return rc;
}

static void test_the_platform_devices_and_the_console_threads_work_under_their_filters(void **state)
{
	(void)state;
	run_confined_case(platform_under_the_filters);
}

/* ---- user-mode networking: a guest TCP connection out, and a port forward in ---- */

#define GUEST_MAC 0x52, 0x54, 0x00, 0x12, 0x34, 0x56
#define SLIRP_MAC 0x52, 0x55, 0x0a, 0x00, 0x02, 0x02
#define FWD_GUEST_PORT 8080

static uint16_t inet_sum(const uint8_t *p, size_t len, uint32_t sum)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v >> 16), put16(p + 2, v);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* What the guest's TCP has seen of one connection: the last segment slirp sent it. */
struct tcp_seen {
	uint16_t port;    /* the guest's port */
	uint16_t peer;    /* slirp's port */
	uint32_t seq;     /* slirp's next sequence number */
	uint8_t flags;    /* the last segment's flags */
	char data[64];    /* the payload slirp sent, all of it */
	size_t len;
};

struct slirp_run {
	struct net_backend *be;
	pthread_mutex_t lock;
	struct tcp_seen conn[2];
	uint8_t frame[VIRTIO_NET_HDR_LEN + 14 + 40 + 64]; /* what the guest sends next, on the loop */
	size_t frame_len;
};

static struct slirp_run *sr;

/* Frames for the guest arrive on the loop thread: record the TCP segments to the guest's ports. */
static int slirp_deliver(void *dev, const void *pkt, size_t len)
{
	(void)dev;
	const uint8_t *eth = (const uint8_t *)pkt + VIRTIO_NET_HDR_LEN, *ip = eth + 14;
	if (len < VIRTIO_NET_HDR_LEN + 14 + 40 || eth[12] != 0x08 || eth[13] != 0x00 || ip[9] != 6)
		return 0;
	const uint8_t *tcp = ip + (ip[0] & 0xf) * 4;
	size_t total = (size_t)(ip[2] << 8 | ip[3]), hl = (size_t)(tcp[12] >> 4) * 4;
	size_t data = total - (size_t)(tcp - ip) - hl;
	uint16_t port = (uint16_t)(tcp[2] << 8 | tcp[3]);
	pthread_mutex_lock(&sr->lock);
	for (int i = 0; i < 2; i++) {
		struct tcp_seen *c = &sr->conn[i];
		if (c->port != port)
			continue;
		c->peer = (uint16_t)(tcp[0] << 8 | tcp[1]);
		c->flags = tcp[13];
		c->seq = get32(tcp + 4) + (uint32_t)data + ((tcp[13] & 0x03) ? 1 : 0);
		if (data && c->len + data <= sizeof(c->data)) {
			memcpy(c->data + c->len, tcp + hl, data);
			c->len += data;
		}
	}
	pthread_mutex_unlock(&sr->lock);
	return 0;
}

static void send_frame_on_loop(void *opaque)
{
	(void)opaque;
	sr->be->ops->send(sr->be, sr->frame, sr->frame_len);
}

/* The guest announces itself (an ARP request for the gateway), so slirp knows where to send. */
static void guest_arp(struct event_loop *loop)
{
	static const uint8_t arp[14 + 28] = { SLIRP_MAC, GUEST_MAC, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1, GUEST_MAC,
					      10, 0, 2, 15, 0, 0, 0, 0, 0, 0, 10, 0, 2, 2 };
	memset(sr->frame, 0, VIRTIO_NET_HDR_LEN);
	memcpy(sr->frame + VIRTIO_NET_HDR_LEN, arp, sizeof(arp));
	sr->frame_len = VIRTIO_NET_HDR_LEN + sizeof(arp);
	event_loop_call(loop, send_frame_on_loop, NULL);
}

/* A TCP segment from the guest (10.0.2.15:sport) to 10.0.2.2:dport, sent on the loop thread. */
static void guest_tcp(struct event_loop *loop, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
		      uint8_t flags, const char *data)
{
	size_t dlen = data ? strlen(data) : 0;
	uint8_t *eth = sr->frame + VIRTIO_NET_HDR_LEN, *ip = eth + 14, *tcp = ip + 20;
	static const uint8_t hdr[14] = { SLIRP_MAC, GUEST_MAC, 0x08, 0x00 };
	static const uint8_t addrs[8] = { 10, 0, 2, 15, 10, 0, 2, 2 };
	memset(sr->frame, 0, sizeof(sr->frame));
	memcpy(eth, hdr, sizeof(hdr));
	ip[0] = 0x45;
	put16(ip + 2, (uint32_t)(40 + dlen));
	ip[8] = 64;
	ip[9] = 6;
	memcpy(ip + 12, addrs, 8);
	put16(ip + 10, inet_sum(ip, 20, 0));
	put16(tcp, sport);
	put16(tcp + 2, dport);
	put32(tcp + 4, seq);
	put32(tcp + 8, ack);
	tcp[12] = 5 << 4;
	tcp[13] = flags;
	put16(tcp + 14, 0xffff);
	memcpy(tcp + 20, data ? data : "", dlen);
	uint8_t pseudo[12] = { 10, 0, 2, 15, 10, 0, 2, 2, 0, 6 };
	put16(pseudo + 10, (uint32_t)(20 + dlen));
	put16(tcp + 16, inet_sum(tcp, 20 + dlen, (uint16_t)~inet_sum(pseudo, sizeof(pseudo), 0)));
	sr->frame_len = VIRTIO_NET_HDR_LEN + 14 + 40 + dlen;
	event_loop_call(loop, send_frame_on_loop, NULL);
}

/* Waits up to 2 s for connection i to have seen the flags (all of them) and the payload want. */
static bool guest_sees(int i, uint8_t flags, const char *want)
{
	for (int t = 0; t < 200; t++) {
		pthread_mutex_lock(&sr->lock);
		bool ok = (sr->conn[i].flags & flags) == flags &&
			  (!want || (sr->conn[i].len == strlen(want) && !memcmp(sr->conn[i].data, want, strlen(want))));
		pthread_mutex_unlock(&sr->lock);
		if (ok)
			return true;
		usleep(10000);
	}
	return false;
}

enum { TCP_SYN = 0x02, TCP_PSH = 0x08, TCP_ACK = 0x10 };

static int slirp_tcp_under_the_filters(void)
{
	/* A host service on 127.0.0.1, which the guest reaches as 10.0.2.2 with host_loopback. */
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 4) ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen))
		return 90;
	uint16_t service = ntohs(a.sin_port);
	/* A port forward from a free host port to the guest's FWD_GUEST_PORT. */
	int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in f = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t flen = sizeof(f);
	if (probe < 0 || bind(probe, (struct sockaddr *)&f, sizeof(f)) || getsockname(probe, (struct sockaddr *)&f, &flen))
		return 91;
	close(probe);
	struct net_slirp_fwd fwd = { .host_addr.s_addr = htonl(INADDR_LOOPBACK), .host_port = ntohs(f.sin_port),
				     .guest_port = FWD_GUEST_PORT };
	inet_pton(AF_INET, "10.0.2.15", &fwd.guest_addr);

	sr = calloc(1, sizeof(*sr));
	pthread_mutex_init(&sr->lock, NULL);
	sr->conn[0].port = 40001;
	sr->conn[1].port = FWD_GUEST_PORT;
	struct event_loop *loop;
	if (event_loop_create(&loop) || net_slirp_create(loop, &fwd, 1, true, &sr->be))
		return 92;
	sr->be->peer = (struct net_backend_peer){ slirp_deliver, sr };
	if (event_loop_start(loop))
		return 93;
	int rc = 0, hfd = -1, cfd = -1;
	guest_arp(loop);
	/* The guest connects out: slirp connects to the service for it; data both ways. */
	guest_tcp(loop, 40001, service, 1000, 0, TCP_SYN, NULL);
	if (!guest_sees(0, TCP_SYN | TCP_ACK, NULL))
		rc = 94;
	else {
		uint32_t ack = sr->conn[0].seq;
		guest_tcp(loop, 40001, service, 1001, ack, TCP_ACK | TCP_PSH, "ping");
		if ((hfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0 || !host_reads(hfd, "ping") ||
		    write(hfd, "pong", 4) != 4 || !guest_sees(0, 0, "pong"))
			rc = 95;
	}
	/* The host connects in through the forward: slirp accepts and opens a connection to the guest. */
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(fwd.host_port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (!rc && ((cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
		    connect(cfd, (struct sockaddr *)&to, sizeof(to)) || write(cfd, "fwd", 3) != 3 ||
		    !guest_sees(1, TCP_SYN, NULL)))
		rc = 96;
	if (!rc) {
		/* The guest accepts; slirp then hands it what the host program wrote. */
		pthread_mutex_lock(&sr->lock);
		uint32_t ack = sr->conn[1].seq;
		uint16_t peer = sr->conn[1].peer;
		pthread_mutex_unlock(&sr->lock);
		guest_tcp(loop, FWD_GUEST_PORT, peer, 5000, ack, TCP_SYN | TCP_ACK, NULL);
		if (!guest_sees(1, 0, "fwd"))
			rc = 97;
		else {
			guest_tcp(loop, FWD_GUEST_PORT, peer, 5001, ack + 3, TCP_ACK | TCP_PSH, "back");
			if (!host_reads(cfd, "back"))
				rc = 98;
		}
	}
	sandbox_enter(SANDBOX_MAIN);
	close(cfd);
	close(hfd);
	close(lfd);
	event_loop_stop(loop);
	sr->be->ops->destroy(sr->be);
	event_loop_destroy(loop);
	pthread_mutex_destroy(&sr->lock);
	free(sr);
	return rc;
}

static void test_guest_tcp_and_a_port_forward_work_under_the_event_loop_filter(void **state)
{
	(void)state;
	run_confined_case(slirp_tcp_under_the_filters);
}

/* PUT /vm/shutdown: Ctrl-Alt-Del from an API thread, then the watchdog thread's hard stop. */
static int api_shutdown_under_the_filters(void)
{
	char sock[128];
	snprintf(sock, sizeof(sock), "%s/api.sock", scratch);
	static struct fake_vm f;
	fake_vm_init(&f, 1, true, true);
	struct api_server *srv;
	if (api_server_start(&srv, sock, &f.vm))
		return 26;
	int rc = status_of(sock, "PUT", "/vm/shutdown", "{\"timeout_s\": 1}") == 202 ? 0 : 27;
	/* The fake guest never shuts down: the watchdog stops the VM after its second. */
	for (int i = 0; !rc && i < 300 && atomic_load(&f.vm.state) != VM_STOPPED; i++)
		usleep(10000);
	if (!rc && atomic_load(&f.vm.state) != VM_STOPPED)
		rc = 28;
	sandbox_enter(SANDBOX_MAIN);
	api_server_stop(srv);
	fake_vm_destroy(&f);
	return rc;
}

static void test_the_shutdown_watchdog_works_under_the_api_and_main_filters(void **state)
{
	(void)state;
	run_confined_case(api_shutdown_under_the_filters);
}

/* A client that never finishes its request: the guard thread cuts its connection at the deadline. */
static int conn_guard_under_the_filters(void)
{
	static const struct api_conn_limits limits = { .deadline_ms = 100, .per_peer = 4, .over_limit_ms = 100 };
	struct api_conn_guard *g;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) || api_conn_guard_start(&g, &limits))
		return 29;
	struct api_conn *c;
	api_conn_opened(g, sv[0], &c);
	char byte;
	struct pollfd p = { .fd = sv[1], .events = POLLIN };
	int rc = poll(&p, 1, 2000) == 1 && read(sv[1], &byte, 1) == 0 ? 0 : 30;
	sandbox_enter(SANDBOX_MAIN);
	api_conn_closed(g, c);
	api_conn_guard_stop(g);
	close(sv[0]);
	close(sv[1]);
	return rc;
}

static void test_the_connection_deadline_guard_works_under_the_api_and_main_filters(void **state)
{
	(void)state;
	run_confined_case(conn_guard_under_the_filters);
}

/* ---- a live migration's source on the API thread, under its filter and Landlock ---- */

#define MIG_BYTES (256 * 1024)

struct mig_source_run {
	struct mig_address to;
	int dns_rc;
	bool ok;
	char err[512];
};

static void *migration_source(void *arg)
{
	struct mig_source_run *m = arg;
	sandbox_enter(SANDBOX_API);
	/* A name that does not exist: getaddrinfo's files and the name server, under the filter. */
	struct mig_address bogus;
	struct addrinfo *res = NULL;
	char err[512];
	if (!mig_address_parse("tcp:no-such-host.invalid:4444", &bogus, err, sizeof(err)))
		m->dns_rc = mig_address_resolve(&bogus, false, &res, err, sizeof(err));
	if (res)
		freeaddrinfo(res);
	static const struct mig_hello hello = { .vmon_version = "src", .compat = "guest", .compat_len = 5 };
	static uint8_t data[MIG_BYTES];
	memset(data, 0x5a, sizeof(data));
	struct mig_conn *c;
	int rc = mig_conn_connect(&c, &m->to, NULL, m->err, sizeof(m->err));
	if (!rc) {
		rc = mig_handshake(c, &hello, NULL, m->err, sizeof(m->err));
		if (!rc && mig_conn_write(c, data, sizeof(data)))
			snprintf(m->err, sizeof(m->err), "%s", mig_conn_error(c));
		m->ok = !rc && mig_conn_bytes_sent(c) > MIG_BYTES;
		mig_conn_close(c);
	}
	return NULL;
}

/* A port nothing listens on, as the kernel picks one. */
static unsigned int free_tcp_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, len) || getsockname(fd, (struct sockaddr *)&sa, &len))
		sa.sin_port = htons(40000);
	if (fd >= 0)
		close(fd);
	return ntohs(sa.sin_port);
}

static bool make_migration_certs(void)
{
	static const struct test_cert_spec ca_s = { "CA", true, NULL, false, -3600, 3600 },
					   dst_s = { "dst", false, "localhost", true, -3600, 3600 },
					   src_s = { "src", false, NULL, false, -3600, 3600 };
	struct test_cert ca, dst, src;
	bool ok = test_cert_make(&ca, &ca_s, NULL) && test_cert_make(&dst, &dst_s, &ca) &&
		  test_cert_make(&src, &src_s, &ca) && test_cert_save(&ca, scratch, "ca") &&
		  test_cert_save(&dst, scratch, "dst") && test_cert_save(&src, scratch, "src");
	test_cert_free(&ca);
	test_cert_free(&dst);
	test_cert_free(&src);
	return ok;
}

/*
 * The destination is this thread, as `vmon receive` runs before its filters; the source is a
 * thread in the api role with Landlock on: it resolves names, reads its certificates, connects
 * by name over TLS, says hello and sends.
 */
static int migration_under_the_filters(void)
{
	struct vm_config cfg;
	config_init_defaults(&cfg);
	cfg.landlock = true;
	cfg.snapshot_dir = scratch; /* the certificates are there */
	int rc = make_migration_certs() && !landlock_configure(&cfg) ? 0 : 30;
	cfg.snapshot_dir = NULL;
	config_free(&cfg);
	struct mig_address listen_at;
	struct mig_source_run m = { .dns_rc = 1 };
	char text[1024], err[512] = "";
	const char *tls = ",tls-cert=%s/%s.pem,tls-key=%s/%s.key,tls-ca=%s/ca.pem";
	struct mig_listener *l = NULL;
	int n = snprintf(text, sizeof(text), "tcp:127.0.0.1:%u", free_tcp_port());
	snprintf(text + n, sizeof(text) - (size_t)n, tls, scratch, "dst", scratch, "dst", scratch);
	if (!rc && (mig_address_parse(text, &listen_at, err, sizeof(err)) || mig_listener_open(&l, &listen_at, err, sizeof(err))))
		rc = 31;
	n = snprintf(text, sizeof(text), "tcp:localhost:%u", listen_at.port);
	snprintf(text + n, sizeof(text) - (size_t)n, tls, scratch, "src", scratch, "src", scratch);
	if (!rc && mig_address_parse(text, &m.to, err, sizeof(err)))
		rc = 32;
	pthread_t t;
	if (!rc && pthread_create(&t, NULL, migration_source, &m))
		rc = 33;
	if (rc) {
		fprintf(stderr, "set-up: %s\n", err);
		mig_listener_close(l);
		return rc;
	}
	static const struct mig_hello hello = { .vmon_version = "dst" };
	static uint8_t got[MIG_BYTES];
	struct mig_conn *c = NULL;
	if (mig_listener_accept(l, 5000, NULL, &c, err, sizeof(err)) || mig_handshake(c, &hello, NULL, err, sizeof(err)))
		rc = 34;
	else if (mig_conn_read(c, got, sizeof(got)) != (ssize_t)sizeof(got) || got[0] != 0x5a || got[MIG_BYTES - 1] != 0x5a)
		rc = 35;
	pthread_join(t, NULL);
	mig_conn_close(c);
	mig_listener_close(l);
	if (rc || !m.ok || m.dns_rc >= 0)
		fprintf(stderr, "destination: %s; source: %s (dns %d)\n", err, m.err, m.dns_rc);
	return rc ? rc : !m.ok ? 36 : m.dns_rc >= 0 ? 37 : 0;
}

static void test_a_migration_source_connects_and_says_hello_under_the_api_filter_and_landlock(void **state)
{
	(void)state;
	if (landlock_abi() < 0)
		print_message("Landlock is not available here: the case runs under the seccomp filter only\n");
	run_confined_case(migration_under_the_filters);
}

/* ---- post-copy: the destination's threads under the postcopy filter, the source on an api thread ---- */

#define PC_RAM (4u << 20)

struct pc_run {
	struct guest_mem src, dst;
	struct mig_conn *sconn, *dconn;
	struct dirty_pages pending;
	int rc;
	char err[512];
};

static void *pc_source(void *arg)
{
	struct pc_run *p = arg;
	sandbox_enter(SANDBOX_API);
	p->rc = postcopy_source_run(&p->src, p->sconn, &p->pending, 0, NULL, p->err, sizeof(p->err));
	return NULL;
}

/* A vCPU touching pages that are not here yet: each fault is served while the push runs. */
static bool pc_guest_reads(void *arg)
{
	struct pc_run *p = arg;
	for (uint64_t gpa = PC_RAM - 4096; gpa >= 3 * 4096; gpa -= 3 * 4096)
		if (memcmp(gpa_to_host(&p->dst, gpa, 4096), gpa_to_host(&p->src, gpa, 4096), 4096))
			return false;
	return true;
}

/* source_dies: the source's end closes at once, and the destination's threads give up under their filter. */
static int postcopy_under_the_filters_as(bool source_dies)
{
	struct pc_run *p = calloc(1, sizeof(*p));
	int sv[2];
	struct mig_conn_opts o = { .timeout_ms = 5000 };
	if (!p || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) || guest_mem_init(&p->src, PC_RAM) ||
	    guest_mem_init(&p->dst, PC_RAM) || mig_conn_wrap(&p->sconn, sv[0], "dst", true, &o) ||
	    mig_conn_wrap(&p->dconn, sv[1], "src", false, &o))
		return 40;
	p->pending.bits[0] = calloc(write_track_words(&p->src.regions[0]), sizeof(uint64_t));
	for (uint64_t i = 0; i < PC_RAM / 4096; i++) {
		uint8_t *page = gpa_to_host_write(&p->src, i * 4096, 4096);
		for (unsigned int j = 0; i % 5 && j < 4096; j++)
			page[j] = (uint8_t)(i + j);
		p->pending.bits[0][i / 64] |= 1ull << (i % 64);
		p->pending.count++;
	}
	struct postcopy_dest *d;
	char err[512] = "";
	if (postcopy_dest_start(&d, &p->dst, p->dconn, 0, 0, 0, err, sizeof(err)))
		return 41;
	pthread_t t;
	if (source_dies) {
		mig_conn_close(p->sconn);
		p->sconn = NULL;
	} else if (pthread_create(&t, NULL, pc_source, p)) {
		return 42;
	} else if (postcopy_dest_tell(d, NULL, err, sizeof(err))) {
		return 48;
	}
	bool read_ok = source_dies || as_vcpu(pc_guest_reads, p);
	int wait = postcopy_dest_wait(d, 10000, err, sizeof(err));
	if (!source_dies)
		pthread_join(t, NULL);
	int rc = !read_ok ? 43 : source_dies ? (wait == -EPIPE && strstr(err, "the VM is lost") ? 0 : 44)
		 : wait ? 45 : p->rc ? 46 : memcmp(p->dst.regions[0].host, p->src.regions[0].host, PC_RAM) ? 47 : 0;
	if (rc)
		fprintf(stderr, "post-copy under the filters: %s %s\n", err, p->err);
	mig_conn_close(p->sconn);
	mig_conn_close(p->dconn);
	sandbox_enter(SANDBOX_MAIN);
	postcopy_dest_free(d);
	guest_mem_destroy(&p->src);
	guest_mem_destroy(&p->dst);
	free(p->pending.bits[0]);
	free(p);
	return rc;
}

static int postcopy_under_the_filters(void)
{
	return postcopy_under_the_filters_as(false);
}

static int postcopy_loss_under_the_filters(void)
{
	return postcopy_under_the_filters_as(true);
}

static void test_post_copy_serves_faults_under_the_postcopy_vcpu_api_and_main_filters(void **state)
{
	(void)state;
	run_confined_case(postcopy_under_the_filters);
}

static void test_post_copy_gives_up_on_a_dead_source_under_the_postcopy_filter(void **state)
{
	(void)state;
	run_confined_case(postcopy_loss_under_the_filters);
}

/* ---- the pre-copy engine started from an API thread: its thread inherits the api filter ---- */

#define ENGINE_RAM (4 * MiB)

static int engine_no_log(void *ctx, const struct guest_mem *mem, int slot, bool on)
{
	(void)ctx, (void)mem, (void)slot, (void)on;
	return 0;
}

/* The vCPUs wrote nothing: only the first fetch (every page) and vmon's own writes count. */
static int engine_no_fetch(void *ctx, const struct guest_mem *mem, int slot, uint64_t *bits)
{
	(void)ctx;
	memset(bits, 0, write_track_words(&mem->regions[slot]) * sizeof(uint64_t));
	return 0;
}

static const struct dirty_log_ops engine_log_ops = { .set_logging = engine_no_log, .fetch = engine_no_fetch };

static int engine_pause(void *ctx, char *err, size_t errlen) { (void)ctx, (void)err, (void)errlen; return 0; }
static void engine_resume(void *ctx) { (void)ctx; }
static int engine_flush(void *ctx, char *err, size_t errlen) { (void)ctx, (void)err, (void)errlen; return 0; }
static void engine_migrated(void *ctx, const char *to) { (void)to; *(bool *)ctx = true; }
static int engine_state(void *ctx, uint8_t **out, size_t *len, char *err, size_t errlen)
{
	(void)ctx, (void)err, (void)errlen;
	struct snap_writer w;
	snap_writer_init(&w);
	struct snap_cpu cpu = { .vendor = "GenuineIntel" };
	int rc = snap_writer_add(&w, "config", "{}", 2);
	if (!rc)
		rc = snap_writer_build(&w, 1, &cpu, out, len);
	snap_writer_free(&w);
	return rc;
}

static const struct migrate_vm_ops engine_ops = { .pause = engine_pause, .resume = engine_resume,
						  .flush_disks = engine_flush, .build_state = engine_state,
						  .migrated = engine_migrated };

struct engine_run {
	struct migrate_params p;
	struct migrate_source_vm vm;
	struct migrate_progress end;
	int rc;
};

static void *engine_api_thread(void *arg)
{
	struct engine_run *e = arg;
	sandbox_enter(SANDBOX_API);
	struct migrate_source *s;
	char err[512];
	e->rc = migrate_source_start(&s, &e->p, &e->vm, err, sizeof(err));
	if (e->rc) {
		fprintf(stderr, "engine: %s\n", err);
		return NULL;
	}
	while (migrate_source_running(s)) {
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	migrate_source_progress(s, &e->end);
	migrate_source_free(s);
	return NULL;
}

/* The destination reads on this thread, unconfined, as vmon receive does before its filters. */
static int engine_under_the_api_filter(void)
{
	struct guest_mem src, dst;
	if (guest_mem_init(&src, ENGINE_RAM) || guest_mem_init(&dst, ENGINE_RAM))
		return 40;
	for (uint64_t gpa = 0; gpa < ENGINE_RAM; gpa += 3 * 4096)
		*(uint64_t *)gpa_to_host_write(&src, gpa, 8) = gpa * 7 + 1;
	bool migrated = false;
	struct engine_run e = { .vm = { .mem = &src, .dirty_ops = &engine_log_ops, .vmon_version = "src",
					.cfg = { .ram_size = ENGINE_RAM, .cpus = 1, .cpu = { .vendor = "GenuineIntel" } },
					.ops = &engine_ops, .ctx = &migrated } };
	char err[512] = "";
	struct mig_address at;
	struct mig_listener *l = NULL;
	snprintf(e.p.destination, sizeof(e.p.destination), "tcp:127.0.0.1:%u", free_tcp_port());
	int rc = mig_address_parse(e.p.destination, &at, err, sizeof(err)) || mig_listener_open(&l, &at, err, sizeof(err)) ? 41 : 0;
	pthread_t t;
	if (!rc && pthread_create(&t, NULL, engine_api_thread, &e))
		rc = 42;
	if (rc) {
		fprintf(stderr, "set-up: %s\n", err);
		mig_listener_close(l);
		return rc;
	}
	static const struct mig_hello hello = { .vmon_version = "dst" };
	struct mig_conn *c = NULL;
	struct mig_reader r;
	memset(&r, 0, sizeof(r));
	if (mig_listener_accept(l, 5000, NULL, &c, err, sizeof(err)) || mig_handshake(c, &hello, NULL, err, sizeof(err)))
		rc = 43;
	struct mig_io io = c ? mig_conn_io(c) : (struct mig_io){ 0 };
	if (!rc && (mig_reader_open_io(&r, &io, err, sizeof(err)) || mig_reader_set_memory(&r, &dst, err, sizeof(err))))
		rc = 44;
	if (!rc && mig_test_read_to_end(&r, err, sizeof(err)))
		rc = 45;
	if (!rc && mig_outcome_send(c, NULL, err, sizeof(err)))
		rc = 46;
	pthread_join(t, NULL);
	mig_reader_free(&r);
	mig_conn_close(c);
	mig_listener_close(l);
	if (!rc && (e.rc || e.end.state != MIGRATE_COMPLETED || !migrated))
		rc = 47;
	if (!rc && memcmp(src.regions[0].host, dst.regions[0].host, ENGINE_RAM))
		rc = 48;
	if (rc)
		fprintf(stderr, "destination: %s; source: %s %s\n", err, migrate_state_name(e.end.state), e.end.reason);
	guest_mem_destroy(&src);
	guest_mem_destroy(&dst);
	return rc;
}

static void test_the_precopy_engine_migrates_ram_from_a_thread_under_the_api_filter(void **state)
{
	(void)state;
	run_confined_case(engine_under_the_api_filter);
}

/* ---- the vCPU throttle: set from the migration's thread (api role), ticks and holds on the vCPU ---- */

struct throttle_run {
	struct vm *vm;
	int rc;
};

static void sleep_ms_confined(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* What auto-converge does to a VM, with a user's pause and resume in between. */
static void *throttle_api_thread(void *arg)
{
	struct throttle_run *t = arg;
	sandbox_enter(SANDBOX_API);
	int rc = vm_set_throttle(t->vm, 50);
	sleep_ms_confined(100);
	if (!rc)
		rc = vm_pause(t->vm);
	if (!rc)
		rc = vm_set_throttle(t->vm, 70);
	if (!rc)
		rc = vm_resume(t->vm);
	sleep_ms_confined(100);
	if (!rc)
		rc = vm_set_throttle(t->vm, 0);
	sleep_ms_confined(20);
	if (!rc)
		rc = vm_set_throttle(t->vm, 90);
	sleep_ms_confined(100);
	vm_request_stop(t->vm, VM_STOP_MIGRATED, "migrated");
	t->rc = rc;
	return NULL;
}

/* The vCPU makes, arms, disarms and deletes its timer and waits out holds under the vcpu filter. */
static int throttle_under_the_vcpu_and_api_filters(void)
{
	struct fake_vm f;
	fake_vm_init(&f, 1, false, false);
	struct fake_vcpu_loop l;
	int rc = fake_vcpu_loop_start(&l, &f.vm, 0, true) ? 60 : 0;
	struct throttle_run t = { &f.vm, 0 };
	pthread_t th;
	if (!rc && pthread_create(&th, NULL, throttle_api_thread, &t))
		rc = 61;
	if (!rc) {
		pthread_join(th, NULL);
		rc = t.rc ? 62 : 0;
	}
	vm_request_stop(&f.vm, VM_STOP_SIGNAL, "test over");
	fake_vcpu_loop_join(&l);
	sandbox_enter(SANDBOX_MAIN);
	uint64_t held = atomic_load(&f.vm.vcpus[0]->throttle.held_ns);
	uint64_t ran = fake_vcpu_loop_guest_ns(&l);
	/* Held about half of 100 ms, 70 % of 100 ms and 90 % of 100 ms: well over 100 ms in all. */
	if (!rc && (held < 100 * 1000 * 1000ULL || ran == 0))
		rc = 63;
	if (rc)
		fprintf(stderr, "throttle: rc %d, held %llu ns, ran %llu ns\n", rc, (unsigned long long)held,
			(unsigned long long)ran);
	fake_vm_destroy(&f);
	return rc;
}

static void test_the_vcpu_throttle_works_under_the_vcpu_api_and_main_filters(void **state)
{
	(void)state;
	run_confined_case(throttle_under_the_vcpu_and_api_filters);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_disk_works_under_the_vcpu_event_loop_and_main_filters),
		cmocka_unit_test(test_a_qcow2_disk_works_under_the_vcpu_event_loop_and_main_filters),
		cmocka_unit_test(test_a_raw_disk_is_frozen_under_an_overlay_by_the_api_filter),
		cmocka_unit_test(test_a_qcow2_disk_is_frozen_under_an_overlay_by_the_api_filter),
		cmocka_unit_test(test_a_guest_dns_query_works_under_the_event_loop_filter),
		cmocka_unit_test(test_guest_tcp_and_a_port_forward_work_under_the_event_loop_filter),
		cmocka_unit_test(test_the_api_works_under_the_api_and_main_filters),
		cmocka_unit_test(test_the_shutdown_watchdog_works_under_the_api_and_main_filters),
		cmocka_unit_test(test_the_connection_deadline_guard_works_under_the_api_and_main_filters),
		cmocka_unit_test(test_vsock_both_ways_works_under_the_vcpu_event_loop_and_main_filters),
		cmocka_unit_test(test_a_clones_link_bounce_works_under_the_vcpu_event_loop_and_main_filters),
		cmocka_unit_test(test_a_console2_socket_works_under_the_vcpu_event_loop_and_main_filters),
		cmocka_unit_test(test_a_console2_file_works_under_the_vcpu_console_out_and_main_filters),
		cmocka_unit_test(test_rng_works_under_the_vcpu_event_loop_and_main_filters),
		cmocka_unit_test(test_dirty_tracking_works_under_the_api_vcpu_event_loop_and_main_filters),
		cmocka_unit_test(test_a_balloon_works_under_the_vcpu_event_loop_api_and_main_filters),
		cmocka_unit_test(test_a_balloon_and_ksm_figures_work_with_merge_on_under_the_filters),
		cmocka_unit_test(test_the_platform_devices_and_the_console_threads_work_under_their_filters),
		cmocka_unit_test(test_a_migration_source_connects_and_says_hello_under_the_api_filter_and_landlock),
		cmocka_unit_test(test_post_copy_serves_faults_under_the_postcopy_vcpu_api_and_main_filters),
		cmocka_unit_test(test_post_copy_gives_up_on_a_dead_source_under_the_postcopy_filter),
		cmocka_unit_test(test_the_precopy_engine_migrates_ram_from_a_thread_under_the_api_filter),
		cmocka_unit_test(test_the_vcpu_throttle_works_under_the_vcpu_api_and_main_filters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
