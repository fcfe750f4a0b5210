/*
 * The migration connection: addresses parsed and refused as a user would type them; a source and
 * a destination on loopback (IPv4, IPv6, plain and mutual TLS) carrying a real migration stream
 * with byte counts; and every failure a user meets (port in use, nothing listening, a stalled
 * peer, a peer that is not vmon, a cancel, certificates that do not fit, another stream format,
 * a destination that refuses the guest) ending promptly with a sentence that says what happened.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/util.h"
#include "memory/guest_mem.h"
#include "migration/handshake.h"
#include "migration/migration_address.h"
#include "migration/stream.h"
#include "migration/stream_wire.h"
#include "migration/transport.h"
#include "mig_test_reader.h"

#include "tls_test_certs.h"

#define RAM (4 * MiB)
#define PAGE 4096u

static char dir[64]; /* certificates */

/* ---- addresses ---- */

static void parses(const char *text, const char *host, uint16_t port, bool ipv6)
{
	struct mig_address a;
	char err[512] = "";
	assert_int_equal(mig_address_parse(text, &a, err, sizeof(err)), 0);
	assert_string_equal(a.host, host);
	assert_int_equal(a.port, port);
	assert_int_equal(a.ipv6, ipv6);
}

static void refuses(const char *text, const char *why)
{
	struct mig_address a;
	char err[512] = "";
	assert_int_equal(mig_address_parse(text, &a, err, sizeof(err)), -EINVAL);
	if (!strstr(err, why))
		fail_msg("\"%s\": \"%s\" does not say \"%s\"", text, err, why);
}

static void test_addresses_parse_and_bad_forms_say_what_is_wrong(void **state)
{
	(void)state;
	parses("tcp:127.0.0.1:4444", "127.0.0.1", 4444, false);
	parses("tcp:[::1]:4444", "::1", 4444, true);
	parses("tcp:[::]:1", "::", 1, true);
	parses("tcp:dest-host.example:65535", "dest-host.example", 65535, false);
	struct mig_address a;
	char err[512];
	assert_int_equal(mig_address_parse("tcp:h:1,tls-cert=/c.pem,tls-key=/c.key,tls-ca=/ca.pem,tls-hostname=n", &a,
					   err, sizeof(err)), 0);
	assert_string_equal(a.tls.cert, "/c.pem");
	assert_string_equal(a.tls.key, "/c.key");
	assert_string_equal(a.tls.ca, "/ca.pem");
	assert_string_equal(a.tls.hostname, "n");
	assert_true(mig_address_has_tls(&a));
	char s[64];
	assert_int_equal(mig_address_parse("tcp:[::1]:9", &a, err, sizeof(err)), 0);
	assert_string_equal(mig_address_str(&a, s, sizeof(s)), "tcp:[::1]:9");

	refuses("tcp:127.0.0.1", "the port is missing");
	refuses("tcp:127.0.0.1:", "the port is missing");
	refuses("tcp:127.0.0.1:0", "port 0 is not a TCP port");
	refuses("tcp:127.0.0.1:65536", "port 65536 is not a TCP port");
	refuses("tcp:127.0.0.1:99999999999999999999", "is not a TCP port");
	refuses("tcp:127.0.0.1:44x", "the port is not a number");
	refuses("tcp:127.0.0.1:-1", "the port is not a number");
	refuses("udp:127.0.0.1:4444", "unknown scheme \"udp\"");
	refuses("127.0.0.1", "there is no scheme");
	refuses("tcp::4444", "the host is empty");
	refuses("tcp:[]:4444", "the host is empty");
	refuses("tcp:::1:4444", "an IPv6 address goes in brackets");
	refuses("tcp:[::1:4444", "no closing ']'");
	refuses("tcp:[::1]4444", "the port is missing after the ']'");
	refuses("tcp:[nothost]:4444", "not an IPv6 address");
	refuses("tcp:a b:4444", "characters no host name");
	refuses("tcp:h:1,tls-cert=/c", "TLS needs all of");
	refuses("tcp:h:1,tls-cert=/c,tls-key=/k,tls-ca=/a,tls-ca=/b", "tls-ca is given twice");
	refuses("tcp:h:1,tls-cert=", "tls-cert= needs a value");
	refuses("tcp:h:1,speed=9", "unknown option \"speed\"");
	refuses("tcp:h:1,tls-hostname=x", "tls-hostname= is for TLS");
}

/* ---- helpers ---- */

