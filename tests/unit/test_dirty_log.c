/*
 * Dirty-page tracking for migration (src/memory/dirty_log.c, write_track.c) on real guest RAM,
 * with a fake KVM dirty log standing in for the vCPUs: what a migration would copy each round
 * must include every page written, by the guest or by vmon, and nothing that was only read.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "lib/util.h"
#include "memory/dirty_log.h"
#include "memory/guest_mem.h"
#include "memory/write_track.h"

#include "host_memory.h"

#define PAGE 4096ull

/* ---- a fake KVM: the pages "the vCPUs wrote", reported and cleared by fetch ---- */

struct fake_kvm {
	pthread_mutex_t lock;
	uint64_t *vcpu_bits[GUEST_MEM_MAX_REGIONS];
	bool logging[GUEST_MEM_MAX_REGIONS];
	int set_logging_calls;
	int fail_fetch; /* -errno to return from fetch, or 0 */
	bool initially_set; /* the first fetch reports every page, as KVM_DIRTY_LOG_INITIALLY_SET does */
	int fetches;
};

static int fake_set_logging(void *ctx, const struct guest_mem *mem, int slot, bool on)
{
	struct fake_kvm *k = ctx;
	(void)mem;
	k->logging[slot] = on;
	k->set_logging_calls++;
	return 0;
}

static int fake_fetch(void *ctx, const struct guest_mem *mem, int slot, uint64_t *bits)
{
	struct fake_kvm *k = ctx;
	if (k->fail_fetch)
		return k->fail_fetch;
	uint64_t words = write_track_words(&mem->regions[slot]);
	pthread_mutex_lock(&k->lock);
	memcpy(bits, k->vcpu_bits[slot], words * sizeof(uint64_t));
	memset(k->vcpu_bits[slot], 0, words * sizeof(uint64_t));
	if (k->initially_set && k->fetches++ == 0)
		memset(bits, 0xff, words * sizeof(uint64_t));
	pthread_mutex_unlock(&k->lock);
	return 0;
}

static const struct dirty_log_ops fake_ops = { .set_logging = fake_set_logging, .fetch = fake_fetch };

struct rig {
	struct guest_mem mem;
	struct fake_kvm kvm;
	struct dirty_log dl;
	char err[256];
};

/* A rig on RAM of the given backing, or NULL where the host cannot make it (no KSM for merge=on). */
static struct rig *rig_new_backed(uint64_t ram, enum guest_mem_backing backing)
{
	struct rig *r = calloc(1, sizeof(*r));
	char why[256];
	int made = guest_mem_init_backed(&r->mem, ram, backing, why, sizeof(why));
	if (made == -EOPNOTSUPP) {
		free(r);
		return NULL;
	}
	assert_int_equal(made, 0);
	pthread_mutex_init(&r->kvm.lock, NULL);
	for (int i = 0; i < r->mem.nregions; i++)
		r->kvm.vcpu_bits[i] = calloc(write_track_words(&r->mem.regions[i]), sizeof(uint64_t));
	return r;
}

static struct rig *rig_new(uint64_t ram)
{
	struct rig *r = rig_new_backed(ram, GUEST_MEM_MEMFD);
	assert_non_null(r);
	return r;
}

static void rig_free(struct rig *r)
{
	dirty_log_stop(&r->dl);
	guest_mem_destroy(&r->mem);
	for (int i = 0; i < GUEST_MEM_MAX_REGIONS; i++)
		free(r->kvm.vcpu_bits[i]);
	pthread_mutex_destroy(&r->kvm.lock);
	free(r);
}

/* Starts the log and takes the first fetch (the pages in use, nothing sent yet) out of the way. */
static void start_and_drain(struct rig *r)
{
	assert_int_equal(dirty_log_start(&r->dl, &r->mem, &fake_ops, &r->kvm, r->err, sizeof(r->err)), 0);
	const struct dirty_pages *p;
	assert_int_equal(dirty_log_fetch(&r->dl, &p, r->err, sizeof(r->err)), 0);
}

static const struct dirty_pages *fetch(struct rig *r)
{
	const struct dirty_pages *p = NULL;
	assert_int_equal(dirty_log_fetch(&r->dl, &p, r->err, sizeof(r->err)), 0);
	return p;
}

