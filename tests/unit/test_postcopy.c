/*
 * Post-copy over a socketpair, end to end: a source with a pattern in its RAM (some zero pages)
 * sends one pre-copy round, "dirties" three pages in four, and switches to post-copy; the
 * destination registers its RAM with userfaultfd and several host threads standing in for vCPUs
 * read random pages while the background push runs. Every read returns the source's bytes, faults
 * are served as page requests, and the push brings the rest. When the source dies mid-way, the
 * threads waiting on pages are woken with SIGBUS instead of hanging, and the destination says the
 * VM is lost.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/util.h"
#include "memory/dirty_log.h"
#include "memory/guest_mem.h"
#include "memory/write_track.h"
#include "migration/postcopy_dest.h"
#include "migration/postcopy_source.h"
#include "migration/postcopy_wire.h"
#include "migration/stream.h"
#include "migration/stream_wire.h"
#include "migration/transport.h"
#include "state/snapshot_format.h"

#define RAM (32 * MiB)
#define PAGES (RAM / MIG_PAGE_SIZE)
#define VCPUS 4
#define READS_PER_VCPU 400

static const struct mig_config config = {
	.ram_size = RAM,
	.cpus = 1,
	.cpu = { .vendor = "GenuineIntel", .signature = 0x906ea, .features = { 0x1 } },
};

/* Page i's bytes in round `gen`: every seventh page is zero. */
static void pattern(uint8_t *p, uint64_t i, unsigned int gen)
{
	if (i % 7 == 3) {
		memset(p, 0, MIG_PAGE_SIZE);
		return;
	}
	for (unsigned int j = 0; j < MIG_PAGE_SIZE; j++)
		p[j] = (uint8_t)(i * 31 + j * 7 + gen * 101 + 1);
	memcpy(p, &i, sizeof(i));
}

static bool dirtied(uint64_t i)
{
	return i % 4 != 0;
}

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

struct source {
	struct mig_conn *conn;
	struct guest_mem mem;
	struct dirty_pages pending;
	bool die; /* close the connection at the first page request instead of serving post-copy */
	uint32_t mbps; /* post-copy's bandwidth limit */
	uint64_t postcopy_bytes, postcopy_ns; /* what post-copy sent, and how long it took */
	int rc;
	char err[512];
	struct postcopy_source_stats st;
};

static void build_state(uint8_t **buf, size_t *len)
{
	struct snap_writer sw;
	snap_writer_init(&sw);
	assert_int_equal(snap_writer_add(&sw, "config", "{\"cpus\":1}", 10), 0);
	assert_int_equal(snap_writer_build(&sw, 7, &config.cpu, buf, len), 0);
	snap_writer_free(&sw);
}

/* The source's RAM in round 1, and the pending bitmap of the pages it then changes. */
static void source_ram(struct source *s)
{
	assert_int_equal(guest_mem_init(&s->mem, RAM), 0);
	for (uint64_t i = 0; i < PAGES; i++)
		pattern(gpa_to_host_write(&s->mem, i * MIG_PAGE_SIZE, MIG_PAGE_SIZE), i, 1);
	assert_int_equal(s->mem.nregions, 1);
	s->pending.bits[0] = calloc(write_track_words(&s->mem.regions[0]), sizeof(uint64_t));
	assert_non_null(s->pending.bits[0]);
}

static void *source_thread(void *arg)
{
	struct source *s = arg;
	struct mig_writer w;
	struct mig_io io = mig_conn_io(s->conn);
	uint8_t *state;
	size_t state_len;
	build_state(&state, &state_len);
	s->rc = mig_writer_start_io(&w, &io, "0.1.0+gtest", &config, s->err, sizeof(s->err));
	if (!s->rc)
		s->rc = mig_writer_pages(&w, &s->mem, 0, PAGES, s->err, sizeof(s->err));
	/* The guest ran on during round 1 and changed three pages in four. */
	for (uint64_t i = 0; i < PAGES; i++)
		if (dirtied(i)) {
			pattern(gpa_to_host_write(&s->mem, i * MIG_PAGE_SIZE, MIG_PAGE_SIZE), i, 2);
			s->pending.bits[0][i / 64] |= 1ull << (i % 64);
			s->pending.count++;
		}
	if (!s->rc)
		s->rc = mig_writer_round(&w, s->err, sizeof(s->err));
	if (!s->rc)
		s->rc = mig_writer_state(&w, state, state_len, s->err, sizeof(s->err));
	if (!s->rc)
		s->rc = mig_writer_postcopy(&w, &s->mem, &s->pending, s->err, sizeof(s->err));
	free(state);
	mig_writer_free(&w);
	if (!s->rc && s->die) {
		/* The source dies once the destination needs it: after the first page request. */
		uint8_t rec[32];
		s->rc = (int)mig_conn_read(s->conn, rec, sizeof(rec));
		mig_conn_close(s->conn);
		s->conn = NULL;
		return NULL;
	}
	uint64_t bytes = mig_conn_bytes_sent(s->conn), t0 = now_ns();
	if (!s->rc)
		s->rc = postcopy_source_run(&s->mem, s->conn, &s->pending, s->mbps, &s->st, s->err, sizeof(s->err));
	s->postcopy_ns = now_ns() - t0;
	s->postcopy_bytes = mig_conn_bytes_sent(s->conn) - bytes;
	return NULL;
}