static uint16_t free_port(int family)
{
	int fd = socket(family, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_storage ss = { .ss_family = (sa_family_t)family };
	socklen_t len = family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	if (family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else
		((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;
	assert_int_equal(bind(fd, (struct sockaddr *)&ss, len), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	close(fd);
	return ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
}

/* "tcp:HOST:PORT" plus the TLS options of certificate NAME (and CA), if name is not NULL. */
static void address(struct mig_address *a, const char *host, uint16_t port, const char *name, const char *ca)
{
	char text[1024], err[512];
	int n = snprintf(text, sizeof(text), "tcp:%s:%u", host, port);
	if (name)
		snprintf(text + n, sizeof(text) - (size_t)n, ",tls-cert=%s/%s.pem,tls-key=%s/%s.key,tls-ca=%s/%s.pem", dir,
			 name, dir, name, dir, ca);
	assert_int_equal(mig_address_parse(text, a, err, sizeof(err)), 0);
}

static const struct mig_config config = {
	.ram_size = RAM,
	.cpus = 1,
	.cpu = { .vendor = "GenuineIntel", .signature = 0x906ea },
};

static void fill(struct guest_mem *mem)
{
	uint8_t *p = gpa_to_host_write(mem, 0, RAM);
	assert_non_null(p);
	for (size_t i = 0; i < RAM; i++)
		p[i] = (uint8_t)(i * 7 + (i >> 12) + 1);
}

/* The whole of src as one round, a small state, the end. */
static int send_stream(struct mig_conn *c, struct guest_mem *src, char *err, size_t errlen)
{
	struct mig_io io = mig_conn_io(c);
	struct mig_writer w;
	struct snap_writer sw;
	uint8_t *state = NULL;
	size_t len = 0;
	snap_writer_init(&sw);
	assert_int_equal(snap_writer_add(&sw, "config", "{}", 2), 0);
	assert_int_equal(snap_writer_build(&sw, 1, &config.cpu, &state, &len), 0);
	snap_writer_free(&sw);
	int rc = mig_writer_start_io(&w, &io, "0.1.0+gtest", &config, err, errlen);
	if (!rc)
		rc = mig_writer_pages(&w, src, 0, RAM / PAGE, err, errlen);
	if (!rc)
		rc = mig_writer_round(&w, err, errlen);
	if (!rc)
		rc = mig_writer_state(&w, state, len, err, errlen);
	if (!rc)
		rc = mig_writer_end(&w, err, errlen);
	mig_writer_free(&w);
	free(state);
	return rc;
}

static int receive_stream(struct mig_conn *c, struct guest_mem *dst, char *err, size_t errlen)
{
	struct mig_io io = mig_conn_io(c);
	struct mig_reader r;
	int rc = mig_reader_open_io(&r, &io, err, errlen);
	if (!rc)
		rc = mig_reader_set_memory(&r, dst, err, errlen);
	if (!rc)
		rc = mig_test_read_to_end(&r, err, errlen);
	mig_reader_free(&r);
	return rc;
}

/* The destination, on its own thread: accept, handshake, and the stream when mem is given. */
struct dst {
	struct mig_listener *l;
	struct mig_conn_opts opts;
	struct mig_hello hello;
	int wait_ms;
	struct guest_mem *mem;
	int rc;
	char err[512];
	uint64_t received, sent;
	struct mig_peer peer;
	pthread_t thread;
};

static void *dst_main(void *arg)
{
	struct dst *d = arg;
	struct mig_conn *c = NULL;
	d->rc = mig_listener_accept(d->l, d->wait_ms, &d->opts, &c, d->err, sizeof(d->err));
	if (!d->rc)
		d->rc = mig_handshake(c, &d->hello, &d->peer, d->err, sizeof(d->err));
	if (!d->rc && d->mem)
		d->rc = receive_stream(c, d->mem, d->err, sizeof(d->err));
	if (c) {
		d->received = mig_conn_bytes_received(c);
		d->sent = mig_conn_bytes_sent(c);
	}
	mig_conn_close(c);
	return NULL;
}

static void dst_start(struct dst *d, const struct mig_address *a)
{
	char err[512] = "";
	if (!d->hello.vmon_version)
		d->hello.vmon_version = "0.1.0+gdst";
	if (!d->wait_ms)
		d->wait_ms = 5000;
	int rc = mig_listener_open(&d->l, a, err, sizeof(err));
	if (rc)
		fail_msg("listen: %s", err);
	assert_int_equal(pthread_create(&d->thread, NULL, dst_main, d), 0);
}

static void dst_join(struct dst *d)
{
	pthread_join(d->thread, NULL);
	mig_listener_close(d->l);
}

static const struct mig_hello src_hello = { .vmon_version = "0.1.0+gsrc", .compat = "blob", .compat_len = 4 };

/* Connects to a, runs the handshake and, when mem is given, sends it as a stream. */
static int src_run(const struct mig_address *a, const struct mig_conn_opts *o, const struct mig_hello *h,
		   struct guest_mem *mem, uint64_t *sent, char *err, size_t errlen)
{
	struct mig_conn *c;
	int rc = mig_conn_connect(&c, a, o, err, errlen);
	if (rc)
		return rc;
	rc = mig_handshake(c, h ? h : &src_hello, NULL, err, errlen);
	if (!rc && mem)
		rc = send_stream(c, mem, err, errlen);
	if (sent)
		*sent = mig_conn_bytes_sent(c);
	mig_conn_close(c);
	return rc;
}

static void assert_says(const char *err, const char *what)
{
	if (!strstr(err, what))
		fail_msg("\"%s\" does not say \"%s\"", err, what);
}

/* A whole migration stream from a source to a destination at host, and what each side counted. */
static void round_trip(const char *host, int family, const char *cert_dst, const char *cert_src)
{
	struct guest_mem src, dst_mem;
	assert_int_equal(guest_mem_init(&src, RAM), 0);
	assert_int_equal(guest_mem_init(&dst_mem, RAM), 0);
	fill(&src);
	uint16_t port = free_port(family);
	struct mig_address la, ca;
	address(&la, host, port, cert_dst, "ca");
	address(&ca, host, port, cert_src, "ca");
	struct dst d = { .mem = &dst_mem };
	dst_start(&d, &la);
	char err[512] = "";
	uint64_t sent = 0;
	int rc = src_run(&ca, NULL, NULL, &src, &sent, err, sizeof(err));
	dst_join(&d);
	if (rc || d.rc)
		fail_msg("source: %s / destination: %s", err, d.err);
	assert_memory_equal(gpa_to_host(&src, 0, RAM), gpa_to_host(&dst_mem, 0, RAM), RAM);
	/* What the source sent is what arrived: the handshake, then 4 MiB of pages and their framing. */
	assert_true(sent > RAM && sent < RAM + 64 * KiB);
	assert_true(d.received == sent);
	assert_string_equal(d.peer.vmon_version, "0.1.0+gsrc");
	guest_mem_destroy(&src);
	guest_mem_destroy(&dst_mem);
}

static void test_a_stream_crosses_ipv4_loopback_with_byte_counts(void **state)
{
	(void)state;
	round_trip("127.0.0.1", AF_INET, NULL, NULL);
}

static void test_a_stream_crosses_ipv6_loopback(void **state)
{
	(void)state;
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&s6, sizeof(s6)) == 0;
	if (fd >= 0)
		close(fd);
	if (!ok)
		skip(); /* no IPv6 loopback on this host */
	round_trip("[::1]", AF_INET6, NULL, NULL);
}

static void test_a_stream_crosses_mutual_tls(void **state)
{
	(void)state;
	round_trip("127.0.0.1", AF_INET, "server", "client");
}

static void test_a_port_in_use_is_named_with_another_to_try(void **state)
{
	(void)state;
	struct mig_address a;
	address(&a, "127.0.0.1", free_port(AF_INET), NULL, NULL);
	struct mig_listener *l1, *l2;
	char err[512] = "";
	assert_int_equal(mig_listener_open(&l1, &a, err, sizeof(err)), 0);
	assert_int_equal(mig_listener_port(l1), a.port);
	assert_int_equal(mig_listener_open(&l2, &a, err, sizeof(err)), -EADDRINUSE);
	char where[64], other[64];
	snprintf(where, sizeof(where), "tcp:127.0.0.1:%u", a.port);
	snprintf(other, sizeof(other), "choose another port, e.g. tcp:127.0.0.1:%u", a.port + 1);
	assert_says(err, where);
	assert_says(err, "the port is in use");
	assert_says(err, other);
	mig_listener_close(l1);
}

static void test_nothing_listening_is_a_refused_connection(void **state)
{
	(void)state;
	struct mig_address a;
	address(&a, "127.0.0.1", free_port(AF_INET), NULL, NULL);
	struct mig_conn *c;
	char err[512] = "";
	assert_int_equal(mig_conn_connect(&c, &a, NULL, err, sizeof(err)), -ECONNREFUSED);
	assert_says(err, "refused the connection");
	assert_says(err, "vmon receive");
}

static void test_a_host_name_that_does_not_resolve_is_named(void **state)
{
	(void)state;
	struct mig_address a;
	address(&a, "no-such-host.invalid", 4444, NULL, NULL);
	struct mig_conn *c;
	char err[512] = "";
	assert_true(mig_conn_connect(&c, &a, NULL, err, sizeof(err)) < 0);
	assert_says(err, "no-such-host.invalid");
}

/* A TCP listener that is not vmon: it accepts, then does what `answer` says. */
struct fake {
	int lfd;
	uint16_t port;
	const char *answer; /* NULL: stays silent; "": closes at once; else writes it and closes */
	int hold_ms;        /* how long it stays silent */
	pthread_t thread;
};

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	int fd = accept(f->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	if (f->answer && *f->answer) {
		char buf[256];
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 2000) == 1 && read(fd, buf, sizeof(buf)) > 0) /* the request, then the answer */
			assert_true(write(fd, f->answer, strlen(f->answer)) > 0);
	} else if (!f->answer) {
		poll(NULL, 0, f->hold_ms);
	}
	close(fd);
	return NULL;
}

static void fake_start(struct fake *f)
{
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in s = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(s);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&s, len), 0);
	assert_int_equal(listen(f->lfd, 1), 0);
	assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&s, &len), 0);
	f->port = ntohs(s.sin_port);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_join(struct fake *f)
{
	pthread_join(f->thread, NULL);
	close(f->lfd);
}

