/*
 * The live-migration stream: what a source writes arrives in the destination's RAM and state
 * byte for byte, over a socket fed in pieces; and every kind of damage, truncation or foreign
 * input is refused with a sentence that names the record and its place in the stream.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "lib/util.h"
#include "memory/guest_mem.h"
#include "migration/stream.h"
#include "mig_test_reader.h"
#include "state/snapshot_format.h"

#define RAM (8 * MiB)
#define PAGE 4096u
/* The preamble (16), the header record (16 + 72) and the configuration record (16 + 72). */
#define FIRST_BODY_RECORD 192u
/* Pages of data in one block: more than a memory record carries, so the writer splits it. */
#define BIG_BLOCK (MIG_PAGES_MAX + 44)

static const struct mig_config config = {
	.ram_size = RAM,
	.cpus = 2,
	.cpuid_crc = 0xc0ffee,
	.cpu = { .vendor = "GenuineIntel", .signature = 0x906ea, .features = { 0x1, 0x178bfbff } },
};

static void fill_page(struct guest_mem *mem, uint64_t gpa, uint8_t seed)
{
	uint8_t *p = gpa_to_host_write(mem, gpa, PAGE);
	assert_non_null(p);
	for (unsigned int i = 0; i < PAGE; i++)
		p[i] = (uint8_t)(seed + i * 13);
}

/* A state file as snapshot.c builds one, with a config and one vCPU's registers. */
static void build_state(uint8_t **buf, size_t *len)
{
	struct snap_writer sw;
	snap_writer_init(&sw);
	assert_int_equal(snap_writer_add(&sw, "config", "{\"cpus\":2}", 10), 0);
	uint8_t regs[144];
	for (size_t i = 0; i < sizeof(regs); i++)
		regs[i] = (uint8_t)i;
	assert_int_equal(snap_writer_add(&sw, "vcpu.0.regs", regs, sizeof(regs)), 0);
	assert_int_equal(snap_writer_build(&sw, 7, &config.cpu, buf, len), 0);
	snap_writer_free(&sw);
}

/* Where the writer put each kind of record, for the tests that damage one. */
struct offsets {
	uint64_t round2, state, end, total;
};

/*
 * A whole migration of src: round 1 sends all RAM (page 0 data, then zeros, data at 3 MiB, a
 * block of data at 6 MiB); round 2 sends what changed (page 0 rewritten, the page at 3 MiB
 * now zero, a new page at 5 MiB); then the state and the end.
 */
static void write_migration(int fd, struct guest_mem *src, struct offsets *off)
{
	struct mig_writer w;
	char err[256] = "";
	assert_int_equal(mig_writer_start(&w, fd, "0.1.0+gtest", &config, err, sizeof(err)), 0);
	for (int r = 0; r < src->nregions; r++)
		assert_int_equal(mig_writer_pages(&w, src, src->regions[r].gpa, src->regions[r].size / PAGE, err,
						  sizeof(err)), 0);
	assert_int_equal(mig_writer_round(&w, err, sizeof(err)), 0);

	off->round2 = w.offset;
	fill_page(src, 0, 99);
	memset(gpa_to_host_write(src, 3 * MiB, PAGE), 0, PAGE);
	fill_page(src, 5 * MiB, 5);
	assert_int_equal(mig_writer_pages(&w, src, 0, 1, err, sizeof(err)), 0);
	assert_int_equal(mig_writer_pages(&w, src, 3 * MiB, 1, err, sizeof(err)), 0);
	assert_int_equal(mig_writer_pages(&w, src, 5 * MiB, 1, err, sizeof(err)), 0);
	assert_int_equal(mig_writer_round(&w, err, sizeof(err)), 0);

	uint8_t *state;
	size_t state_len;
	build_state(&state, &state_len);
	off->state = w.offset;
	assert_int_equal(mig_writer_state(&w, state, state_len, err, sizeof(err)), 0);
	/* The writer keeps to the order the reader enforces. */
	assert_int_equal(mig_writer_state(&w, state, state_len, err, sizeof(err)), -EINVAL);
	free(state);
	off->end = w.offset;
	assert_int_equal(mig_writer_end(&w, err, sizeof(err)), 0);
	off->total = w.offset;
	mig_writer_free(&w);
}