/* The expected bytes of page i once the migration is over. */
static void expected(uint8_t *p, uint64_t i)
{
	pattern(p, i, dirtied(i) ? 2 : 1);
}

struct vcpu {
	struct guest_mem *mem;
	unsigned int seed;
	unsigned int want; /* reads to make: READS_PER_VCPU when 0 */
	uint64_t lat_ns[READS_PER_VCPU];
	unsigned int reads, wrong;
	bool faulted; /* woken by SIGBUS/SIGSEGV: the page was lost */
	int signo;
};

static __thread sigjmp_buf *lost_page;
static __thread volatile int lost_signo;

static void on_lost_page(int sig)
{
	lost_signo = sig;
	if (lost_page)
		siglongjmp(*lost_page, 1);
	abort();
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	uint8_t *want = malloc(MIG_PAGE_SIZE);
	sigjmp_buf jb;
	lost_page = &jb;
	if (sigsetjmp(jb, 1)) {
		v->faulted = true;
		v->signo = lost_signo;
		lost_page = NULL;
		free(want);
		return NULL;
	}
	for (; v->reads < (v->want ? v->want : READS_PER_VCPU); v->reads++) {
		uint64_t i = (uint64_t)rand_r(&v->seed) % PAGES;
		const volatile uint8_t *p = gpa_to_host(v->mem, i * MIG_PAGE_SIZE, MIG_PAGE_SIZE);
		uint64_t t0 = now_ns();
		uint8_t first = p[0]; /* the access a vCPU would make: faults when the page is missing */
		v->lat_ns[v->reads] = now_ns() - t0;
		expected(want, i);
		v->wrong += first != want[0] || memcmp((const void *)p, want, MIG_PAGE_SIZE) != 0;
	}
	lost_page = NULL;
	free(want);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

struct rig {
	int sv[2];
	struct source src;
	struct mig_conn *dconn;
	struct guest_mem dst;
	struct mig_reader r;
	pthread_t src_thread;
	bool joined;
	struct postcopy_dest *d;
};

/*
 * Source and destination connected, pre-copy's round received, post-copy started on the
 * destination; the source's push limited to mbps (0: none).
 */
static void start_paced(struct rig *g, bool die, enum guest_mem_backing backing, uint32_t mbps)
{
	memset(g, 0, sizeof(*g));
	char err[512] = "";
	char why[256];
	int made = guest_mem_init_backed(&g->dst, RAM, backing, why, sizeof(why));
	if (made == -EOPNOTSUPP) /* no KSM on this host: merge=on RAM cannot be made */
		skip();
	assert_int_equal(made, 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, g->sv), 0);
	struct mig_conn_opts o = { .timeout_ms = 3000 };
	assert_int_equal(mig_conn_wrap(&g->src.conn, g->sv[0], "test destination", true, &o), 0);
	assert_int_equal(mig_conn_wrap(&g->dconn, g->sv[1], "test source", false, &o), 0);
	source_ram(&g->src);
	g->src.die = die;
	g->src.mbps = mbps;
	assert_int_equal(pthread_create(&g->src_thread, NULL, source_thread, &g->src), 0);

	struct mig_io io = mig_conn_io(g->dconn);
	assert_int_equal(mig_reader_open_io(&g->r, &io, err, sizeof(err)), 0);
	assert_int_equal(mig_reader_set_memory(&g->r, &g->dst, err, sizeof(err)), 0);
	struct mig_event ev;
	do {
		assert_int_equal(mig_reader_next(&g->r, &ev, err, sizeof(err)), 0);
		if (ev.kind == MIG_EV_STATE)
			snap_file_free(&ev.state);
	} while (ev.kind != MIG_EV_POSTCOPY);
	int rc = postcopy_dest_start(&g->d, &g->dst, g->dconn, g->r.offset, ev.count, ev.gpa, err, sizeof(err));
	if (rc)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);
	/*
	 * The guest "runs" here from now on. Where the test kills the source this write may fail; the
	 * cases that complete prove it arrived (the source ends only after the verdict and every page).
	 */
	postcopy_dest_tell(g->d, NULL, err, sizeof(err));
}