static void test_a_stalled_destination_hits_the_deadline_in_time(void **state)
{
	(void)state;
	struct fake f = { .answer = NULL, .hold_ms = 3000 };
	fake_start(&f);
	struct mig_address a;
	address(&a, "127.0.0.1", f.port, NULL, NULL);
	struct mig_conn_opts o = { .timeout_ms = 300 };
	char err[512] = "";
	uint64_t t0 = monotonic_ns();
	assert_int_equal(src_run(&a, &o, NULL, NULL, NULL, err, sizeof(err)), -ETIMEDOUT);
	uint64_t ms = (monotonic_ns() - t0) / 1000000;
	assert_true(ms >= 290 && ms < 1500);
	assert_says(err, "did not respond for 300 ms");
	fake_join(&f);
}

struct canceller {
	struct mig_cancel *cancel;
	int after_ms;
};

static void *cancel_main(void *arg)
{
	struct canceller *k = arg;
	poll(NULL, 0, k->after_ms);
	mig_cancel_fire(k->cancel);
	return NULL;
}

static void test_a_cancel_from_another_thread_stops_a_wait_at_once(void **state)
{
	(void)state;
	struct fake f = { .answer = NULL, .hold_ms = 3000 };
	fake_start(&f);
	struct mig_address a;
	address(&a, "127.0.0.1", f.port, NULL, NULL);
	struct mig_cancel cancel;
	assert_int_equal(mig_cancel_init(&cancel), 0);
	struct mig_conn_opts o = { .timeout_ms = 10000, .cancel = &cancel };
	struct canceller k = { &cancel, 100 };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, cancel_main, &k), 0);
	char err[512] = "";
	uint64_t t0 = monotonic_ns();
	assert_int_equal(src_run(&a, &o, NULL, NULL, NULL, err, sizeof(err)), -ECANCELED);
	uint64_t ms = (monotonic_ns() - t0) / 1000000;
	assert_true(ms >= 90 && ms < 1000); /* against a 10 s deadline */
	assert_says(err, "cancelled");
	pthread_join(t, NULL);
	/* A later step on a cancelled migration does not start. */
	assert_int_equal(src_run(&a, &o, NULL, NULL, NULL, err, sizeof(err)), -ECANCELED);
	mig_cancel_destroy(&cancel);
	fake_join(&f);
}

