/*
 * virtio-console (the guest's hvc0) driven as a guest driver drives it (BAR0 on the MMIO bus,
 * rings in a fake guest memory), with its host side on a real Unix socket or file: bytes both
 * ways, flow control in both directions, one client at a time, malformed buffers, snapshots.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/unix_socket.h"
#include "config/config_sockets.h"
#include "virtio/virtio_console.h"

#include "virtio_rig.h"

#define RAM (8u << 20)
#define QSZ 32
#define RXQ 0
#define TXQ 1

struct rig {
	struct vrig v;
	struct virtio_console *con;
	char dir[64], path[96];
};

static const struct vrig_spec spec = { .ram = RAM, .device_id = VIRTIO_ID_CONSOLE, .queues = 2, .qsize = QSZ };

/* max_size: the file backend's limit. */
static void rig_setup_backend(struct rig *r, enum virtio_console_backend backend, uint64_t max_size)
{
	memset(r, 0, sizeof(*r));
	strcpy(r->dir, "/tmp/vmon-console-XXXXXX");
	assert_non_null(mkdtemp(r->dir));
	snprintf(r->path, sizeof(r->path), "%s/%s", r->dir, backend == VIRTIO_CONSOLE_SOCKET ? "c.sock" : "out.log");
	vrig_init(&r->v, &spec);
	assert_int_equal(virtio_console_create(&r->v.deps, backend, r->path, max_size, &r->con), 0);
	vrig_attach(&r->v);
	start_driver(&r->v, 0);
}

static void rig_setup(struct rig *r) { rig_setup_backend(r, VIRTIO_CONSOLE_SOCKET, 0); }

static void rig_free(struct rig *r)
{
	event_loop_stop(r->v.loop);
	virtio_console_destroy(r->con);
	vrig_free(&r->v);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", r->dir);
	assert_int_equal(system(cmd), 0);
}

/* Guest output: a transmit buffer holding s. */
static void guest_write(struct rig *r, const void *s, uint32_t len)
{
	uint64_t a = alloc_data(&r->v, len);
	memcpy(r->v.ram + a, s, len);
	add_buf(&r->v, TXQ, a, len, false);
}

static int client(struct rig *r)
{
	int fd = unix_socket_connect(r->path);
	assert_true(fd >= 0);
	return fd;
}

static void config_says_one_port(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	assert_int_equal(rd(&r.v, NUMQ, 2), 2);
	assert_int_equal(rd(&r.v, VIRTIO_PCI_DEVICE_OFF, 4), 0);     /* cols, rows */
	assert_int_equal(rd(&r.v, VIRTIO_PCI_DEVICE_OFF + 4, 4), 1); /* max_nr_ports */
	rig_free(&r);
}

static void bytes_flow_both_ways(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	vrig_track_writes(&r.v);
	uint64_t rx = alloc_data(&r.v, 64);
	add_buf(&r.v, RXQ, rx, 64, true);
	int fd = client(&r);
	usleep(20000); /* accepted on the loop thread */
	guest_write(&r, "hello from hvc0\n", 16);
	char buf[64] = { 0 };
	assert_int_equal(read_wait(fd, buf, sizeof(buf)), 16);
	assert_string_equal(buf, "hello from hvc0\n");
	assert_true(wait_used(&r.v, TXQ, 1));

	assert_int_equal(send(fd, "typed\n", 6, 0), 6);
	assert_true(wait_used(&r.v, RXQ, 1));
	uint32_t id, len;
	used_elem(&r.v, RXQ, 0, &id, &len);
	assert_int_equal(len, 6);
	assert_memory_equal(r.v.ram + rx, "typed\n", 6);
	/* Read from the socket straight into guest RAM: marked for migration. */
	assert_true(vrig_marked(&r.v, rx, 6));

	struct virtio_console_stats st;
	virtio_console_get_stats(r.con, &st);
	assert_int_equal(st.tx_bytes, 16);
	assert_int_equal(st.rx_bytes, 6);
	close(fd);
	rig_free(&r);
}