static void start(struct rig *g, bool die, enum guest_mem_backing backing)
{
	start_paced(g, die, backing, 0);
}

static void stop(struct rig *g)
{
	postcopy_dest_free(g->d);
	if (!g->joined)
		pthread_join(g->src_thread, NULL);
	mig_reader_free(&g->r);
	mig_conn_close(g->dconn);
	mig_conn_close(g->src.conn);
	free(g->src.pending.bits[0]);
	guest_mem_destroy(&g->src.mem);
	guest_mem_destroy(&g->dst);
}

/*
 * VCPUS threads each read `reads` random pages of the destination's RAM (seeds from seed); every
 * read must return the source's bytes without a lost page. Their latencies go into lat (VCPUS *
 * reads entries), sorted.
 */
static void vcpus_read(struct rig *g, unsigned int seed, unsigned int reads, uint64_t *lat)
{
	struct vcpu v[VCPUS];
	pthread_t t[VCPUS];
	for (int i = 0; i < VCPUS; i++) {
		v[i] = (struct vcpu){ .mem = &g->dst, .seed = seed + (unsigned int)i, .want = reads };
		assert_int_equal(pthread_create(&t[i], NULL, vcpu_thread, &v[i]), 0);
	}
	for (int i = 0; i < VCPUS; i++) {
		pthread_join(t[i], NULL);
		assert_false(v[i].faulted);
		assert_int_equal(v[i].reads, reads);
		assert_int_equal(v[i].wrong, 0);
		memcpy(lat + (size_t)i * reads, v[i].lat_ns, reads * sizeof(lat[0]));
	}
	qsort(lat, (size_t)VCPUS * reads, sizeof(lat[0]), cmp_u64);
}

/*
 * How many of n sorted read latencies are of pages that faulted: slower than 20 us (a page
 * present is read in well under that).
 */
static size_t faulted_reads(const uint64_t *lat, size_t n)
{
	size_t slow = 0;
	while (slow < n && lat[n - 1 - slow] > 20000)
		slow++;
	return slow;
}

static void vcpus_read_the_sources_bytes_as(enum guest_mem_backing backing)
{
	struct rig g;
	start(&g, false, backing);
	static uint64_t lat[VCPUS * READS_PER_VCPU];
	size_t n = VCPUS * READS_PER_VCPU;
	vcpus_read(&g, 1234u, READS_PER_VCPU, lat);
	char err[512] = "";
	int rc = postcopy_dest_wait(g.d, 10000, err, sizeof(err));
	if (rc)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);
	pthread_join(g.src_thread, NULL);
	g.joined = true;
	if (g.src.rc)
		print_error("%s\n", g.src.err);
	assert_int_equal(g.src.rc, 0);

	/* All of RAM is the source's now, and the destination's RAM no longer faults. */
	assert_memory_equal(g.dst.regions[0].host, g.src.mem.regions[0].host, RAM);
	struct postcopy_dest_stats st;
	postcopy_dest_get_stats(g.d, &st);
	assert_true(st.requests > 0);
	assert_true(st.requests < g.src.pending.count);
	/*
	 * Every pending page arrived once; beyond them only pages asked for: zero pages of round 1,
	 * which the destination dropped to holes and which fault too.
	 */
	assert_true(st.pages + st.zero_pages >= g.src.pending.count);
	assert_true(st.pages + st.zero_pages <= g.src.pending.count + st.requests);
	/*
	 * A request the destination sends as the last pages arrive may still be in flight when the
	 * source has pushed everything and ends: the source can have read fewer, never more.
	 */
	assert_true(g.src.st.requests <= st.requests && g.src.st.requests > 0);
	assert_true(g.src.st.pushed + g.src.st.requested >= g.src.pending.count);
	/* The push skips what requests brought: pages sent twice are only requests racing the push. */
	assert_true(g.src.st.pushed < g.src.pending.count);

	size_t slow = faulted_reads(lat, n);
	uint64_t *f = lat + n - slow;
	printf("post-copy (%s RAM): %zu of %zu reads faulted; pending %llu pages, requested %llu, pushed %llu, duplicates "
	       "%llu; served fault latency median %.1f us, max %.1f us\n",
	       guest_mem_backing_name(&g.dst), slow, n, (unsigned long long)g.src.pending.count, (unsigned long long)st.requests,
	       (unsigned long long)g.src.st.pushed, (unsigned long long)st.duplicates,
	       slow ? f[slow / 2] / 1000.0 : 0.0, slow ? f[slow - 1] / 1000.0 : 0.0);
	assert_true(lat[n - 1] < 2000000000ull); /* no read waited for seconds */
	stop(&g);
}