/* The guest writes a page from a vCPU: KVM would see it, vmon does not. */
static void vcpu_writes(struct rig *r, uint64_t gpa)
{
	for (int i = 0; i < r->mem.nregions; i++) {
		const struct guest_mem_region *g = &r->mem.regions[i];
		if (gpa >= g->gpa && gpa < g->gpa + g->size) {
			uint64_t page = (gpa - g->gpa) / PAGE;
			pthread_mutex_lock(&r->kvm.lock);
			r->kvm.vcpu_bits[i][page / 64] |= 1ull << (page % 64);
			pthread_mutex_unlock(&r->kvm.lock);
			return;
		}
	}
	fail_msg("gpa 0x%llx is not RAM", (unsigned long long)gpa);
}

/* The runs a fetch reported, as "gpa+count" pairs, for one comparison. */
static void runs_of(const struct guest_mem *mem, const struct dirty_pages *p, char *out, size_t len)
{
	uint64_t cursor = 0, gpa, count;
	size_t used = 0;
	out[0] = 0;
	while (dirty_pages_next_run(mem, p, &cursor, &gpa, &count))
		used += (size_t)snprintf(out + used, len - used, "%s0x%llx+%llu", used ? " " : "",
					 (unsigned long long)gpa, (unsigned long long)count);
}

static void assert_runs(struct rig *r, const char *want)
{
	const struct dirty_pages *p = fetch(r);
	char got[512];
	runs_of(&r->mem, p, got, sizeof(got));
	assert_string_equal(got, want);
}

/* Host memory backing a guest's RAM (its memfd's allocated blocks), in pages. */
static uint64_t backed_pages(const struct guest_mem *mem)
{
	return fd_allocated_bytes(mem->fd) / PAGE;
}

/*
 * The first fetch reports every page that may hold data: those the guest wrote before the
 * migration, not the untouched rest (nor a page the balloon gave back), and finding them backs
 * no page on the host; then KVM's log takes over.
 */
static void first_fetch_reports_the_pages_in_use(bool initially_set)
{
	struct rig *r = rig_new(16 * MiB);
	r->kvm.initially_set = initially_set;
	memset(r->mem.regions[0].host + 0 * PAGE, 1, PAGE);   /* written before the migration */
	memset(r->mem.regions[0].host + 5 * PAGE, 2, 2 * PAGE);
	memset(r->mem.regions[0].host + 9 * PAGE, 3, PAGE);
	assert_int_equal(fallocate(r->mem.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(9 * PAGE), PAGE), 0);
	assert_int_equal(backed_pages(&r->mem), 3);
	assert_int_equal(dirty_log_start(&r->dl, &r->mem, &fake_ops, &r->kvm, r->err, sizeof(r->err)), 0);
	assert_true(r->kvm.logging[0]);
	assert_runs(r, "0x0+1 0x5000+2");
	assert_int_equal(backed_pages(&r->mem), 3);
	/* Nothing written since: the next round has nothing to send. */
	assert_int_equal(fetch(r)->count, 0);
	dirty_log_stop(&r->dl);
	assert_false(r->kvm.logging[0]);
	rig_free(r);
}

static void the_first_fetch_reports_the_pages_in_use_and_turns_kvm_logging_on(void **state)
{
	(void)state;
	first_fetch_reports_the_pages_in_use(false);
}

/* KVM_DIRTY_LOG_INITIALLY_SET (with manual protection) reports every page at first: the same. */
static void the_same_where_kvm_reports_every_page_at_first(void **state)
{
	(void)state;
	first_fetch_reports_the_pages_in_use(true);
}

/* RAM in private anonymous memory (merge=on) is found through the page map the same way. */
static void the_first_fetch_of_private_ram_reports_the_pages_in_use(void **state)
{
	(void)state;
	struct rig *r = rig_new_backed(16 * MiB, GUEST_MEM_MERGEABLE);
	if (!r) /* no KSM on this host */
		skip();
	memset(r->mem.regions[0].host + 3 * PAGE, 1, PAGE);
	memset(r->mem.regions[0].host + 4000 * PAGE, 1, PAGE);
	assert_int_equal(dirty_log_start(&r->dl, &r->mem, &fake_ops, &r->kvm, r->err, sizeof(r->err)), 0);
	assert_runs(r, "0x3000+1 0xfa0000+1");
	rig_free(r);
}