/* Client input waits in the socket until the guest has a receive buffer; nothing is lost. */
static void input_waits_for_receive_buffers(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	int fd = client(&r);
	assert_int_equal(send(fd, "abcdefgh", 8, 0), 8);
	usleep(50000);
	assert_int_equal(used_idx(&r.v, RXQ), 0);
	uint64_t rx = alloc_data(&r.v, 5);
	add_buf(&r.v, RXQ, rx, 5, true);
	assert_true(wait_used(&r.v, RXQ, 1));
	assert_memory_equal(r.v.ram + rx, "abcde", 5);
	usleep(20000);
	assert_int_equal(used_idx(&r.v, RXQ), 1); /* the rest waits again */
	uint64_t rx2 = alloc_data(&r.v, 64);
	add_buf(&r.v, RXQ, rx2, 64, true);
	assert_true(wait_used(&r.v, RXQ, 2));
	uint32_t id, len;
	used_elem(&r.v, RXQ, 1, &id, &len);
	assert_int_equal(len, 3);
	assert_memory_equal(r.v.ram + rx2, "fgh", 3);
	close(fd);
	rig_free(&r);
}

/* A slow client holds the guest's transmit buffer (the guest waits) instead of vmon buffering. */
static void slow_client_holds_the_transmit_buffer(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	int fd = client(&r);
	int small = 4096;
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
	usleep(20000);
	static uint8_t big[1 << 20];
	memset(big, 'x', sizeof(big));
	guest_write(&r, big, sizeof(big));
	guest_write(&r, "tail", 4);
	usleep(100000);
	assert_int_equal(used_idx(&r.v, TXQ), 0); /* the socket is full: the first buffer is held */
	size_t got = 0, xs = 0;
	char last[4] = { 0 };
	static char buf[65536];
	while (got < sizeof(big) + 4) {
		ssize_t n = read_wait(fd, buf, sizeof(buf));
		assert_true(n > 0);
		for (ssize_t i = 0; i < n; i++) {
			xs += buf[i] == 'x';
			memmove(last, last + 1, 3);
			last[3] = buf[i];
		}
		got += (size_t)n;
	}
	assert_int_equal(got, sizeof(big) + 4);
	assert_int_equal(xs, sizeof(big)); /* in order: all of the big buffer, then "tail" */
	assert_memory_equal(last, "tail", 4);
	assert_true(wait_used(&r.v, TXQ, 2));
	struct virtio_console_stats st;
	virtio_console_get_stats(r.con, &st);
	assert_int_equal(st.tx_bytes, sizeof(big) + 4);
	assert_int_equal(st.dropped_bytes, 0);
	close(fd);
	rig_free(&r);
}

static void output_without_a_client_is_dropped(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	guest_write(&r, "nobody listens", 14);
	assert_true(wait_used(&r.v, TXQ, 1));
	struct virtio_console_stats st;
	virtio_console_get_stats(r.con, &st);
	assert_int_equal(st.dropped_bytes, 14);
	assert_int_equal(st.tx_bytes, 0);
	rig_free(&r);
}

static void one_client_at_a_time(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	int a = client(&r);
	usleep(20000);
	int b = client(&r);
	char buf[128] = { 0 };
	ssize_t n = read_wait(b, buf, sizeof(buf) - 1);
	assert_true(n > 0);
	assert_non_null(strstr(buf, "already has a client"));
	assert_int_equal(read_wait(b, buf, sizeof(buf)), 0);
	close(b);
	guest_write(&r, "to a", 4);
	assert_int_equal(read_wait(a, buf, sizeof(buf)), 4);
	/* When the first client leaves, the next one gets the console. */
	close(a);
	usleep(20000);
	int c = client(&r);
	usleep(20000);
	guest_write(&r, "to c", 4);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(read_wait(c, buf, sizeof(buf)), 4);
	assert_string_equal(buf, "to c");
	close(c);
	rig_free(&r);
}

static void file_backend_appends_output(void **state)
{
	(void)state;
	struct rig r;
	rig_setup_backend(&r, VIRTIO_CONSOLE_FILE, CONSOLE2_DEFAULT_MAX_SIZE);
	guest_write(&r, "line one\n", 9);
	guest_write(&r, "line two\n", 9);
	assert_true(wait_used(&r.v, TXQ, 2));
	char buf[64] = { 0 };
	int fd = open(r.path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf)), 18);
	assert_string_equal(buf, "line one\nline two\n");
	close(fd);
	rig_free(&r);
}