static void test_a_cancel_stops_a_destination_waiting_for_its_source(void **state)
{
	(void)state;
	struct mig_address a;
	address(&a, "127.0.0.1", free_port(AF_INET), NULL, NULL);
	struct mig_cancel cancel;
	assert_int_equal(mig_cancel_init(&cancel), 0);
	struct dst d = { .opts = { .cancel = &cancel }, .wait_ms = -1 };
	uint64_t t0 = monotonic_ns();
	dst_start(&d, &a);
	mig_cancel_fire(&cancel);
	dst_join(&d);
	assert_true((monotonic_ns() - t0) / 1000000 < 1000); /* it would wait forever */
	assert_int_equal(d.rc, -ECANCELED);
	mig_cancel_destroy(&cancel);
}

/* A source at a fake destination that answers `answer` is refused with a sentence saying `says`. */
static void assert_not_vmon(const char *answer, const char *says)
{
	struct fake f = { .answer = answer };
	fake_start(&f);
	struct mig_address a;
	address(&a, "127.0.0.1", f.port, NULL, NULL);
	char err[512] = "";
	assert_int_equal(src_run(&a, NULL, NULL, NULL, NULL, err, sizeof(err)), -EPROTO);
	assert_says(err, says);
	fake_join(&f);
}

static void test_a_destination_without_a_source_gives_up_at_its_deadline(void **state)
{
	(void)state;
	struct mig_address a;
	address(&a, "127.0.0.1", free_port(AF_INET), NULL, NULL);
	struct dst d = { .wait_ms = 200 };
	dst_start(&d, &a);
	dst_join(&d);
	assert_int_equal(d.rc, -ETIMEDOUT);
	assert_says(d.err, "no source connected to tcp:127.0.0.1:");
	assert_says(d.err, "within 200 ms");
}

static void test_a_destination_that_closes_the_connection_is_not_vmon(void **state)
{
	(void)state;
	assert_not_vmon("", "closed the connection without answering: it is not a vmon receiving a migration");
}