static void a_write_crossing_a_page_boundary_marks_both_pages_and_no_other(void **state)
{
	(void)state;
	struct rig *r = rig_new(16 * MiB);
	start_and_drain(r);
	uint8_t buf[100];
	memset(buf, 0x77, sizeof(buf));
	assert_int_equal(guest_mem_write(&r->mem, 0x1ff0, buf, sizeof(buf)), 0);
	assert_runs(r, "0x1000+2");
	/* Exactly one page: the first byte of a page and the last byte of another. */
	assert_int_equal(guest_mem_write(&r->mem, 0x5000, buf, 1), 0);
	assert_int_equal(guest_mem_write(&r->mem, 0x7fff, buf, 1), 0);
	assert_runs(r, "0x5000+1 0x7000+1");
	/* A run longer than a bitmap word (64 pages) across a word boundary. */
	uint8_t *big = calloc(1, 70 * PAGE);
	assert_int_equal(guest_mem_write(&r->mem, 60 * PAGE + 5, big, 69 * PAGE), 0);
	free(big);
	assert_runs(r, "0x3c000+70");
	rig_free(r);
}

static void the_last_page_of_each_region_and_ram_above_4gib_are_marked(void **state)
{
	(void)state;
	/* 3 GiB below the MMIO hole, 8 MiB above 4 GiB: the pages are never touched, only mapped. */
	struct rig *r = rig_new(3 * GiB + 8 * MiB);
	assert_int_equal(r->mem.nregions, 2);
	start_and_drain(r);
	uint64_t v = 1;
	assert_int_equal(guest_mem_write(&r->mem, GUEST_MEM_LOW_LIMIT - 8, &v, 8), 0);
	assert_int_equal(guest_mem_write(&r->mem, GUEST_MEM_HIGH_BASE + 5 * PAGE + 10, &v, 8), 0);
	assert_int_equal(guest_mem_write(&r->mem, GUEST_MEM_HIGH_BASE + 8 * MiB - 1, &v, 1), 0);
	assert_runs(r, "0xbffff000+1 0x100005000+1 0x1007ff000+1");
	/* The high region's pages are region 1's bits: page 5 and its last page. */
	rig_free(r);
}

static void reads_mark_nothing(void **state)
{
	(void)state;
	struct rig *r = rig_new(16 * MiB);
	start_and_drain(r);
	uint8_t buf[3 * PAGE];
	assert_int_equal(guest_mem_read(&r->mem, 0x3000, buf, sizeof(buf)), 0);
	const uint8_t *p = gpa_to_host(&r->mem, 0x9000, PAGE);
	assert_non_null(p);
	assert_int_equal(p[0], 0);
	assert_int_equal(fetch(r)->count, 0);
	rig_free(r);
}

static void nothing_is_marked_while_tracking_is_off(void **state)
{
	(void)state;
	struct guest_mem m;
	assert_int_equal(guest_mem_init(&m, 4 * MiB), 0);
	uint32_t v = 5;
	/* Never started: no bitmap exists at all, the write only checks the switch. */
	assert_int_equal(guest_mem_write(&m, 0x2000, &v, 4), 0);
	assert_null(m.regions[0].written);
	/* Started, then stopped: the bitmap stays, and a write after the stop leaves it clear. */
	assert_int_equal(write_track_start(&m), 0);
	write_track_stop(&m);
	assert_int_equal(guest_mem_write(&m, 0x2000, &v, 4), 0);
	guest_mem_wrote(&m, gpa_to_host_write(&m, 0x4000, 4), 4);
	uint64_t bits[16] = { 0 };
	assert_int_equal(write_track_take(&m, 0, bits), 0);
	/* On again: only what is written from now on. */
	assert_int_equal(write_track_start(&m), 0);
	assert_int_equal(guest_mem_write(&m, 0x3000, &v, 4), 0);
	assert_int_equal(write_track_take(&m, 0, bits), 1);
	assert_int_equal(bits[0], 1ull << 3);
	guest_mem_destroy(&m);
}