static void vcpus_read_the_sources_bytes_while_the_push_runs(void **state)
{
	(void)state;
	vcpus_read_the_sources_bytes_as(GUEST_MEM_MEMFD);
}

/* merge=on RAM is private anonymous memory: its dropped pages are missing the same way. */
static void the_same_with_private_anonymous_ram(void **state)
{
	(void)state;
	vcpus_read_the_sources_bytes_as(GUEST_MEM_MERGEABLE);
}

static void a_dead_source_wakes_the_faulting_threads_and_loses_the_vm(void **state)
{
	(void)state;
	struct sigaction sa = { .sa_handler = on_lost_page }, old_bus, old_segv;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &old_bus);
	sigaction(SIGSEGV, &sa, &old_segv);
	struct rig g;
	start(&g, true, GUEST_MEM_MEMFD);
	uint64_t t0 = now_ns();
	struct vcpu v[VCPUS];
	pthread_t t[VCPUS];
	for (int i = 0; i < VCPUS; i++) {
		v[i] = (struct vcpu){ .mem = &g.dst, .seed = 99u + (unsigned int)i };
		assert_int_equal(pthread_create(&t[i], NULL, vcpu_thread, &v[i]), 0);
	}
	char err[512] = "";
	assert_int_equal(postcopy_dest_wait(g.d, 5000, err, sizeof(err)), -EPIPE);
	assert_non_null(strstr(err, "closed the connection"));
	assert_non_null(strstr(err, "the VM is lost"));
	for (int i = 0; i < VCPUS; i++) {
		pthread_join(t[i], NULL);
		/* Every thread reads pending pages until one is missing: it is woken with a signal, not left waiting. */
		assert_true(v[i].faulted);
		assert_true(v[i].signo == SIGBUS || v[i].signo == SIGSEGV);
		assert_int_equal(v[i].wrong, 0);
	}
	uint64_t took = now_ns() - t0;
	assert_true(took < 5000000000ull);
	printf("post-copy, source killed: the %d reading threads woke with %s within %.1f ms; %s\n", VCPUS,
	       strsignal(v[0].signo), took / 1e6, err);
	stop(&g);
	sigaction(SIGBUS, &old_bus, NULL);
	sigaction(SIGSEGV, &old_segv, NULL);
}

/*
 * With bandwidth_mbps set, the push keeps post-copy's average at the limit: 20 MiB of pending
 * data at 400 Mbit/s take at least 0.4 s, where unpaced they take a small part of that.
 */
static void the_push_keeps_to_the_bandwidth_limit(void **state)
{
	(void)state;
	const uint32_t mbps = 400;
	struct rig g;
	start_paced(&g, false, GUEST_MEM_MEMFD, mbps);
	char err[512] = "";
	int rc = postcopy_dest_wait(g.d, 20000, err, sizeof(err));
	if (rc)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);
	pthread_join(g.src_thread, NULL);
	g.joined = true;
	assert_int_equal(g.src.rc, 0);
	assert_memory_equal(g.dst.regions[0].host, g.src.mem.regions[0].host, RAM);
	double secs = g.src.postcopy_ns / 1e9, mbit = g.src.postcopy_bytes * 8 / 1e6;
	printf("post-copy paced to %u Mbit/s: %.1f MiB in %.3f s, %.0f Mbit/s\n", mbps, g.src.postcopy_bytes / (double)MiB,
	       secs, mbit / secs);
	assert_true(g.src.postcopy_bytes > 16 * MiB); /* the pending pages' data went through post-copy */
	/* At most one chunk ahead of the limit (128 KiB is 2.6 ms at 400 Mbit/s). */
	assert_true(secs >= mbit / mbps - 0.003);
	stop(&g);
}