static void test_an_http_server_is_not_vmon(void **state)
{
	(void)state;
	assert_not_vmon("HTTP/1.1 400 Bad Request\r\n\r\n", "is not vmon: it answered \"HTTP/1.1");
}

/* A raw client of a destination: connects, sends bytes, reads what comes back until it closes. */
static size_t raw_client(uint16_t port, const void *send_bytes, size_t len, uint8_t *reply, size_t max)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in s = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(connect(fd, (struct sockaddr *)&s, sizeof(s)), 0);
	assert_int_equal(write(fd, send_bytes, len), (ssize_t)len);
	size_t got = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	while (got < max && poll(&p, 1, 2000) == 1) {
		ssize_t n = read(fd, reply + got, max - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	return got;
}

static void test_a_destination_refuses_a_client_that_is_not_vmon(void **state)
{
	(void)state;
	struct mig_address a;
	address(&a, "127.0.0.1", free_port(AF_INET), NULL, NULL);
	struct dst d = { 0 };
	dst_start(&d, &a);
	static const char get[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	uint8_t reply[64];
	raw_client(a.port, get, sizeof(get) - 1, reply, sizeof(reply));
	dst_join(&d);
	assert_int_equal(d.rc, -EPROTO);
	assert_says(d.err, "is not vmon: it sent \"GET / HT");
}

/* A preamble of format version and a hello record of role, as another vmon would send them. */
static size_t hello_bytes(uint8_t *buf, uint32_t version, uint32_t role)
{
	struct mig_preamble p = { .version = version };
	memcpy(p.magic, MIG_MAGIC, 8);
	struct mig_rec_hello h = { .role = role };
	strcpy(h.vmon_version, "9.0.0");
	struct mig_rec_hdr rh = mig_rec_hdr_make(MIG_REC_HELLO, sizeof(h), mig_crc(0, &h, sizeof(h)));
	memcpy(buf, &p, sizeof(p));
	memcpy(buf + sizeof(p), &rh, sizeof(rh));
	memcpy(buf + sizeof(p) + sizeof(rh), &h, sizeof(h));
	return sizeof(p) + sizeof(rh) + sizeof(h);
}

static void test_another_stream_format_is_refused_and_the_reason_travels_back(void **state)
{
	(void)state;
	struct mig_address a;
	address(&a, "127.0.0.1", free_port(AF_INET), NULL, NULL);
	struct dst d = { 0 };
	dst_start(&d, &a);
	uint8_t hello[128], reply[2048];
	size_t n = raw_client(a.port, hello, hello_bytes(hello, 2, MIG_ROLE_SOURCE), reply, sizeof(reply));
	dst_join(&d);
	assert_int_equal(d.rc, -EPROTO);
	assert_says(d.err, "this vmon refused the source");
	assert_says(d.err, "format 2");
	/* The destination's answer: its preamble, its hello, and a verdict that says why. */
	size_t verdict_at = sizeof(struct mig_preamble) + sizeof(struct mig_rec_hdr) + sizeof(struct mig_rec_hello) +
			    sizeof(struct mig_rec_hdr);
	assert_true(n == verdict_at + sizeof(struct mig_rec_verdict));
	struct mig_rec_verdict v;
	memcpy(&v, reply + verdict_at, sizeof(v));
	assert_int_equal(v.accept, 0);
	assert_says(v.reason, "the source (vmon 9.0.0) format 2");
}

static void test_a_source_refuses_a_destination_of_another_format(void **state)
{
	(void)state;
	uint8_t hello[128];
	size_t n = hello_bytes(hello, 2, MIG_ROLE_DESTINATION);
	struct mig_rec_verdict v = { .accept = 1 };
	struct mig_rec_hdr rh = mig_rec_hdr_make(MIG_REC_VERDICT, sizeof(v), mig_crc(0, &v, sizeof(v)));
	char answer[sizeof(hello) + sizeof(rh) + sizeof(v) + 1] = { 0 };
	memcpy(answer, hello, n);
	memcpy(answer + n, &rh, sizeof(rh));
	memcpy(answer + n + sizeof(rh), &v, sizeof(v));
	/* The fake answers with write(strlen): nothing in it may be NUL, so it is sent whole by a socket instead. */
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[1], answer, n + sizeof(rh) + sizeof(v)), (ssize_t)(n + sizeof(rh) + sizeof(v)));
	struct mig_conn *c;
	assert_int_equal(mig_conn_wrap(&c, sv[0], "tcp:peer:1", true, NULL), 0);
	char err[512] = "";
	assert_int_equal(mig_handshake(c, &src_hello, NULL, err, sizeof(err)), -EPROTO);
	assert_says(err, "this vmon refused the destination at tcp:peer:1 (vmon 9.0.0)");
	assert_says(err, "format 2");
	mig_conn_close(c);
	close(sv[1]);
}