static void source_ram(struct guest_mem *src, unsigned int block_pages)
{
	assert_int_equal(guest_mem_init(src, RAM), 0);
	fill_page(src, 0, 1);
	fill_page(src, 3 * MiB, 3);
	for (uint64_t gpa = 6 * MiB; gpa < 6 * MiB + block_pages * PAGE; gpa += PAGE)
		fill_page(src, gpa, (uint8_t)(gpa >> 12));
}

/* ---- round trip over a socket ---- */

struct source {
	int fd;
	struct guest_mem mem;
	struct offsets off;
};

static void *source_thread(void *arg)
{
	struct source *s = arg;
	write_migration(s->fd, &s->mem, &s->off);
	close(s->fd);
	return NULL;
}

static void round_trip_over_a_socket(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	/* A small socket buffer, so records arrive in pieces and the writer blocks mid-record. */
	int small = 4096;
	assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	struct source src = { .fd = sv[0] };
	source_ram(&src.mem, BIG_BLOCK);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, source_thread, &src), 0);

	struct mig_reader r;
	char err[256] = "";
	assert_int_equal(mig_reader_open(&r, sv[1], err, sizeof(err)), 0);
	assert_string_equal(r.vmon_version, "0.1.0+gtest");
	assert_true(r.cfg.ram_size == RAM);
	assert_int_equal(r.cfg.cpus, 2);
	assert_int_equal(r.cfg.cpuid_crc, 0xc0ffee);
	assert_string_equal(r.cfg.cpu.vendor, "GenuineIntel");
	assert_memory_equal(r.cfg.cpu.features, config.cpu.features, sizeof(config.cpu.features));

	struct guest_mem dst;
	assert_int_equal(guest_mem_init(&dst, RAM), 0);
	/* The destination's page at 3 MiB holds stale bytes that the zero-run of round 2 must clear. */
	fill_page(&dst, 3 * MiB, 77);
	assert_int_equal(mig_reader_set_memory(&r, &dst, err, sizeof(err)), 0);

	uint64_t data_pages = 0, zero_pages = 0, round_pages[3] = { 0 };
	unsigned int rounds = 0, states = 0;
	struct mig_event ev;
	for (;;) {
		assert_int_equal(mig_reader_next(&r, &ev, err, sizeof(err)), 0);
		if (ev.kind == MIG_EV_END)
			break;
		if (ev.kind == MIG_EV_PAGES)
			data_pages += ev.count;
		if (ev.kind == MIG_EV_ZERO)
			zero_pages += ev.count;
		if (ev.kind == MIG_EV_ROUND) {
			assert_int_equal(ev.round, rounds + 1);
			round_pages[ev.round] = ev.count;
			rounds++;
		}
		if (ev.kind == MIG_EV_STATE) {
			size_t n = 0;
			const char *cfg = snap_file_section(&ev.state, "config", &n);
			assert_non_null(cfg);
			assert_int_equal(n, 10);
			assert_memory_equal(cfg, "{\"cpus\":2}", 10);
			assert_non_null(snap_file_section(&ev.state, "vcpu.0.regs", &n));
			assert_int_equal(n, 144);
			snap_file_free(&ev.state);
			states++;
		}
	}
	assert_int_equal(ev.round, 2);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(rounds, 2);
	assert_int_equal(states, 1);
	assert_true(round_pages[1] == RAM / PAGE);
	assert_true(round_pages[2] == 3);
	/* Round 1: pages 0 and 3 MiB and the block; round 2: two pages of data and one zero page. */
	assert_true(data_pages == 1 + 1 + BIG_BLOCK + 2);
	assert_true(zero_pages == RAM / PAGE - (2 + BIG_BLOCK) + 1);
	assert_true(r.offset == src.off.total);
	assert_memory_equal(gpa_to_host(&dst, 0, RAM), gpa_to_host(&src.mem, 0, RAM), RAM);

	mig_reader_free(&r);
	close(sv[1]);
	guest_mem_destroy(&dst);
	guest_mem_destroy(&src.mem);
}

