/* The API server on a real Unix socket, through vmon's own HTTP client: concurrency, stalled clients, socket files. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/api_conn_guard.h"
#include "api/api_server.h"
#include "api/http_client.h"
#include "api_fake_vm.h"

struct fixture {
	struct fake_vm f;
	struct api_server *srv;
	char dir[64];
	char sock[128];
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	strcpy(fx->dir, "/tmp/vmon-apisrv.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->sock, sizeof(fx->sock), "%s/api.sock", fx->dir);
	fake_vm_init(&fx->f, 2, true, true);
	assert_int_equal(api_server_start(&fx->srv, fx->sock, &fx->f.vm), 0);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	/* As vmon does: the VM stops, then the server goes, then the VM is freed. */
	vm_request_stop(&fx->f.vm, VM_STOP_SIGNAL, "test over");
	api_server_stop(fx->srv);
	fake_vm_destroy(&fx->f);
	rmdir(fx->dir);
	free(fx);
	return 0;
}

static int status_of(const char *sock, const char *method, const char *path, const char *body)
{
	struct http_response r;
	int rc = http_unix_request(sock, method, path, body, 15000, &r);
	if (rc)
		return rc;
	free(r.body);
	return r.status;
}

static void test_round_trip_and_socket_mode(void **state)
{
	struct fixture *fx = *state;
	struct stat st;
	assert_int_equal(stat(fx->sock, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);

	struct http_response r;
	assert_int_equal(http_unix_request(fx->sock, "GET", "/vm", NULL, 5000, &r), 0);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"state\": \"running\""));
	free(r.body);
	assert_int_equal(http_unix_request(fx->sock, "PUT", "/vm/state", "{\"state\": \"flying\"}", 5000, &r), 0);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(r.body, "\"error\""));
	free(r.body);
	assert_int_equal(http_unix_request(fx->sock, "GET", "/metrics", NULL, 5000, &r), 0);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "vmon_vcpu_exits_total{vcpu=\"1\",reason=\"io\"}"));
	free(r.body);
}

struct client_arg {
	const char *sock;
	int id;
	int bad;        /* replies that were not 200 */
	int last_bad;   /* the last of them, to say what went wrong */
};

static void *client_thread(void *p)
{
	struct client_arg *a = p;
	for (int i = 0; i < 15; i++) {
		const char *body = (i + a->id) % 2 ? "{\"state\": \"paused\"}" : "{\"state\": \"running\"}";
		int put = status_of(a->sock, "PUT", "/vm/state", body);
		int get = status_of(a->sock, "GET", i % 2 ? "/metrics" : "/vm", NULL);
		if (put != 200)
			a->bad++, a->last_bad = put;
		if (get != 200)
			a->bad++, a->last_bad = get;
	}
	return NULL;
}

static void test_concurrent_clients_leave_a_consistent_vm(void **state)
{
	struct fixture *fx = *state;
	enum { N = 8 };
	pthread_t t[N];
	struct client_arg args[N];
	for (int i = 0; i < N; i++) {
		args[i] = (struct client_arg){ .sock = fx->sock, .id = i };
		pthread_create(&t[i], NULL, client_thread, &args[i]);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		if (args[i].bad)
			fail_msg("client %d got %d replies that were not 200, the last %d", i, args[i].bad, args[i].last_bad);
	}
	/* Whatever order they ran in, the VM is in one of the two states and can be resumed. */
	int s = atomic_load(&fx->f.vm.state);
	assert_true(s == VM_RUNNING || s == VM_PAUSED);
	assert_int_equal(status_of(fx->sock, "PUT", "/vm/state", "{\"state\": \"running\"}"), 200);
	uint64_t before = fake_progress(&fx->f);
	sleep_ms(50);
	assert_true(fake_progress(&fx->f) > before);
}