/* The destination's caller refuses: the host lacks memory for the guest the blob describes. */
static int refuse_guest(void *opaque, const struct mig_peer *peer, char *reason, size_t len)
{
	int *calls = opaque;
	(*calls)++;
	assert_int_equal(peer->compat_len, 4);
	assert_memory_equal(peer->compat, "blob", 4);
	assert_string_equal(peer->vmon_version, "0.1.0+gsrc");
	snprintf(reason, len, "this host has 2 GiB free and the guest needs 8 GiB");
	return -1;
}

static void test_a_refusal_of_the_destinations_caller_is_shown_on_the_source(void **state)
{
	(void)state;
	int calls = 0;
	struct mig_address a;
	address(&a, "127.0.0.1", free_port(AF_INET), NULL, NULL);
	struct dst d = { .hello = { .check = refuse_guest, .opaque = &calls } };
	dst_start(&d, &a);
	char err[512] = "";
	int rc = src_run(&a, NULL, NULL, NULL, NULL, err, sizeof(err));
	dst_join(&d);
	assert_int_equal(calls, 1);
	assert_int_equal(rc, -EPERM);
	assert_says(err, "(vmon 0.1.0+gdst) refused the migration: this host has 2 GiB free and the guest needs 8 GiB");
	assert_int_equal(d.rc, -EPERM);
	assert_says(d.err, "this vmon refused the source");
}

static int refuse_destination(void *opaque, const struct mig_peer *peer, char *reason, size_t len)
{
	(void)opaque;
	snprintf(reason, len, "the destination runs vmon %s, older than this guest allows", peer->vmon_version);
	return -1;
}

static void test_a_refusal_of_the_sources_caller_is_shown_on_the_destination(void **state)
{
	(void)state;
	struct mig_address a;
	address(&a, "127.0.0.1", free_port(AF_INET), NULL, NULL);
	struct dst d = { 0 };
	dst_start(&d, &a);
	struct mig_hello h = src_hello;
	h.check = refuse_destination;
	char err[512] = "";
	assert_int_equal(src_run(&a, NULL, &h, NULL, NULL, err, sizeof(err)), -EPERM);
	dst_join(&d);
	assert_says(err, "this vmon refused the destination");
	assert_int_equal(d.rc, -EPERM);
	assert_says(d.err, "refused the destination: the destination runs vmon 0.1.0+gdst, older than this guest allows");
}

/* ---- the outcome: after the stream, the destination says whether the guest runs there ---- */

static int outcome_over_a_pair(const char *refusal, bool close_instead, char *err, size_t errlen)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct mig_conn *src, *dst;
	assert_int_equal(mig_conn_wrap(&src, sv[0], "tcp:dest:1", true, NULL), 0);
	assert_int_equal(mig_conn_wrap(&dst, sv[1], "src:2", false, NULL), 0);
	char derr[256] = "";
	if (close_instead)
		mig_conn_close(dst);
	else
		assert_int_equal(mig_outcome_send(dst, refusal, derr, sizeof(derr)), 0);
	int rc = mig_outcome_wait(src, err, errlen);
	if (!close_instead)
		mig_conn_close(dst);
	mig_conn_close(src);
	return rc;
}

static void test_the_destination_says_the_guest_runs_or_why_not(void **state)
{
	(void)state;
	char err[512] = "";
	assert_int_equal(outcome_over_a_pair(NULL, false, err, sizeof(err)), 0);
	assert_int_equal(outcome_over_a_pair("KVM refused vCPU 1's registers", false, err, sizeof(err)), -EPERM);
	assert_says(err, "could not start the guest: KVM refused vCPU 1's registers");
	/* A destination that died after the stream: the source must not think the guest moved. */
	assert_int_equal(outcome_over_a_pair(NULL, true, err, sizeof(err)), -EPIPE);
	assert_says(err, "the guest keeps running here");
}

/* ---- TLS ---- */

static void tls_pair(const char *dst_cert, const char *src_cert, const char *src_ca, const char *host, int *src_rc,
		     char *src_err, struct dst *d)
{
	uint16_t port = free_port(AF_INET);
	struct mig_address la, ca;
	address(&la, "127.0.0.1", port, dst_cert, "ca");
	address(&ca, host, port, src_cert, src_ca);
	d->wait_ms = 3000;
	dst_start(d, &la);
	*src_rc = src_run(&ca, NULL, NULL, NULL, NULL, src_err, 512);
	dst_join(d);
}

static void test_tls_refuses_a_certificate_of_another_ca(void **state)
{
	(void)state;
	struct dst d = { 0 };
	int rc;
	char err[512] = "";
	tls_pair("server", "rogue", "ca2", "127.0.0.1", &rc, err, &d);
	/* The source trusts ca2 only, so it refuses the destination's certificate, and the destination the source's. */
	assert_int_equal(rc, -EACCES);
	assert_says(err, "the destination at tcp:127.0.0.1");
	assert_says(err, "is not signed by the CA in tls-ca=");
	assert_true(d.rc < 0);
}