static void a_fetch_is_the_union_of_the_vcpus_and_vmons_writes(void **state)
{
	(void)state;
	struct rig *r = rig_new(16 * MiB);
	start_and_drain(r);
	uint8_t b = 1;
	vcpu_writes(r, 7 * PAGE);
	assert_int_equal(guest_mem_write(&r->mem, 9 * PAGE + 1, &b, 1), 0);
	/* Both saw page 8: reported once. */
	vcpu_writes(r, 8 * PAGE);
	assert_int_equal(guest_mem_write(&r->mem, 8 * PAGE, &b, 1), 0);
	const struct dirty_pages *p = fetch(r);
	assert_int_equal(p->count, 3);
	char got[128];
	runs_of(&r->mem, p, got, sizeof(got));
	assert_string_equal(got, "0x7000+3");
	/* Both logs were reset. */
	assert_int_equal(fetch(r)->count, 0);
	rig_free(r);
}

static void a_balloon_discard_and_an_iovec_read_mark_their_pages(void **state)
{
	(void)state;
	struct rig *r = rig_new(16 * MiB);
	start_and_drain(r);
	/* The discarded page now reads as zero: the destination must get the zero too. */
	assert_int_equal(guest_mem_discard(&r->mem, 0x20000, 2 * PAGE), 0);
	assert_runs(r, "0x20000+2");
	/* A readv() into two segments that filled only the first and part of the second. */
	struct iovec iov[2] = { { gpa_to_host_write(&r->mem, 0x40000, 100), 100 },
				{ gpa_to_host_write(&r->mem, 0x50000, 2 * PAGE), 2 * PAGE } };
	guest_mem_wrote_iov(&r->mem, iov, 2, 100 + 10);
	assert_runs(r, "0x40000+1 0x50000+1");
	rig_free(r);
}

static void a_failing_kvm_log_is_reported_in_one_sentence(void **state)
{
	(void)state;
	struct rig *r = rig_new(4 * MiB);
	start_and_drain(r);
	r->kvm.fail_fetch = -EINVAL;
	const struct dirty_pages *p;
	assert_int_equal(dirty_log_fetch(&r->dl, &p, r->err, sizeof(r->err)), -EINVAL);
	assert_non_null(strstr(r->err, "dirty-page log of guest memory region 0"));
	r->kvm.fail_fetch = 0;
	rig_free(r);
}

/* ---- several writers at once ---- */

#define WRITERS 4
#define STRESS_PAGES 1024 /* 4 MiB */

struct writer {
	struct guest_mem *mem;
	unsigned int id;
};

/* Every page of the writer's share (page % WRITERS == id), once each. */
static void *write_share_once(void *arg)
{
	struct writer *w = arg;
	for (uint64_t page = w->id; page < STRESS_PAGES; page += WRITERS) {
		uint8_t b = (uint8_t)page;
		assert_int_equal(guest_mem_write(w->mem, page * PAGE + 17, &b, 1), 0);
	}
	return NULL;
}

static void concurrent_writers_lose_no_bit(void **state)
{
	(void)state;
	for (int rep = 0; rep < 20; rep++) {
		struct rig *r = rig_new(STRESS_PAGES * PAGE);
		start_and_drain(r);
		pthread_t t[WRITERS];
		struct writer w[WRITERS];
		for (unsigned int i = 0; i < WRITERS; i++) {
			w[i] = (struct writer){ .mem = &r->mem, .id = i };
			assert_int_equal(pthread_create(&t[i], NULL, write_share_once, &w[i]), 0);
		}
		for (unsigned int i = 0; i < WRITERS; i++)
			pthread_join(t[i], NULL);
		/* Writers share every 64-bit word of the bitmap: none may have overwritten another's bit. */
		assert_int_equal(fetch(r)->count, STRESS_PAGES);
		rig_free(r);
	}
}

/*
 * A migration thread keeps fetching and copying the reported pages into a destination while
 * writers store a new value into every page once: three through vmon's writing form (devices),
 * one as a vCPU through the fake KVM log. After the writers stop and one last fetch (stop and
 * copy), the destination must hold every new value: each write is the last one of its page, so
 * a single lost mark leaves an old value behind. Repeated, so the fetches land at every point
 * of the writes.
 */
struct migrator {
	struct rig *r;
	uint64_t *dest; /* one u64 per page: what the destination holds */
	_Atomic bool stop, running;
	unsigned int rounds;
};