static void test_stalled_and_vanished_clients_block_nobody(void **state)
{
	struct fixture *fx = *state;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, fx->sock);
	int stalled = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(connect(stalled, (struct sockaddr *)&sa, sizeof(sa)), 0);
	const char partial[] = "PUT /vm/state HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"sta";
	assert_int_equal(write(stalled, partial, sizeof(partial) - 1), (ssize_t)sizeof(partial) - 1);
	int gone = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(connect(gone, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(write(gone, "GET /me", 7), 7);
	close(gone);

	uint64_t t0 = monotonic_ns();
	assert_int_equal(status_of(fx->sock, "GET", "/vm", NULL), 200);
	assert_int_equal(status_of(fx->sock, "PUT", "/vm/state", "{\"state\": \"paused\"}"), 200);
	assert_int_equal(status_of(fx->sock, "PUT", "/vm/state", "{\"state\": \"running\"}"), 200);
	assert_true(monotonic_ns() - t0 < 2000000000ULL);
	uint64_t before = fake_progress(&fx->f);
	sleep_ms(50);
	assert_true(fake_progress(&fx->f) > before);
	close(stalled);
}

static void test_socket_files(void **state)
{
	struct fixture *fx = *state;
	struct api_server *other;
	/* A live socket is refused. */
	assert_int_equal(api_server_start(&other, fx->sock, &fx->f.vm), -EADDRINUSE);
	/* Any other file is refused and left alone. */
	char path[160];
	snprintf(path, sizeof(path), "%s/plain", fx->dir);
	FILE *f = fopen(path, "w");
	fclose(f);
	assert_int_equal(api_server_start(&other, path, &fx->f.vm), -EEXIST);
	assert_int_equal(access(path, F_OK), 0);
	unlink(path);
	/* A socket nobody listens on (left by a killed vmon) is replaced. */
	snprintf(path, sizeof(path), "%s/stale.sock", fx->dir);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_int_equal(status_of(path, "GET", "/vm", NULL), -ECONNREFUSED);
	assert_int_equal(api_server_start(&other, path, &fx->f.vm), 0);
	assert_int_equal(status_of(path, "GET", "/vm", NULL), 200);
	api_server_stop(other);
	/* Stopping removes the socket. */
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(status_of(path, "GET", "/vm", NULL), -ENOENT);
}

static void test_stop_reply_arrives_before_the_server_goes(void **state)
{
	struct fixture *fx = *state;
	struct http_response r;
	assert_int_equal(http_unix_request(fx->sock, "PUT", "/vm/stop", NULL, 5000, &r), 0);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "stopped"));
	free(r.body);
	/* The server keeps answering until vmon takes it down: now as a stopped VM. */
	assert_int_equal(status_of(fx->sock, "PUT", "/vm/state", "{\"state\": \"paused\"}"), 409);
}

static int raw_connect(const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, sock);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Whether the server closed fd within ms (EOF or an error on read). */
static bool closed_within(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char buf[512];
	uint64_t end = monotonic_ns() + (uint64_t)ms * 1000000ULL;
	while (monotonic_ns() < end) {
		if (poll(&p, 1, 50) == 1) {
			ssize_t n = read(fd, buf, sizeof(buf));
			if (n <= 0)
				return true;
		}
	}
	return false;
}

static void test_trickling_client_is_cut_at_its_deadline(void **state)
{
	struct fixture *fx = *state;
	int slow = raw_connect(fx->sock);
	const char line[] = "PUT /vm/state HTTP/1.1\r\n";
	assert_int_equal(write(slow, line, sizeof(line) - 1), (ssize_t)sizeof(line) - 1);
	/* A header line every second never lets the per-read timeout fire; the total deadline does. */
	uint64_t t0 = monotonic_ns();
	bool cut = false;
	for (int i = 0; i < API_REQUEST_DEADLINE_S + 2 && !cut; i++) {
		if (write(slow, "X-Slow: 1\r\n", 11) != 11)
			break; /* EPIPE: already cut */
		cut = closed_within(slow, 1000);
		assert_int_equal(status_of(fx->sock, "GET", "/vm", NULL), 200);
	}
	uint64_t took_ms = (monotonic_ns() - t0) / 1000000;
	assert_true(cut || closed_within(slow, 100));
	assert_true(took_ms >= API_REQUEST_DEADLINE_S * 1000 - 200 && took_ms < API_REQUEST_DEADLINE_S * 1000 + 1500);
	/* The request it never finished was not carried out. */
	assert_int_equal(atomic_load(&fx->f.vm.state), VM_RUNNING);
	close(slow);
}

static void test_one_process_gets_only_its_share_of_connections(void **state)
{
	struct fixture *fx = *state;
	int held[API_CONNECTIONS_PER_PEER];
	for (int i = 0; i < API_CONNECTIONS_PER_PEER; i++)
		held[i] = raw_connect(fx->sock);
	sleep_ms(100);
	struct http_response r;
	assert_int_equal(http_unix_request(fx->sock, "GET", "/vm", NULL, 5000, &r), 0);
	assert_int_equal(r.status, 429);
	assert_non_null(strstr(r.body, "connections to this API"));
	free(r.body);
	for (int i = 0; i < API_CONNECTIONS_PER_PEER; i++)
		close(held[i]);
	/* Once they are closed the process is served again at once, before the server has reaped them. */
	assert_int_equal(status_of(fx->sock, "GET", "/vm", NULL), 200);
}

static void test_peer_gone_only_when_the_client_closed(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_false(api_conn_peer_gone(sv[0]));
	/* A client that half-closes after its request still reads the reply. */
	shutdown(sv[1], SHUT_WR);
	assert_false(api_conn_peer_gone(sv[0]));
	close(sv[1]);
	assert_true(api_conn_peer_gone(sv[0]));
	close(sv[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip_and_socket_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_clients_leave_a_consistent_vm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stalled_and_vanished_clients_block_nobody, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_reply_arrives_before_the_server_goes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trickling_client_is_cut_at_its_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_process_gets_only_its_share_of_connections, setup, teardown),
		cmocka_unit_test(test_peer_gone_only_when_the_client_closed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