static void wrong_direction_buffers_need_reset(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	int fd = client(&r);
	usleep(20000);
	add_buf(&r.v, RXQ, alloc_data(&r.v, 16), 16, false); /* a receive buffer the device cannot write */
	assert_int_equal(send(fd, "x", 1, 0), 1);
	assert_true(wait_needs_reset(&r.v));
	/* A reset and re-initialisation bring it back; then a writable transmit buffer is refused. */
	start_driver(&r.v, 0);
	assert_false(rd(&r.v, STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
	add_buf(&r.v, TXQ, alloc_data(&r.v, 16), 16, true);
	assert_true(wait_needs_reset(&r.v));
	struct virtio_console_stats st;
	virtio_console_get_stats(r.con, &st);
	assert_int_equal(st.errors, 2);
	close(fd);
	rig_free(&r);
}

/* A transmit buffer held for a slow client when the snapshot was taken is given back after a load. */
static void snapshot_load_returns_the_held_buffer(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	int fd = client(&r);
	int small = 4096;
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
	usleep(20000);
	static uint8_t big[1 << 20];
	guest_write(&r, big, sizeof(big));
	usleep(50000);
	assert_int_equal(used_idx(&r.v, TXQ), 0);
	struct virtio_device *vdev = r.v.fn->owner;
	static uint8_t image[1 << 16];
	event_loop_stop(r.v.loop);
	long len = virtio_pci_save(vdev, image, sizeof(image));
	assert_true(len > 0);
	close(fd); /* the old process's client is gone */
	assert_int_equal(virtio_pci_load(vdev, image, (size_t)len), 0);
	assert_int_equal(event_loop_start(r.v.loop), 0);
	assert_true(wait_used(&r.v, TXQ, 1));
	rig_free(&r);
}

/* A receive chain of more writable segments than one readv() takes: 1 in the ring, 1,024 indirect. */
static void a_chain_longer_than_iov_max_is_filled_and_keeps_the_client(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	start_driver(&r.v, VIRTIO_F_BIT(VIRTIO_RING_F_INDIRECT_DESC));
	int fd = client(&r);
	usleep(20000); /* accepted on the loop thread */
	enum { N = IOV_MAX + 1, SENT = 2000 };
	char input[SENT];
	for (int i = 0; i < SENT; i++)
		input[i] = (char)('a' + i % 26);
	assert_int_equal(send(fd, input, SENT, 0), SENT);
	uint64_t buf = alloc_data(&r.v, N);
	struct seg first = { buf, 1, true };
	static struct seg table[N - 1];
	for (int i = 0; i < N - 1; i++)
		table[i] = (struct seg){ buf + 1 + (uint64_t)i, 1, true };
	add_indirect_chain(&r.v, RXQ, &first, 1, table, N - 1, true);
	assert_true(wait_used(&r.v, RXQ, 1));
	uint32_t id, len;
	used_elem(&r.v, RXQ, 0, &id, &len);
	assert_int_equal(len, N); /* every segment, not a failed read */
	assert_memory_equal(r.v.ram + buf, input, N);
	/* The client is still there, both ways: the rest of its input and the guest's output. */
	uint64_t rx = alloc_data(&r.v, SENT);
	add_buf(&r.v, RXQ, rx, SENT, true);
	assert_true(wait_used(&r.v, RXQ, 2));
	used_elem(&r.v, RXQ, 1, &id, &len);
	assert_int_equal(len, SENT - N);
	assert_memory_equal(r.v.ram + rx, input + N, SENT - N);
	guest_write(&r, "still here\n", 11);
	char out[32] = { 0 };
	assert_int_equal(read_wait(fd, out, sizeof(out)), 11);
	assert_string_equal(out, "still here\n");
	assert_false(rd(&r.v, STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
	close(fd);
	rig_free(&r);
}

static int count_in_file(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char line[2048];
	int n = 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

static void file_output_stops_at_max_size(void **state)
{
	(void)state;
	char log_path[] = "/tmp/vmon-console-log.XXXXXX";
	int lfd = mkstemp(log_path);
	assert_true(lfd >= 0);
	close(lfd);
	assert_int_equal(log_open_json_file(log_path), 0);
	struct rig r;
	rig_setup_backend(&r, VIRTIO_CONSOLE_FILE, 20);
	guest_write(&r, "line one\n", 9);
	guest_write(&r, "line two\n", 9);
	guest_write(&r, "line three\n", 11);
	for (int i = 0; i < 10; i++)
		guest_write(&r, "more\n", 5);
	/* Every buffer goes back to the guest; the file holds the first 20 bytes only. */
	assert_true(wait_used(&r.v, TXQ, 13));
	struct stat st;
	assert_int_equal(stat(r.path, &st), 0);
	assert_int_equal(st.st_size, 20);
	char buf[64] = { 0 };
	int fd = open(r.path, O_RDONLY);
	assert_int_equal(read(fd, buf, sizeof(buf)), 20);
	close(fd);
	assert_string_equal(buf, "line one\nline two\nli");
	struct virtio_console_stats st2;
	virtio_console_get_stats(r.con, &st2);
	assert_int_equal(st2.tx_bytes, 20);
	assert_int_equal(st2.dropped_bytes, 9 + 50);
	rig_free(&r);
	log_close_json_file();
	assert_int_equal(count_in_file(log_path, "reached max_size"), 1);
	unlink(log_path);
}

struct loop_probe {
	struct event_loop *loop;
	_Atomic bool answered;
};

static void nothing(void *opaque) { (void)opaque; }

static void *probe_loop(void *arg)
{
	struct loop_probe *p = arg;
	event_loop_call(p->loop, nothing, NULL);
	atomic_store(&p->answered, true);
	return NULL;
}

/* Output to a file that does not take it (a FIFO nobody reads) waits; the event loop does not. */
static void a_stalled_file_does_not_stall_the_event_loop(void **state)
{
	(void)state;
	struct rig r;
	memset(&r, 0, sizeof(r));
	strcpy(r.dir, "/tmp/vmon-console-XXXXXX");
	assert_non_null(mkdtemp(r.dir));
	snprintf(r.path, sizeof(r.path), "%s/fifo", r.dir);
	assert_int_equal(mkfifo(r.path, 0600), 0);
	int reader = open(r.path, O_RDONLY | O_NONBLOCK);
	assert_true(reader >= 0);
	vrig_init(&r.v, &spec);
	assert_int_equal(virtio_console_create(&r.v.deps, VIRTIO_CONSOLE_FILE, r.path, 1u << 30, &r.con), 0);
	vrig_attach(&r.v);
	start_driver(&r.v, 0);
	enum { BIG = 1 << 20 }; /* far more than a pipe holds */
	uint64_t a = alloc_data(&r.v, BIG);
	memset(r.v.ram + a, 'x', BIG);
	add_buf(&r.v, TXQ, a, BIG, false);
	usleep(50 * 1000);
	struct loop_probe p = { .loop = r.v.loop };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, probe_loop, &p), 0);
	for (int i = 0; i < 2000 && !atomic_load(&p.answered); i++)
		usleep(1000);
	if (!atomic_load(&p.answered))
		fail_msg("the event loop is blocked in a write to the console file");
	pthread_join(t, NULL);
	assert_int_equal(used_idx(&r.v, TXQ), 0); /* the guest waits for its buffer */
	/* Someone reads: the output flows and the buffer comes back. */
	size_t got = 0;
	static char sink[65536];
	for (int i = 0; i < 5000 && got < BIG; i++) {
		ssize_t n = read(reader, sink, sizeof(sink));
		if (n > 0)
			got += (size_t)n;
		else
			usleep(1000);
	}
	assert_int_equal(got, BIG);
	assert_true(wait_used(&r.v, TXQ, 1));
	close(reader);
	rig_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(config_says_one_port),
		cmocka_unit_test(bytes_flow_both_ways),
		cmocka_unit_test(input_waits_for_receive_buffers),
		cmocka_unit_test(slow_client_holds_the_transmit_buffer),
		cmocka_unit_test(output_without_a_client_is_dropped),
		cmocka_unit_test(one_client_at_a_time),
		cmocka_unit_test(file_backend_appends_output),
		cmocka_unit_test(wrong_direction_buffers_need_reset),
		cmocka_unit_test(snapshot_load_returns_the_held_buffer),
		cmocka_unit_test(a_chain_longer_than_iov_max_is_filled_and_keeps_the_client),
		cmocka_unit_test(file_output_stops_at_max_size),
		cmocka_unit_test(a_stalled_file_does_not_stall_the_event_loop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