/* ---- damaged streams, fed from a buffer ---- */

struct stream {
	uint8_t *buf;
	size_t len;
	struct offsets off;
};

static void make_stream(struct stream *s)
{
	struct guest_mem src;
	source_ram(&src, 16); /* small, so the tests that read it a thousand times stay quick */
	int fd = memfd_create("migration-stream", MFD_CLOEXEC);
	assert_true(fd >= 0);
	write_migration(fd, &src, &s->off);
	guest_mem_destroy(&src);
	s->len = (size_t)lseek(fd, 0, SEEK_END);
	assert_true(s->len == s->off.total);
	s->buf = malloc(s->len);
	assert_non_null(s->buf);
	assert_int_equal(pread(fd, s->buf, s->len, 0), (ssize_t)s->len);
	close(fd);
}

/* Inserts bytes at off (the buffer grows). */
static void insert(struct stream *s, size_t off, const void *p, size_t len)
{
	s->buf = realloc(s->buf, s->len + len);
	assert_non_null(s->buf);
	memmove(s->buf + off + len, s->buf + off, s->len - off);
	memcpy(s->buf + off, p, len);
	s->len += len;
}

/* One record, framed as docs/migration.md says: type, length, payload CRC32, header CRC32. */
static size_t record(uint8_t *out, uint32_t type, const void *payload, uint32_t len)
{
	uint32_t h[4] = { type, len, (uint32_t)crc32(0L, payload, len), 0 };
	h[3] = (uint32_t)crc32(0L, (const Bytef *)h, 12);
	memcpy(out, h, sizeof(h));
	memcpy(out + sizeof(h), payload, len);
	return sizeof(h) + len;
}

/*
 * Feeds the len bytes in fd to a reader as a destination would, up to and including the end
 * record and one record more if the stream has more. 0 when it all passed, else the error
 * (message in err).
 */
static int receive_fd(int fd, size_t len, const struct guest_mem *dst, char *err, size_t errlen)
{
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	struct mig_reader r;
	int rc = mig_reader_open(&r, fd, err, errlen);
	if (!rc)
		rc = mig_reader_set_memory(&r, dst, err, errlen);
	if (!rc)
		rc = mig_test_read_to_end(&r, err, errlen);
	struct mig_event ev;
	if (!rc && r.offset < len)
		rc = mig_reader_next(&r, &ev, err, errlen);
	mig_reader_free(&r);
	return rc;
}