static void test_tls_destination_refuses_a_source_of_another_ca(void **state)
{
	(void)state;
	struct dst d = { 0 };
	int rc;
	char err[512] = "";
	/* This source trusts the destination's CA too, but its own certificate comes from ca2. */
	tls_pair("server", "rogue", "both", "127.0.0.1", &rc, err, &d);
	assert_int_equal(d.rc, -EACCES);
	/* GnuTLS leaves out a client certificate of a CA the server does not name. */
	assert_says(d.err, "the source at 127.0.0.1:");
	assert_says(d.err, "presented no certificate signed by the CA in tls-ca=");
	assert_says(err, "refused this vmon's certificate");
	assert_int_equal(rc, -EACCES);
}

static void test_tls_source_checks_the_destinations_host_name(void **state)
{
	(void)state;
	struct dst d = { 0 };
	int rc;
	char err[512] = "";
	tls_pair("elsewhere", "client", "ca", "127.0.0.1", &rc, err, &d);
	assert_int_equal(rc, -EACCES);
	assert_says(err, "is not made out to 127.0.0.1");
	assert_says(err, "tls-hostname=");
}

static void test_tls_own_certificate_problems_are_named_before_connecting(void **state)
{
	(void)state;
	struct mig_address a;
	struct mig_conn *c;
	struct mig_listener *l;
	char err[512] = "", text[1024];
	address(&a, "127.0.0.1", free_port(AF_INET), "expired", "ca");
	assert_int_equal(mig_conn_connect(&c, &a, NULL, err, sizeof(err)), -EINVAL);
	assert_says(err, "expired.pem expired on");
	snprintf(text, sizeof(text), "tcp:127.0.0.1:1,tls-cert=%s/server.pem,tls-key=%s/client.key,tls-ca=%s/ca.pem", dir,
		 dir, dir);
	assert_int_equal(mig_address_parse(text, &a, err, sizeof(err)), 0);
	assert_int_equal(mig_listener_open(&l, &a, err, sizeof(err)), -EINVAL);
	assert_says(err, "client.key does not match tls-cert=");
	address(&a, "127.0.0.1", 1, "rogue", "ca");
	assert_int_equal(mig_listener_open(&l, &a, err, sizeof(err)), -EINVAL);
	assert_says(err, "rogue.pem is not signed by the CA in tls-ca=");
	snprintf(text, sizeof(text), "tcp:127.0.0.1:1,tls-cert=%s/none.pem,tls-key=%s/client.key,tls-ca=%s/ca.pem", dir,
		 dir, dir);
	assert_int_equal(mig_address_parse(text, &a, err, sizeof(err)), 0);
	assert_int_equal(mig_listener_open(&l, &a, err, sizeof(err)), -ENOENT);
	assert_says(err, "cannot read tls-cert=");
}

static void test_tls_listener_refuses_plain_tcp_and_says_so_on_both_sides(void **state)
{
	(void)state;
	struct dst d = { 0 };
	int rc;
	char err[512] = "";
	tls_pair("server", NULL, NULL, "127.0.0.1", &rc, err, &d);
	assert_int_equal(d.rc, -EPROTO);
	assert_says(d.err, "speaks plain TCP to this listener, which requires TLS");
	assert_int_equal(rc, -EPERM);
	assert_says(err, "accepts TLS connections only");
}

static void test_a_tls_source_at_a_plain_listener_is_told_so(void **state)
{
	(void)state;
	struct dst d = { 0 };
	int rc;
	char err[512] = "";
	tls_pair(NULL, "client", "ca", "127.0.0.1", &rc, err, &d);
	assert_int_equal(d.rc, -EPROTO);
	assert_says(d.err, "speaks TLS, and this side has no certificates");
	assert_int_equal(rc, -EPROTO);
	assert_says(err, "answered without TLS");
}

/* A TLS client with the CA but no certificate of its own, as a stranger would connect. */
static void *anonymous_client(void *arg)
{
	uint16_t port = *(uint16_t *)arg;
	char ca[256];
	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	gnutls_certificate_credentials_t cred;
	gnutls_session_t s;
	gnutls_certificate_allocate_credentials(&cred);
	gnutls_certificate_set_x509_trust_file(cred, ca, GNUTLS_X509_FMT_PEM);
	gnutls_init(&s, GNUTLS_CLIENT);
	gnutls_set_default_priority(s);
	gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		gnutls_transport_set_int(s, fd);
		gnutls_handshake_set_timeout(s, 3000);
		if (gnutls_handshake(s) == 0) {
			char b[16];
			gnutls_record_recv(s, b, sizeof(b)); /* the server's refusal arrives here in TLS 1.3 */
		}
	}
	close(fd);
	gnutls_deinit(s);
	gnutls_certificate_free_credentials(cred);
	return NULL;
}