/*
 * A limit slows the push, never a fault: at 2 Mbit/s a 128 KiB chunk may go every half second
 * and each 4 KiB page "costs" 16 ms, yet a page a vCPU asks for is sent at once. When the link
 * then closes, the held-back push ends at once.
 */
static void a_slow_push_still_answers_faults_at_once(void **state)
{
	(void)state;
	const uint32_t mbps = 2;
	struct rig g;
	start_paced(&g, false, GUEST_MEM_MEMFD, mbps);
	enum { READS = 60 };
	uint64_t t0 = now_ns();
	static uint64_t lat[VCPUS * READS];
	size_t n = VCPUS * READS;
	vcpus_read(&g, 4321u, READS, lat);
	double secs = (now_ns() - t0) / 1e9;
	struct postcopy_dest_stats st;
	postcopy_dest_get_stats(g.d, &st);
	size_t slow = faulted_reads(lat, n);
	assert_true(slow > n / 4); /* most pending pages were still at the source: reads faulted */
	uint64_t median = lat[n - slow + slow / 2];
	printf("post-copy paced to %u Mbit/s: %zu of %zu reads faulted, served in %.2f ms (median), %llu pages arrived in "
	       "%.2f s\n",
	       mbps, slow, n, median / 1e6, (unsigned long long)(st.pages + st.zero_pages), secs);
	/* A request held back with the push would wait for the limit too: 16 ms a page. */
	assert_true(median < 15000000ull);
	/* The push kept to the limit: what arrived beyond the requests fits it, plus two chunks. */
	uint64_t pushed_bytes = (st.pages > st.requests ? st.pages - st.requests : 0) * MIG_PAGE_SIZE;
	assert_true(pushed_bytes <= (uint64_t)(secs * mbps * 1e6 / 8) + 2 * POSTCOPY_PUSH_PAGES * MIG_PAGE_SIZE);
	/* The destination gives up: the source, waiting for its next turn, ends at once. */
	uint64_t t1 = now_ns();
	postcopy_dest_free(g.d);
	g.d = NULL;
	pthread_join(g.src_thread, NULL);
	g.joined = true;
	assert_int_not_equal(g.src.rc, 0);
	assert_true(now_ns() - t1 < 2000000000ull);
	stop(&g);
}

/* One record as a peer would frame it, its checksums right unless damaged. */
static void send_record(int fd, uint32_t type, const void *payload, uint32_t len, bool damage)
{
	struct mig_rec_hdr h = mig_rec_hdr_make(type, len, mig_crc(0, payload, len) ^ (damage ? 1u : 0u));
	assert_int_equal(write(fd, &h, sizeof(h)), sizeof(h));
	assert_int_equal(write(fd, payload, len), (ssize_t)len);
}

/* What pc_read and pc_parse_request say about one page request (gpa, count) sent as a record. */
static int request_verdict(uint64_t gpa, uint32_t count, uint32_t len, bool damage, char *err, size_t errlen)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct mig_rec_page_request q = { .gpa = gpa, .count = count };
	uint8_t payload[32] = { 0 };
	memcpy(payload, &q, sizeof(q));
	send_record(sv[0], MIG_REC_PAGE_REQUEST, payload, len, damage);
	close(sv[0]);
	struct mig_conn *c;
	struct mig_conn_opts o = { .timeout_ms = 1000 };
	assert_int_equal(mig_conn_wrap(&c, sv[1], "test destination", true, &o), 0);
	struct pc_link l;
	pc_link_init(&l, c, "the destination");
	static struct guest_mem mem; /* 8 MiB: the requests below probe its end */
	if (!mem.nregions)
		assert_int_equal(guest_mem_init(&mem, 8 * MiB), 0);
	static uint8_t buf[PC_REC_MAX];
	uint32_t type, got_len;
	int rc = pc_read(&l, false, &type, buf, &got_len, err, errlen);
	if (!rc) {
		uint64_t g;
		uint32_t n;
		rc = pc_parse_request(&mem, 0, buf, &g, &n, err, errlen);
		if (!rc)
			assert_true(g == gpa && n == count);
	}
	pc_link_destroy(&l);
	mig_conn_close(c);
	return rc;
}