static int stream_fd(const uint8_t *buf, size_t len)
{
	int fd = memfd_create("migration-stream", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	return fd;
}

static int receive(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	int fd = stream_fd(buf, len);
	struct guest_mem dst;
	assert_int_equal(guest_mem_init(&dst, RAM), 0);
	int rc = receive_fd(fd, len, &dst, err, errlen);
	guest_mem_destroy(&dst);
	close(fd);
	return rc;
}

static void expect(struct stream *s, int want_rc, const char *want_err)
{
	char err[512] = "";
	assert_int_equal(receive(s->buf, s->len, err, sizeof(err)), want_rc);
	assert_string_equal(err, want_err);
	free(s->buf);
}

static void intact_stream_passes(void **state)
{
	(void)state;
	struct stream s;
	make_stream(&s);
	char err[256] = "";
	assert_int_equal(receive(s.buf, s.len, err, sizeof(err)), 0);
	free(s.buf);
}

static void flipped_byte_names_the_record(void **state)
{
	(void)state;
	struct stream s;
	make_stream(&s);
	/* Page 0's data: the first memory record's 16-byte header, its 16-byte run, then the page. */
	s.buf[FIRST_BODY_RECORD + 32 + 100] ^= 0x04;
	expect(&s, -EINVAL, "migration stream: the memory record at byte 192 is corrupted (checksum mismatch)");

	make_stream(&s);
	s.buf[s.off.state + 16 + 200] ^= 0x80;
	char want[256];
	snprintf(want, sizeof(want), "migration stream: the state record at byte %llu is corrupted (checksum mismatch)",
		 (unsigned long long)s.off.state);
	expect(&s, -EINVAL, want);

	make_stream(&s);
	s.buf[s.off.end + 4] ^= 0x01; /* the end record's length */
	snprintf(want, sizeof(want), "migration stream: the record header at byte %llu is corrupted (checksum mismatch)",
		 (unsigned long long)s.off.end);
	expect(&s, -EINVAL, want);
}

static void flip_and_receive(const struct stream *s, int fd, const struct guest_mem *dst, size_t i)
{
	char err[512];
	uint8_t b = s->buf[i] ^ (uint8_t)(1u << (i % 8));
	assert_int_equal(pwrite(fd, &b, 1, (off_t)i), 1);
	if (receive_fd(fd, s->len, dst, err, sizeof(err)) == 0)
		fail_msg("a flipped bit (0x%02x) at byte %zu went unnoticed", 1u << (i % 8), i);
	assert_int_equal(pwrite(fd, &s->buf[i], 1, (off_t)i), 1);
}

/*
 * A single-bit error anywhere in a stream is refused: every byte of the preamble, of each record's
 * header and fixed part, and of the state; page data sampled (a flip there is a payload CRC like
 * any other, and reading the whole stream once per byte of it would take minutes).
 */
static void every_flipped_bit_is_refused(void **state)
{
	(void)state;
	struct stream s;
	make_stream(&s);
	int fd = stream_fd(s.buf, s.len);
	struct guest_mem dst;
	assert_int_equal(guest_mem_init(&dst, RAM), 0);
	for (size_t i = 0; i < 16; i++)
		flip_and_receive(&s, fd, &dst, i);
	for (size_t rec = 16; rec < s.len;) {
		uint32_t type, len;
		memcpy(&type, s.buf + rec, 4);
		memcpy(&len, s.buf + rec + 4, 4);
		size_t whole = type == 3 || type == 4 ? 32 : 16 + (size_t)len;
		size_t step = MAX((size_t)61, (size_t)len / 8);
		for (size_t i = rec; i < rec + 16 + len; i += i < rec + whole ? 1 : step)
			flip_and_receive(&s, fd, &dst, i);
		rec += 16 + len;
	}
	guest_mem_destroy(&dst);
	close(fd);
	free(s.buf);
}

static void truncated_stream_says_where(void **state)
{
	(void)state;
	struct stream s;
	make_stream(&s);
	s.len = FIRST_BODY_RECORD + 16 + 16 + 1000;
	expect(&s, -EPIPE,
	       "migration stream: the source closed the connection in the middle of the memory record at byte 192 "
	       "(1032 of its bytes arrived)");

	make_stream(&s);
	s.len = s.off.end; /* all but the end record */
	char want[256];
	snprintf(want, sizeof(want),
		 "migration stream: the source closed the connection at byte %llu, before the end record (it stopped "
		 "or failed)",
		 (unsigned long long)s.off.end);
	expect(&s, -EPIPE, want);

	make_stream(&s);
	s.len = 0;
	expect(&s, -EPIPE, "migration stream: the source closed the connection without sending anything");

	/* Asking for more after the end record is told so, not blamed on the source. */
	make_stream(&s);
	int fd = stream_fd(s.buf, s.len);
	struct guest_mem dst;
	assert_int_equal(guest_mem_init(&dst, RAM), 0);
	char err[256] = "";
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	struct mig_reader r;
	assert_int_equal(mig_reader_open(&r, fd, err, sizeof(err)), 0);
	assert_int_equal(mig_reader_set_memory(&r, &dst, err, sizeof(err)), 0);
	struct mig_event ev = { .kind = MIG_EV_PAGES };
	while (ev.kind != MIG_EV_END) {
		assert_int_equal(mig_reader_next(&r, &ev, err, sizeof(err)), 0);
		if (ev.kind == MIG_EV_STATE)
			snap_file_free(&ev.state);
	}
	assert_int_equal(mig_reader_next(&r, &ev, err, sizeof(err)), -EPIPE);
	snprintf(want, sizeof(want), "migration stream: the stream ended at byte %llu with its end record",
		 (unsigned long long)s.off.total);
	assert_string_equal(err, want);
	mig_reader_free(&r);
	guest_mem_destroy(&dst);
	close(fd);
	free(s.buf);
}

static void unknown_record_type_is_refused(void **state)
{
	(void)state;
	struct stream s;
	make_stream(&s);
	uint8_t rec[64];
	size_t n = record(rec, 99, "future", 6);
	insert(&s, FIRST_BODY_RECORD, rec, n);
	expect(&s, -EPROTO,
	       "migration stream: the record at byte 192 has type 99, which this vmon does not know: the source speaks "
	       "a newer stream format");
}

static void page_range_outside_ram_is_refused(void **state)
{
	(void)state;
	struct stream s;
	make_stream(&s);
	uint8_t *rec = calloc(1, 64 + PAGE);
	assert_non_null(rec);
	uint8_t payload[16 + PAGE];
	memset(payload, 0xab, sizeof(payload));
	uint64_t run[2] = { RAM - PAGE, 2 }; /* the last page of RAM and one past it */
	memcpy(payload, run, sizeof(run));
	/* Two pages announced, one carried: refused for the mismatch first. */
	insert(&s, FIRST_BODY_RECORD, rec, record(rec, 3, payload, sizeof(payload)));
	expect(&s, -EINVAL,
	       "migration stream: the memory record at byte 192 says it holds 2 pages but carries 1");

	make_stream(&s);
	run[1] = 1;
	run[0] = RAM;
	memcpy(payload, run, sizeof(run));
	insert(&s, FIRST_BODY_RECORD, rec, record(rec, 3, payload, sizeof(payload)));
	expect(&s, -EINVAL,
	       "migration stream: memory record at byte 192 has a page range 0x800000-0x801000 outside the guest's 8 "
	       "MiB");

	make_stream(&s);
	uint64_t zeros[2] = { 0x1000, UINT64_MAX / 8 };
	insert(&s, FIRST_BODY_RECORD, rec, record(rec, 4, zeros, sizeof(zeros)));
	expect(&s, -EINVAL,
	       "migration stream: zero-run record at byte 192 has a page range 0x1000-0xffffffffffffffff outside the "
	       "guest's 8 MiB");

	make_stream(&s);
	uint64_t unaligned[2] = { 0x1234, 1 };
	insert(&s, FIRST_BODY_RECORD, rec, record(rec, 4, unaligned, sizeof(unaligned)));
	expect(&s, -EINVAL,
	       "migration stream: zero-run record at byte 192 has a page range starting at 0x1234, which is not on a "
	       "page boundary");
	free(rec);
}

static void oversized_record_is_refused_before_it_is_read(void **state)
{
	(void)state;
	struct stream s;
	make_stream(&s);
	uint32_t h[4] = { 3, 16 + 257 * PAGE, 0, 0 };
	h[3] = (uint32_t)crc32(0L, (const Bytef *)h, 12);
	insert(&s, FIRST_BODY_RECORD, h, sizeof(h));
	expect(&s, -EINVAL,
	       "migration stream: the memory record at byte 192 says it holds 1052688 bytes, which no memory record does");
}

static void other_version_is_refused(void **state)
{
	(void)state;
	struct stream s;
	make_stream(&s);
	s.buf[8] = 2;
	expect(&s, -EPROTO,
	       "migration stream: the source sends stream format version 2; this vmon reads version 1 only: migrate "
	       "between vmon releases that share a stream format");
}

static void peer_that_is_not_vmon_is_refused(void **state)
{
	(void)state;
	struct stream s = { .buf = malloc(64) };
	assert_non_null(s.buf);
	s.len = (size_t)snprintf((char *)s.buf, 64, "HTTP/1.1 400 Bad Request\r\n\r\n");
	expect(&s, -EPROTO,
	       "migration stream: the peer is not a vmon sending a VM (no VMONMIGR signature at the start of what it "
	       "sent)");
}

static void records_out_of_order_are_refused(void **state)
{
	(void)state;
	char want[256];
	struct stream s;
	make_stream(&s);
	/* The state record twice. */
	size_t state_len = (size_t)(s.off.end - s.off.state);
	uint8_t *copy = malloc(state_len);
	assert_non_null(copy);
	memcpy(copy, s.buf + s.off.state, state_len);
	insert(&s, (size_t)s.off.end, copy, state_len);
	free(copy);
	snprintf(want, sizeof(want), "migration stream: the state record at byte %llu is the second one",
		 (unsigned long long)s.off.end);
	expect(&s, -EINVAL, want);

	/* A memory record after the end. */
	make_stream(&s);
	uint8_t page_rec[32 + PAGE];
	memcpy(page_rec, s.buf + FIRST_BODY_RECORD, sizeof(page_rec));
	insert(&s, s.len, page_rec, sizeof(page_rec));
	snprintf(want, sizeof(want), "migration stream: a memory record at byte %llu comes after the end record",
		 (unsigned long long)s.off.total);
	expect(&s, -EINVAL, want);

	/* A second configuration record. */
	make_stream(&s);
	uint8_t cfg_rec[88];
	memcpy(cfg_rec, s.buf + 104, sizeof(cfg_rec));
	insert(&s, FIRST_BODY_RECORD, cfg_rec, sizeof(cfg_rec));
	expect(&s, -EINVAL, "migration stream: a second configuration record at byte 192");

	/* The end record before the state. */
	make_stream(&s);
	uint8_t end_rec[24];
	memcpy(end_rec, s.buf + s.off.end, sizeof(end_rec));
	insert(&s, (size_t)s.off.state, end_rec, sizeof(end_rec));
	snprintf(want, sizeof(want),
		 "migration stream: the end record at byte %llu comes before the VM's state was sent",
		 (unsigned long long)s.off.state);
	expect(&s, -EINVAL, want);

	/* A round marker dropped: round 2's marker arrives where round 1's was due. */
	make_stream(&s);
	size_t r1 = (size_t)s.off.round2 - 32;
	memmove(s.buf + r1, s.buf + r1 + 32, s.len - r1 - 32);
	s.len -= 32;
	snprintf(want, sizeof(want),
		 "migration stream: the round marker at byte %llu is for round 2 where round 1 was due",
		 (unsigned long long)(s.off.state - 64));
	expect(&s, -EINVAL, want);
}

static void memory_of_another_size_is_refused(void **state)
{
	(void)state;
	struct stream s;
	make_stream(&s);
	int fd = stream_fd(s.buf, s.len);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	struct mig_reader r;
	char err[256] = "";
	assert_int_equal(mig_reader_open(&r, fd, err, sizeof(err)), 0);
	struct guest_mem small;
	assert_int_equal(guest_mem_init(&small, 4 * MiB), 0);
	assert_int_equal(mig_reader_set_memory(&r, &small, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "migration stream: the guest has 8 MiB of RAM and the destination made 4 MiB for it");
	struct mig_event ev;
	assert_int_equal(mig_reader_next(&r, &ev, err, sizeof(err)), -EINVAL);
	guest_mem_destroy(&small);
	mig_reader_free(&r);
	close(fd);
	free(s.buf);
}

static void writer_reports_a_destination_that_hung_up(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[1]);
	struct mig_writer w;
	char err[256] = "";
	assert_int_equal(mig_writer_start(&w, sv[0], "0.1.0", &config, err, sizeof(err)), -EPIPE);
	assert_string_equal(err, "migration stream: the destination closed the connection while the header record at "
				 "byte 0 was sent (it stopped, or refused the migration)");
	mig_writer_free(&w);
	close(sv[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip_over_a_socket),
		cmocka_unit_test(intact_stream_passes),
		cmocka_unit_test(flipped_byte_names_the_record),
		cmocka_unit_test(every_flipped_bit_is_refused),
		cmocka_unit_test(truncated_stream_says_where),
		cmocka_unit_test(unknown_record_type_is_refused),
		cmocka_unit_test(page_range_outside_ram_is_refused),
		cmocka_unit_test(oversized_record_is_refused_before_it_is_read),
		cmocka_unit_test(other_version_is_refused),
		cmocka_unit_test(peer_that_is_not_vmon_is_refused),
		cmocka_unit_test(records_out_of_order_are_refused),
		cmocka_unit_test(memory_of_another_size_is_refused),
		cmocka_unit_test(writer_reports_a_destination_that_hung_up),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