static void test_tls_refuses_a_peer_without_a_certificate(void **state)
{
	(void)state;
	struct mig_address a;
	address(&a, "127.0.0.1", free_port(AF_INET), "server", "ca");
	struct dst d = { .wait_ms = 3000 };
	dst_start(&d, &a);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, anonymous_client, &a.port), 0);
	pthread_join(t, NULL);
	dst_join(&d);
	assert_int_equal(d.rc, -EACCES);
	assert_says(d.err, "presented no certificate signed by the CA");
}

/* ---- set-up ---- */

static int make_certs(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/vmon-migtls-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	static const struct test_cert_spec ca_s = { "vmon test CA", true, NULL, false, -3600, 86400 },
					   ca2_s = { "another CA", true, NULL, false, -3600, 86400 },
					   server_s = { "dest", false, "localhost", true, -3600, 86400 },
					   client_s = { "source", false, NULL, false, -3600, 86400 },
					   elsewhere_s = { "elsewhere", false, "other.example", false, -3600, 86400 },
					   expired_s = { "old", false, NULL, true, -2 * 86400, -86400 };
	struct test_cert ca, ca2, server, client, rogue, elsewhere, expired;
	bool ok = test_cert_make(&ca, &ca_s, NULL) && test_cert_make(&ca2, &ca2_s, NULL) &&
		  test_cert_make(&server, &server_s, &ca) && test_cert_make(&client, &client_s, &ca) &&
		  test_cert_make(&rogue, &server_s, &ca2) && test_cert_make(&elsewhere, &elsewhere_s, &ca) &&
		  test_cert_make(&expired, &expired_s, &ca);
	ok = ok && test_cert_save(&ca, dir, "ca") && test_cert_save(&ca2, dir, "ca2") &&
	     test_cert_save(&server, dir, "server") && test_cert_save(&client, dir, "client") &&
	     test_cert_save(&rogue, dir, "rogue") && test_cert_save(&elsewhere, dir, "elsewhere") &&
	     test_cert_save(&expired, dir, "expired");
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "cat %s/ca.pem %s/ca2.pem >%s/both.pem", dir, dir, dir);
	ok = ok && system(cmd) == 0;
	struct test_cert *all[] = { &ca, &ca2, &server, &client, &rogue, &elsewhere, &expired };
	for (size_t i = 0; i < ARRAY_SIZE(all); i++)
		test_cert_free(all[i]);
	return ok ? 0 : -1;
}

static int remove_certs(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addresses_parse_and_bad_forms_say_what_is_wrong),
		cmocka_unit_test(test_a_stream_crosses_ipv4_loopback_with_byte_counts),
		cmocka_unit_test(test_a_stream_crosses_ipv6_loopback),
		cmocka_unit_test(test_a_stream_crosses_mutual_tls),
		cmocka_unit_test(test_a_port_in_use_is_named_with_another_to_try),
		cmocka_unit_test(test_nothing_listening_is_a_refused_connection),
		cmocka_unit_test(test_a_host_name_that_does_not_resolve_is_named),
		cmocka_unit_test(test_a_stalled_destination_hits_the_deadline_in_time),
		cmocka_unit_test(test_a_cancel_from_another_thread_stops_a_wait_at_once),
		cmocka_unit_test(test_a_cancel_stops_a_destination_waiting_for_its_source),
		cmocka_unit_test(test_a_destination_without_a_source_gives_up_at_its_deadline),
		cmocka_unit_test(test_a_destination_that_closes_the_connection_is_not_vmon),
		cmocka_unit_test(test_an_http_server_is_not_vmon),
		cmocka_unit_test(test_a_destination_refuses_a_client_that_is_not_vmon),
		cmocka_unit_test(test_another_stream_format_is_refused_and_the_reason_travels_back),
		cmocka_unit_test(test_a_source_refuses_a_destination_of_another_format),
		cmocka_unit_test(test_a_refusal_of_the_destinations_caller_is_shown_on_the_source),
		cmocka_unit_test(test_a_refusal_of_the_sources_caller_is_shown_on_the_destination),
		cmocka_unit_test(test_the_destination_says_the_guest_runs_or_why_not),
		cmocka_unit_test(test_tls_refuses_a_certificate_of_another_ca),
		cmocka_unit_test(test_tls_destination_refuses_a_source_of_another_ca),
		cmocka_unit_test(test_tls_source_checks_the_destinations_host_name),
		cmocka_unit_test(test_tls_own_certificate_problems_are_named_before_connecting),
		cmocka_unit_test(test_tls_listener_refuses_plain_tcp_and_says_so_on_both_sides),
		cmocka_unit_test(test_a_tls_source_at_a_plain_listener_is_told_so),
		cmocka_unit_test(test_tls_refuses_a_peer_without_a_certificate),
	};
	return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