static void damaged_page_requests_are_refused_with_a_sentence(void **state)
{
	(void)state;
	char err[512];
	const uint32_t len = sizeof(struct mig_rec_page_request);
	assert_int_equal(request_verdict(8 * MiB - 4096, 1, len, false, err, sizeof(err)), 0);
	assert_int_equal(request_verdict(0, MIG_PAGES_MAX, len, false, err, sizeof(err)), 0);

	assert_int_equal(request_verdict(8 * MiB, 1, len, false, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "post-copy: the page request at byte 0 is for 1 pages at 0x800000, outside the guest's RAM");
	assert_int_equal(request_verdict(8 * MiB - 4096, 2, len, false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "outside the guest's RAM"));
	assert_int_equal(request_verdict(4096, 0, len, false, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "post-copy: the page request at byte 0 is for 0 pages; 1 to 256 are allowed");
	assert_int_equal(request_verdict(4096, MIG_PAGES_MAX + 1, len, false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "is for 257 pages; 1 to 256 are allowed"));
	assert_int_equal(request_verdict(4097, 1, len, false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "starts at 0x1001, which is not on a page boundary"));
	assert_int_equal(request_verdict(4096, 1, len, true, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "post-copy: the page request at byte 0 is corrupted (checksum mismatch)");
	assert_int_equal(request_verdict(4096, 1, len + 8, false, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "post-copy: the record at byte 0 (type 12, 24 bytes) is no record post-copy has");
}

/* The pre-copy reader refuses post-copy's records before the switch. */
static void post_copy_records_before_the_switch_are_refused(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct mig_writer w;
	char err[512];
	assert_int_equal(mig_writer_start(&w, sv[0], "0.1.0+gtest", &config, err, sizeof(err)), 0);
	struct mig_rec_page_request q = { .gpa = 0, .count = 1 };
	send_record(sv[0], MIG_REC_PAGE_REQUEST, &q, sizeof(q), false);
	struct mig_rec_postcopy pc = { 0 };
	send_record(sv[0], MIG_REC_POSTCOPY, &pc, sizeof(pc), false);
	mig_writer_free(&w);
	close(sv[0]);
	struct mig_reader r;
	assert_int_equal(mig_reader_open(&r, sv[1], err, sizeof(err)), 0);
	struct guest_mem mem;
	assert_int_equal(guest_mem_init(&mem, RAM), 0);
	assert_int_equal(mig_reader_set_memory(&r, &mem, err, sizeof(err)), 0);
	struct mig_event ev;
	assert_int_equal(mig_reader_next(&r, &ev, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "migration stream: a page request at byte 192, which belongs to post-copy after its "
				 "switch record");
	mig_reader_free(&r);
	close(sv[1]);
	guest_mem_destroy(&mem);
}

/* Hugepage RAM is refused before anything is registered: a fault would wait for 2 MiB. */
static void hugepage_ram_is_refused_with_its_reason(void **state)
{
	(void)state;
	struct guest_mem mem = { .backing = GUEST_MEM_HUGETLB, .ram_size = RAM, .fd = -1 };
	struct postcopy_dest *d = NULL;
	char err[512];
	assert_int_equal(postcopy_dest_start(&d, &mem, NULL, 0, 0, 0, err, sizeof(err)), -EOPNOTSUPP);
	assert_null(d);
	assert_non_null(strstr(err, "2 MiB hugepages"));
	assert_non_null(strstr(err, "pre-copy"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(vcpus_read_the_sources_bytes_while_the_push_runs),
		cmocka_unit_test(the_same_with_private_anonymous_ram),
		cmocka_unit_test(a_dead_source_wakes_the_faulting_threads_and_loses_the_vm),
		cmocka_unit_test(the_push_keeps_to_the_bandwidth_limit),
		cmocka_unit_test(a_slow_push_still_answers_faults_at_once),
		cmocka_unit_test(damaged_page_requests_are_refused_with_a_sentence),
		cmocka_unit_test(post_copy_records_before_the_switch_are_refused),
		cmocka_unit_test(hugepage_ram_is_refused_with_its_reason),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
