/*
 * http_unix_request against a fake server thread that answers well, or misbehaves the ways a
 * hostile or broken peer can: a huge announced body, an endless body, a stall, no HTTP at all.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/http_client.h"
#include "lib/util.h"

enum behaviour { GOOD, HUGE_LENGTH, ENDLESS, STALL, NOT_HTTP, CUT_SHORT };

struct fake {
	char dir[64], sock[128];
	int listen_fd;
	enum behaviour how;
	char request[4096]; /* what the client sent */
	pthread_t thread;
};

static void send_str(int fd, const char *s)
{
	ssize_t n = send(fd, s, strlen(s), MSG_NOSIGNAL);
	(void)n;
}

/* Reads the request head and, when it announces one, the body. */
static void read_request(int fd, struct fake *f)
{
	size_t len = 0;
	while (len < sizeof(f->request) - 1) {
		ssize_t n = recv(fd, f->request + len, sizeof(f->request) - 1 - len, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
		f->request[len] = 0;
		char *end = strstr(f->request, "\r\n\r\n");
		const char *cl = strcasestr(f->request, "Content-Length:");
		if (end && (size_t)(end + 4 - f->request) + (cl ? strtoul(cl + 15, NULL, 10) : 0) <= len)
			break;
	}
}

/* Stays silent until the client gives up and closes (at most 5 s). */
static void wait_for_close(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;
	while (poll(&p, 1, 5000) > 0 && recv(fd, &c, 1, 0) > 0)
		;
}

static void *serve(void *opaque)
{
	struct fake *f = opaque;
	int fd = accept(f->listen_fd, NULL, NULL);
	if (fd < 0)
		return NULL;
	read_request(fd, f);
	static char chunk[65536];
	switch (f->how) {
	case GOOD:
		send_str(fd, "HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: 25\r\n\r\n"
			     "{\"error\": \"\x1b[2Jnot now\"}\n");
		break;
	case HUGE_LENGTH:
		send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n{");
		wait_for_close(fd); /* and stop: the client must not wait for the rest */
		break;
	case ENDLESS:
		memset(chunk, 'x', sizeof(chunk));
		send_str(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
		while (send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL) > 0)
			;
		break;
	case STALL:
		send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{\"a\"");
		wait_for_close(fd);
		break;
	case NOT_HTTP:
		send_str(fd, "SSH-2.0-OpenSSH_9.2\r\n\r\n");
		break;
	case CUT_SHORT:
		send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{\"a\"");
		break;
	}
	close(fd);
	return NULL;
}

static int setup(void **state)
{
	struct fake *f = calloc(1, sizeof(*f));
	strcpy(f->dir, "/tmp/vmon-httpc.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->sock, sizeof(f->sock), "%s/api.sock", f->dir);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, f->sock);
	f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->listen_fd, 4), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fake *f = *state;
	shutdown(f->listen_fd, SHUT_RDWR); /* wakes a server still waiting in accept */
	pthread_join(f->thread, NULL);
	close(f->listen_fd);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static int request(struct fake *f, enum behaviour how, const char *method, const char *body, int timeout_ms,
		   struct http_response *r, uint64_t *elapsed_ms)
{
	f->how = how;
	assert_int_equal(pthread_create(&f->thread, NULL, serve, f), 0);
	uint64_t t0 = monotonic_ns();
	int rc = http_unix_request(f->sock, method, "/vm/state", body, timeout_ms, r);
	*elapsed_ms = (monotonic_ns() - t0) / 1000000;
	return rc;
}

static void test_good_reply_and_request(void **state)
{
	struct fake *f = *state;
	struct http_response r;
	uint64_t ms;
	assert_int_equal(request(f, GOOD, "PUT", "{\"state\": \"paused\"}", 5000, &r, &ms), 0);
	assert_int_equal(r.status, 409);
	assert_int_equal(r.len, 25);
	assert_string_equal(r.body, "{\"error\": \"\x1b[2Jnot now\"}\n");
	free(r.body);
	assert_non_null(strstr(f->request, "PUT /vm/state HTTP/1.1\r\n"));
	assert_non_null(strcasestr(f->request, "Content-Length: 19\r\n"));
	assert_non_null(strstr(f->request, "\r\n\r\n{\"state\": \"paused\"}"));
}

/* A PUT without a body still says Content-Length: 0, so the server need not wait for one. */
static void test_put_without_body(void **state)
{
	struct fake *f = *state;
	struct http_response r;
	uint64_t ms;
	assert_int_equal(request(f, GOOD, "PUT", NULL, 5000, &r, &ms), 0);
	free(r.body);
	assert_non_null(strcasestr(f->request, "Content-Length: 0\r\n"));
}

/* "Content-Length: 100000000" and silence: refused at once for its size, not after the timeout. */
static void test_huge_announced_body(void **state)
{
	struct fake *f = *state;
	struct http_response r;
	uint64_t ms;
	assert_int_equal(request(f, HUGE_LENGTH, "GET", NULL, 4000, &r, &ms), -EFBIG);
	assert_true(ms < 2000);
}

static void test_endless_body(void **state)
{
	struct fake *f = *state;
	struct http_response r;
	uint64_t ms;
	assert_int_equal(request(f, ENDLESS, "GET", NULL, 20000, &r, &ms), -EFBIG);
	assert_true(ms < 15000);
}

static void test_stalled_body_times_out(void **state)
{
	struct fake *f = *state;
	struct http_response r;
	uint64_t ms;
	assert_int_equal(request(f, STALL, "GET", NULL, 700, &r, &ms), -ETIMEDOUT);
	assert_true(ms >= 600 && ms < 3000);
}

static void test_not_http_and_cut_short(void **state)
{
	struct fake *f = *state;
	struct http_response r;
	uint64_t ms;
	assert_int_equal(request(f, NOT_HTTP, "GET", NULL, 3000, &r, &ms), -EPROTO);
	pthread_join(f->thread, NULL);
	assert_int_equal(request(f, CUT_SHORT, "GET", NULL, 3000, &r, &ms), -EPROTO);
}

/* A regular file where the socket should be, and no file at all. */
static void test_not_a_socket_and_missing(void **state)
{
	struct fake *f = *state;
	char file[160];
	snprintf(file, sizeof(file), "%s/disk.img", f->dir);
	FILE *fp = fopen(file, "w");
	assert_non_null(fp);
	fclose(fp);
	struct http_response r;
	assert_int_equal(http_unix_request(file, "GET", "/vm", NULL, 2000, &r), -ECONNREFUSED);
	snprintf(file, sizeof(file), "%s/none.sock", f->dir);
	assert_int_equal(http_unix_request(file, "GET", "/vm", NULL, 2000, &r), -ENOENT);
	f->how = GOOD;
	assert_int_equal(pthread_create(&f->thread, NULL, serve, f), 0); /* for teardown to join */
	assert_int_equal(http_unix_request(f->sock, "GET", "/vm", NULL, 2000, &r), 0);
	free(r.body);
}

static char *escaped(const char *s, size_t len, int keep_lines)
{
	char *out = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&out, &n);
	http_write_escaped(f, s, len, keep_lines);
	fclose(f);
	return out;
}

static void test_escaping(void **state)
{
	(void)state;
	struct {
		const char *in;
		int keep_lines;
		const char *out;
	} cases[] = {
		{ "plain text", 0, "plain text" },
		{ "\x1b[2J\x1b]0;owned\x07", 0, "\\x1b[2J\\x1b]0;owned\\x07" },
		{ "a\nb\tc\r", 1, "a\nb\tc\\x0d" },
		{ "a\nb", 0, "a\\x0ab" },
		{ "caf\xc3\xa9 \xe2\x82\xac", 0, "caf\xc3\xa9 \xe2\x82\xac" }, /* UTF-8 text stays */
		{ "\xc2\x9b" "31m \x9b \xff \x7f", 0, "\\xc2\\x9b31m \\x9b \\xff \\x7f" }, /* C1 CSI, stray bytes, DEL */
		{ "\xe2\x82", 0, "\\xe2\\x82" }, /* a sequence cut short */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = escaped(cases[i].in, strlen(cases[i].in), cases[i].keep_lines);
		assert_string_equal(out, cases[i].out);
		free(out);
	}
	char *out = escaped("a\0b", 3, 0); /* a NUL inside the length */
	assert_string_equal(out, "a\\x00b");
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_good_reply_and_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_without_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_huge_announced_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_endless_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stalled_body_times_out, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_http_and_cut_short, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_socket_and_missing, setup, teardown),
		cmocka_unit_test(test_escaping),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