static void copy_reported(struct rig *r, const struct dirty_pages *p, uint64_t *dest)
{
	uint64_t cursor = 0, gpa, count;
	while (dirty_pages_next_run(&r->mem, p, &cursor, &gpa, &count))
		for (uint64_t i = 0; i < count; i++)
			assert_int_equal(guest_mem_read(&r->mem, gpa + i * PAGE, &dest[gpa / PAGE + i], 8), 0);
}

static void *migrate(void *arg)
{
	struct migrator *m = arg;
	m->running = true;
	while (!m->stop) {
		copy_reported(m->r, fetch(m->r), m->dest);
		m->rounds++;
	}
	return NULL;
}

struct pass_writer {
	struct rig *r;
	unsigned int id;
	uint64_t value;
};

static void *write_share(void *arg)
{
	struct pass_writer *w = arg;
	for (uint64_t page = w->id; page < STRESS_PAGES; page += WRITERS) {
		/* Spread the pass out, so fetches land between and during the writes. */
		for (volatile int spin = 0; spin < 300; spin++)
			;
		if (w->id == 0) {
			/* A vCPU: stores, then KVM logs the page (as its write fault does, before a later fetch). */
			uint64_t *p = gpa_to_host_write(&w->r->mem, page * PAGE, 8);
			__atomic_store_n(p, w->value, __ATOMIC_RELAXED);
			vcpu_writes(w->r, page * PAGE);
		} else {
			assert_int_equal(guest_mem_write(&w->r->mem, page * PAGE, &w->value, 8), 0);
		}
	}
	return NULL;
}

static void fetch_and_reset_never_loses_a_page_written_meanwhile(void **state)
{
	(void)state;
	struct rig *r = rig_new(STRESS_PAGES * PAGE);
	assert_int_equal(dirty_log_start(&r->dl, &r->mem, &fake_ops, &r->kvm, r->err, sizeof(r->err)), 0);
	uint64_t *dest = calloc(STRESS_PAGES, sizeof(uint64_t));
	unsigned int rounds = 0;
	for (uint64_t pass = 1; pass <= 300; pass++) {
		struct migrator m = { .r = r, .dest = dest };
		struct pass_writer w[WRITERS];
		pthread_t tm, tw[WRITERS];
		assert_int_equal(pthread_create(&tm, NULL, migrate, &m), 0);
		while (!m.running)
			sched_yield();
		for (unsigned int i = 0; i < WRITERS; i++) {
			w[i] = (struct pass_writer){ .r = r, .id = i, .value = pass };
			assert_int_equal(pthread_create(&tw[i], NULL, write_share, &w[i]), 0);
		}
		for (unsigned int i = 0; i < WRITERS; i++)
			pthread_join(tw[i], NULL);
		m.stop = true;
		pthread_join(tm, NULL);
		rounds += m.rounds;
		copy_reported(r, fetch(r), dest);
		for (uint64_t page = 0; page < STRESS_PAGES; page++)
			if (dest[page] != pass)
				fail_msg("pass %llu: page %llu was written with %llu but the destination got %llu: a write was "
					 "lost",
					 (unsigned long long)pass, (unsigned long long)page, (unsigned long long)pass,
					 (unsigned long long)dest[page]);
	}
	print_message("%u fetches during 300 passes of %u writes\n", rounds, STRESS_PAGES);
	assert_true(rounds > 300);
	free(dest);
	rig_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(the_first_fetch_reports_the_pages_in_use_and_turns_kvm_logging_on),
		cmocka_unit_test(the_same_where_kvm_reports_every_page_at_first),
		cmocka_unit_test(the_first_fetch_of_private_ram_reports_the_pages_in_use),
		cmocka_unit_test(a_write_crossing_a_page_boundary_marks_both_pages_and_no_other),
		cmocka_unit_test(the_last_page_of_each_region_and_ram_above_4gib_are_marked),
		cmocka_unit_test(reads_mark_nothing),
		cmocka_unit_test(nothing_is_marked_while_tracking_is_off),
		cmocka_unit_test(a_fetch_is_the_union_of_the_vcpus_and_vmons_writes),
		cmocka_unit_test(a_balloon_discard_and_an_iovec_read_mark_their_pages),
		cmocka_unit_test(a_failing_kvm_log_is_reported_in_one_sentence),
		cmocka_unit_test(concurrent_writers_lose_no_bit),
		cmocka_unit_test(fetch_and_reset_never_loses_a_page_written_meanwhile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
