/*
 * The pre-copy source engine against a fake VM over loopback: a destination thread reads the
 * stream into its own RAM while a writer keeps dirtying the source's RAM, half through vmon's
 * writes (guest_mem_write) and half as a vCPU would (a fake KVM dirty log). What a user relies
 * on: the destination ends with the paused source's RAM byte for byte, and every failure before
 * the destination's answer leaves the guest running on the source with the reason shown.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api_fake_vm.h"
#include "api/api_routes.h"
#include "lib/util.h"
#include "memory/dirty_log.h"
#include "memory/guest_mem.h"
#include "memory/write_track.h"

#include "host_memory.h"
#include "migration/handshake.h"
#include "migration/migrate_dest.h"
#include "migration/postcopy_dest.h"
#include "migration/migrate_source.h"
#include "migration/stream.h"
#include "migration/transport.h"
#include "state/snapshot_format.h"

#define RAM (16 * MiB)
#define PAGE 4096u

/* ---- the source: a fake VM, its RAM, a fake KVM log, a writer ---- */

struct source {
	struct fake_vm f;
	struct guest_mem mem;
	pthread_mutex_t kvm_lock;
	uint64_t *kvm_bits[GUEST_MEM_MAX_REGIONS];

	pthread_mutex_t write_lock; /* held by the writer per write: pause waits for it, like a vCPU */
	bool frozen, stop_writer;
	unsigned int writes_left;
	uint64_t writes;
	pthread_t writer;

	uint32_t throttle_pct; /* auto-converge's share of time the "vCPU" is held (under write_lock) */
	uint32_t max_throttle_pct;
	int pauses, resumes, flushes, migrated, lost;
	unsigned int state_delay_ms; /* a slow state build: the switch lasts that long */
	struct mig_config cfg;
};

static int fake_set_logging(void *ctx, const struct guest_mem *mem, int slot, bool on)
{
	(void)ctx, (void)mem, (void)slot, (void)on;
	return 0;
}

static int fake_fetch(void *ctx, const struct guest_mem *mem, int slot, uint64_t *bits)
{
	struct source *s = ctx;
	uint64_t words = write_track_words(&mem->regions[slot]);
	pthread_mutex_lock(&s->kvm_lock);
	memcpy(bits, s->kvm_bits[slot], words * sizeof(uint64_t));
	memset(s->kvm_bits[slot], 0, words * sizeof(uint64_t));
	pthread_mutex_unlock(&s->kvm_lock);
	return 0;
}

static const struct dirty_log_ops fake_kvm_ops = { .set_logging = fake_set_logging, .fetch = fake_fetch };

static int src_pause(void *ctx, char *err, size_t errlen)
{
	struct source *s = ctx;
	pthread_mutex_lock(&s->write_lock);
	s->frozen = true;
	pthread_mutex_unlock(&s->write_lock);
	int rc = vm_pause(&s->f.vm);
	s->pauses++;
	return rc ? err_fail(err, errlen, rc, "the fake VM did not pause") : 0;
}

static void src_resume(void *ctx)
{
	struct source *s = ctx;
	vm_resume(&s->f.vm);
	pthread_mutex_lock(&s->write_lock);
	s->frozen = false;
	pthread_mutex_unlock(&s->write_lock);
	s->resumes++;
}

static int src_flush(void *ctx, char *err, size_t errlen)
{
	(void)err, (void)errlen;
	((struct source *)ctx)->flushes++;
	return 0;
}

static int src_state(void *ctx, uint8_t **out, size_t *len, char *err, size_t errlen)
{
	struct source *s = ctx;
	sleep_ms(s->state_delay_ms);
	struct snap_writer w;
	snap_writer_init(&w);
	int rc = snap_writer_add(&w, "config", "{\"cpus\":2}", 10);
	if (!rc)
		rc = snap_writer_build(&w, 1, &s->cfg.cpu, out, len);
	snap_writer_free(&w);
	return rc ? err_fail(err, errlen, rc, "cannot build the state") : 0;
}

static void src_migrated(void *ctx, const char *destination)
{
	(void)destination;
	((struct source *)ctx)->migrated++;
}

static void src_lost(void *ctx, const char *why)
{
	(void)why;
	((struct source *)ctx)->lost++;
}

/* Auto-converge holds the writer off pct % of the time, as vm_set_throttle() does the vCPUs. */
static void src_throttle(void *ctx, uint32_t pct)
{
	struct source *s = ctx;
	pthread_mutex_lock(&s->write_lock);
	s->throttle_pct = pct;
	s->max_throttle_pct = MAX(s->max_throttle_pct, pct);
	pthread_mutex_unlock(&s->write_lock);
}

static const struct migrate_vm_ops src_ops = {
	.pause = src_pause, .resume = src_resume, .flush_disks = src_flush,
	.build_state = src_state, .migrated = src_migrated, .lost = src_lost,
	.set_throttle = src_throttle,
};

/* Writes 64 random bytes to a random page, as vmon (tracked) or as a vCPU (the fake KVM log). */
static void *writer_thread(void *arg)
{
	struct source *s = arg;
	unsigned int seed = 12345;
	for (;;) {
		pthread_mutex_lock(&s->write_lock);
		if (s->stop_writer) {
			pthread_mutex_unlock(&s->write_lock);
			break;
		}
		if (!s->frozen && s->writes_left) {
			uint64_t page = (uint64_t)rand_r(&seed) % (RAM / PAGE);
			uint8_t data[64];
			for (unsigned int i = 0; i < sizeof(data); i++)
				data[i] = (uint8_t)rand_r(&seed);
			uint64_t gpa = page * PAGE + (uint64_t)(rand_r(&seed) % (PAGE - sizeof(data)));
			if (s->writes & 1) {
				assert_int_equal(guest_mem_write(&s->mem, gpa, data, sizeof(data)), 0);
			} else {
				memcpy(gpa_to_host_write(&s->mem, gpa, sizeof(data)), data, sizeof(data));
				pthread_mutex_lock(&s->kvm_lock);
				s->kvm_bits[0][page / 64] |= 1ull << (page % 64);
				pthread_mutex_unlock(&s->kvm_lock);
			}
			s->writes++;
			s->writes_left--;
		}
		uint32_t pct = s->throttle_pct < 100 ? s->throttle_pct : 99;
		pthread_mutex_unlock(&s->write_lock);
		struct timespec ts = { 0, 100 * 1000 * 100 / (long)(100 - pct) };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static void source_init(struct source *s, unsigned int writes)
{
	memset(s, 0, sizeof(*s));
	fake_vm_init(&s->f, 2, false, true);
	assert_int_equal(guest_mem_init(&s->mem, RAM), 0);
	assert_int_equal(s->mem.nregions, 1);
	/* Half of RAM holds data, the rest stays zero (sent as zero runs). */
	unsigned int seed = 7;
	for (uint64_t gpa = 0; gpa < RAM / 2; gpa += 4)
		*(uint32_t *)gpa_to_host_write(&s->mem, gpa, 4) = (uint32_t)rand_r(&seed);
	pthread_mutex_init(&s->kvm_lock, NULL);
	pthread_mutex_init(&s->write_lock, NULL);
	s->kvm_bits[0] = calloc(write_track_words(&s->mem.regions[0]), sizeof(uint64_t));
	s->cfg = (struct mig_config){ .ram_size = RAM, .cpus = 2, .cpuid_crc = 0xc0ffee,
				      .cpu = { .vendor = "GenuineIntel", .signature = 0x906ea } };
	s->writes_left = writes;
	assert_int_equal(pthread_create(&s->writer, NULL, writer_thread, s), 0);
}

static void source_destroy(struct source *s)
{
	pthread_mutex_lock(&s->write_lock);
	s->stop_writer = true;
	pthread_mutex_unlock(&s->write_lock);
	pthread_join(s->writer, NULL);
	fake_vm_destroy(&s->f);
	guest_mem_destroy(&s->mem);
	free(s->kvm_bits[0]);
	pthread_mutex_destroy(&s->kvm_lock);
	pthread_mutex_destroy(&s->write_lock);
}

static struct migrate_source_vm source_vm(struct source *s)
{
	return (struct migrate_source_vm){ .mem = &s->mem, .dirty_ops = &fake_kvm_ops, .dirty_ctx = s,
					   .cfg = s->cfg, .vmon_version = "0.1.0+gtest", .ops = &src_ops, .ctx = s };
}

/* ---- the destination thread ---- */

/*
 * DEST_RUN and DEST_REFUSE are vmon's destination (migrate_dest.h); the others a stand-in that
 * reads the stream itself, to die where a real destination could.
 */
enum dest_mode {
	DEST_RUN, DEST_REFUSE, DEST_DIE_MID_TRANSFER, DEST_DIE_BEFORE_ANSWER,
	/* Post-copy on vmon's destination: the guest runs and reads all of RAM; refused; or gone once started. */
	DEST_PC_RUN, DEST_PC_REFUSE, DEST_PC_DIE_AFTER_START,
};

struct dest {
	enum dest_mode mode;
	struct mig_listener *l;
	struct guest_mem mem;
	uint32_t rounds;
	int states;
	int attempts; /* sources the real destination takes before giving up */
	struct migrate_dest md;
	struct postcopy_dest *pc;
	int rc;
	char err[512];
};

static uint16_t free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static int dest_check(void *opaque, const struct mig_peer *peer, char *reason, size_t len)
{
	(void)opaque;
	if (peer->compat_len != sizeof(struct mig_config)) {
		snprintf(reason, len, "the source sent no guest configuration");
		return -EPERM;
	}
	return 0;
}

static int real_dest_check(void *opaque, const struct mig_config *cfg, char *reason, size_t len)
{
	struct dest *d = opaque;
	if (d->mode == DEST_REFUSE) {
		snprintf(reason, len, "this host has 2 GiB free and the guest needs 8 GiB");
		return -EPERM;
	}
	assert_int_equal(cfg->ram_size, RAM);
	assert_string_equal(cfg->cpu.vendor, "GenuineIntel");
	return 0;
}

/* vmon's destination: the stream into its own RAM, then the answer that the guest runs here. */
static void real_dest(struct dest *d)
{
	struct migrate_dest_params p = { .vmon_version = "0.1.0+gtest", .accept_wait_ms = 5000, .timeout_ms = 5000,
					 .attempts = d->attempts ? d->attempts : 1, .check = real_dest_check,
					 .opaque = d };
	if ((d->rc = migrate_dest_receive(&d->md, d->l, &p, d->err, sizeof(d->err))))
		return;
	d->rounds = d->md.rounds;
	d->states = d->md.state.len > 0;
	d->rc = migrate_dest_answer(&d->md, NULL, d->err, sizeof(d->err));
}

/*
 * vmon's destination in post-copy: RAM registered with userfaultfd once the switch arrives; then
 * the "guest" (this thread) reads every page, each one it lacks fetched from the source.
 */
static void real_dest_postcopy(struct dest *d)
{
	struct migrate_dest_params p = { .vmon_version = "0.1.0+gtest", .accept_wait_ms = 5000, .timeout_ms = 5000,
					 .attempts = 1, .check = real_dest_check, .opaque = d };
	if ((d->rc = migrate_dest_receive(&d->md, d->l, &p, d->err, sizeof(d->err))))
		return;
	if (!d->md.postcopy) {
		d->rc = -EPROTO;
		snprintf(d->err, sizeof(d->err), "the source did not switch to post-copy");
		return;
	}
	d->rounds = d->md.rounds;
	d->states = d->md.state.len > 0;
	struct migrate_dest *m = &d->md;
	if ((d->rc = postcopy_dest_start(&d->pc, &m->mem, m->conn, m->pc_offset, m->pc_discard_runs, m->pc_pending,
					 d->err, sizeof(d->err))))
		return;
	if (d->mode == DEST_PC_REFUSE) {
		d->rc = postcopy_dest_tell(d->pc, "the destination has no tap device vm0", d->err, sizeof(d->err));
		postcopy_dest_free(d->pc);
		d->pc = NULL;
		return;
	}
	if ((d->rc = postcopy_dest_tell(d->pc, NULL, d->err, sizeof(d->err))))
		return;
	if (d->mode == DEST_PC_DIE_AFTER_START) {
		postcopy_dest_free(d->pc); /* gone before the rest arrived: its socket closes */
		d->pc = NULL;
		return;
	}
	uint64_t sum = 0;
	for (uint64_t gpa = 0; gpa < RAM; gpa += PAGE)
		sum += *(const volatile uint8_t *)gpa_to_host(&m->mem, gpa, 1);
	(void)sum;
	d->rc = postcopy_dest_wait(d->pc, 10000, d->err, sizeof(d->err));
}

static void *dest_thread(void *arg)
{
	struct dest *d = arg;
	if (d->mode == DEST_RUN || d->mode == DEST_REFUSE) {
		real_dest(d);
		return NULL;
	}
	if (d->mode >= DEST_PC_RUN) {
		real_dest_postcopy(d);
		return NULL;
	}
	struct mig_conn_opts o = { .timeout_ms = 5000 };
	struct mig_conn *c = NULL;
	d->rc = mig_listener_accept(d->l, 5000, &o, &c, d->err, sizeof(d->err));
	if (d->rc)
		return NULL;
	struct mig_hello h = { "0.1.0+gtest", NULL, 0, dest_check, d };
	struct mig_peer peer;
	if ((d->rc = mig_handshake(c, &h, &peer, d->err, sizeof(d->err)))) {
		mig_conn_close(c);
		return NULL;
	}
	struct mig_io io = mig_conn_io(c);
	struct mig_reader r;
	d->rc = mig_reader_open_io(&r, &io, d->err, sizeof(d->err));
	if (!d->rc)
		d->rc = mig_reader_set_memory(&r, &d->mem, d->err, sizeof(d->err));
	uint64_t pages = 0;
	while (!d->rc) {
		struct mig_event ev;
		if ((d->rc = mig_reader_next(&r, &ev, d->err, sizeof(d->err))))
			break;
		if (ev.kind == MIG_EV_PAGES || ev.kind == MIG_EV_ZERO)
			pages += ev.count;
		if (d->mode == DEST_DIE_MID_TRANSFER && pages > 512) {
			d->rc = -EPIPE; /* as if SIGKILLed: the socket closes without a word */
			break;
		}
		if (ev.kind == MIG_EV_ROUND)
			d->rounds = ev.round;
		if (ev.kind == MIG_EV_STATE) {
			d->states++;
			snap_file_free(&ev.state);
		}
		if (ev.kind == MIG_EV_END)
			break;
	}
	if (!d->rc && d->mode != DEST_DIE_BEFORE_ANSWER)
		d->rc = mig_outcome_send(c, NULL, d->err, sizeof(d->err));
	mig_reader_free(&r);
	mig_conn_close(c);
	return NULL;
}

static void dest_start(struct dest *d, enum dest_mode mode, int attempts, char *address, size_t len, pthread_t *t)
{
	memset(d, 0, sizeof(*d));
	d->mode = mode;
	d->attempts = attempts;
	assert_int_equal(guest_mem_init(&d->mem, RAM), 0);
	snprintf(address, len, "tcp:127.0.0.1:%u", free_port());
	struct mig_address a;
	char err[256];
	assert_int_equal(mig_address_parse(address, &a, err, sizeof(err)), 0);
	assert_int_equal(mig_listener_open(&d->l, &a, err, sizeof(err)), 0);
	assert_int_equal(pthread_create(t, NULL, dest_thread, d), 0);
}

static void dest_cleanup(struct dest *d)
{
	mig_listener_close(d->l);
	guest_mem_destroy(&d->mem);
	postcopy_dest_free(d->pc);
	migrate_dest_free(&d->md);
}

static void dest_finish(struct dest *d, pthread_t t)
{
	pthread_join(t, NULL);
	dest_cleanup(d);
}

static void wait_done(struct migrate_source *m, struct migrate_progress *p)
{
	for (int i = 0; i < 3000 && migrate_source_running(m); i++)
		sleep_ms(10);
	assert_false(migrate_source_running(m));
	migrate_source_progress(m, p);
}

/* Migrates source s to vmon's destination d with p, both ends until they are done. */
static struct migrate_source *migrate_to_vmon(struct source *s, struct dest *d, struct migrate_params *p,
					      struct migrate_progress *pr)
{
	pthread_t t;
	dest_start(d, DEST_RUN, 1, p->destination, sizeof(p->destination), &t);
	struct migrate_source_vm vm = source_vm(s);
	struct migrate_source *m;
	char err[512] = "";
	assert_int_equal(migrate_source_start(&m, p, &vm, err, sizeof(err)), 0);
	wait_done(m, pr);
	pthread_join(t, NULL);
	return m;
}

/* ---- the cases ---- */

static void a_guest_writing_all_along_arrives_byte_for_byte_after_several_rounds(void **state)
{
	(void)state;
	struct source s;
	source_init(&s, 4000);
	struct dest d;
	struct migrate_params p = { .max_downtime_ms = 5, .bandwidth_mbps = 400 };
	struct migrate_progress pr;
	struct migrate_source *m = migrate_to_vmon(&s, &d, &p, &pr);
	assert_string_equal(pr.reason, "");
	assert_int_equal(pr.state, MIGRATE_COMPLETED);
	assert_int_equal(d.rc, 0);
	assert_int_equal(d.states, 1);
	assert_true(pr.round > 1);
	assert_true(d.rounds == pr.round + 1); /* the rounds while running and the one while paused */
	assert_true(s.writes > 100);
	assert_int_equal(s.pauses, 1);
	assert_int_equal(s.flushes, 1);
	assert_int_equal(s.resumes, 0);
	assert_int_equal(s.migrated, 1);
	assert_int_equal(atomic_load(&s.f.vm.state), VM_PAUSED);
	assert_true(pr.bytes_sent > RAM / 2);
	assert_true(pr.total_ms >= pr.downtime_ms);
	assert_memory_equal(d.md.mem.regions[0].host, s.mem.regions[0].host, RAM);
	assert_true(d.md.bytes > RAM / 2);
	dest_cleanup(&d);
	print_message("%u rounds, %llu KiB, downtime %llu ms, total %llu ms, %llu writes, throttled to %u%% at most\n",
		      pr.round, (unsigned long long)pr.bytes_sent / 1024, (unsigned long long)pr.downtime_ms,
		      (unsigned long long)pr.total_ms, (unsigned long long)s.writes, s.max_throttle_pct);
	assert_int_equal(s.throttle_pct, 0); /* lifted once the guest is paused for the switch */
	migrate_source_free(m);
	source_destroy(&s);
}

/* Host memory backing a guest's RAM (its memfd's allocated blocks), in pages. */
static uint64_t backed_pages(const struct guest_mem *mem)
{
	return fd_allocated_bytes(mem->fd) / PAGE;
}

/*
 * RAM the guest never touched is a hole that reads as zeros: the migration neither reads it on
 * the source (which would make that host back it) nor writes it on the destination.
 */
static void untouched_ram_is_backed_on_neither_host(void **state)
{
	(void)state;
	struct source s;
	source_init(&s, 0); /* half of RAM written, the other half never touched */
	uint64_t before = backed_pages(&s.mem);
	assert_true(before <= RAM / PAGE / 2 + 1);
	struct dest d;
	struct migrate_params p = { .max_downtime_ms = 300 };
	struct migrate_progress pr;
	struct migrate_source *m = migrate_to_vmon(&s, &d, &p, &pr);
	assert_int_equal(pr.state, MIGRATE_COMPLETED);
	uint64_t source_after = backed_pages(&s.mem), dest_after = backed_pages(&d.md.mem);
	print_message("pages backed: source %llu before, %llu after; destination %llu (of %llu)\n",
		      (unsigned long long)before, (unsigned long long)source_after, (unsigned long long)dest_after,
		      (unsigned long long)(RAM / PAGE));
	assert_int_equal(source_after, before);
	assert_true(dest_after <= before);
	/* (Comparing reads every page, which backs them all: only after the counts.) */
	assert_memory_equal(d.md.mem.regions[0].host, s.mem.regions[0].host, RAM);
	dest_cleanup(&d);
	migrate_source_free(m);
	source_destroy(&s);
}

/* A source that shakes hands, sends part of RAM and goes away, as one whose host died. */
static void send_part_and_vanish(const char *address, struct source *s)
{
	struct mig_address a;
	char err[512];
	assert_int_equal(mig_address_parse(address, &a, err, sizeof(err)), 0);
	struct mig_conn_opts o = { .timeout_ms = 5000 };
	struct mig_conn *c;
	assert_int_equal(mig_conn_connect(&c, &a, &o, err, sizeof(err)), 0);
	struct mig_hello h = { "0.1.0+gtest", &s->cfg, sizeof(s->cfg), NULL, NULL };
	assert_int_equal(mig_handshake(c, &h, NULL, err, sizeof(err)), 0);
	struct mig_io io = mig_conn_io(c);
	struct mig_writer w;
	assert_int_equal(mig_writer_start_io(&w, &io, "0.1.0+gtest", &s->cfg, err, sizeof(err)), 0);
	assert_int_equal(mig_writer_pages(&w, &s->mem, 0, 64, err, sizeof(err)), 0);
	mig_writer_free(&w);
	mig_conn_close(c);
}

static void a_destination_forgets_a_source_that_vanished_and_takes_the_next(void **state)
{
	(void)state;
	struct source s;
	source_init(&s, 0);
	struct dest d;
	pthread_t t;
	struct migrate_params p = { .max_downtime_ms = 50 };
	dest_start(&d, DEST_RUN, 2, p.destination, sizeof(p.destination), &t);
	send_part_and_vanish(p.destination, &s);
	struct migrate_source_vm vm = source_vm(&s);
	struct migrate_source *m;
	char err[512] = "";
	assert_int_equal(migrate_source_start(&m, &p, &vm, err, sizeof(err)), 0);
	struct migrate_progress pr;
	wait_done(m, &pr);
	pthread_join(t, NULL);
	assert_int_equal(pr.state, MIGRATE_COMPLETED);
	assert_int_equal(d.rc, 0);
	assert_int_equal(s.migrated, 1);
	assert_memory_equal(d.md.mem.regions[0].host, s.mem.regions[0].host, RAM);
	dest_cleanup(&d);
	migrate_source_free(m);
	source_destroy(&s);
}

/* A post-copy migration of a guest that keeps writing: 0, or skipped where the host has no userfaultfd. */
static void run_postcopy(enum dest_mode mode, struct source *s, struct dest *d, struct migrate_progress *pr)
{
	source_init(s, 1000000);
	pthread_t t;
	/* Paced and with a tight target, so round 1 leaves more than fits and the plan switches. */
	struct migrate_params p = { .max_downtime_ms = 1, .bandwidth_mbps = 200, .postcopy = true, .timeout_ms = 3000 };
	dest_start(d, mode, 1, p.destination, sizeof(p.destination), &t);
	struct migrate_source_vm vm = source_vm(s);
	struct migrate_source *m;
	char err[512] = "";
	assert_int_equal(migrate_source_start(&m, &p, &vm, err, sizeof(err)), 0);
	wait_done(m, pr);
	migrate_source_free(m);
	pthread_join(t, NULL);
	if (d->rc == -EOPNOTSUPP || d->rc == -EPERM) {
		print_message("no userfaultfd here: %s\n", d->err);
		dest_cleanup(d);
		source_destroy(s);
		skip();
	}
}

static void post_copy_brings_every_page_while_the_guest_runs_on_the_destination(void **state)
{
	(void)state;
	struct source s;
	struct dest d;
	struct migrate_progress pr;
	run_postcopy(DEST_PC_RUN, &s, &d, &pr);
	if (d.rc)
		print_message("destination: %s\n", d.err);
	assert_int_equal(d.rc, 0);
	assert_string_equal(pr.reason, "");
	assert_int_equal(pr.state, MIGRATE_COMPLETED);
	assert_int_equal(pr.round, 1);
	assert_int_equal(s.pauses, 1);
	assert_int_equal(s.resumes, 0);
	assert_int_equal(s.migrated, 1);
	assert_int_equal(s.lost, 0);
	assert_true(pr.downtime_ms <= pr.total_ms);
	assert_memory_equal(d.md.mem.regions[0].host, s.mem.regions[0].host, RAM);
	struct postcopy_dest_stats st;
	postcopy_dest_get_stats(d.pc, &st);
	print_message("post-copy: %llu pages installed, %llu asked for; downtime %llu ms, total %llu ms\n",
		      (unsigned long long)(st.pages + st.zero_pages), (unsigned long long)st.requests,
		      (unsigned long long)pr.downtime_ms, (unsigned long long)pr.total_ms);
	dest_cleanup(&d);
	source_destroy(&s);
}

static void a_destination_that_refuses_in_post_copy_has_the_guest_resumed(void **state)
{
	(void)state;
	struct source s;
	struct dest d;
	struct migrate_progress pr;
	run_postcopy(DEST_PC_REFUSE, &s, &d, &pr);
	assert_int_equal(pr.state, MIGRATE_FAILED);
	assert_non_null(strstr(pr.reason, "could not start the guest: the destination has no tap device vm0"));
	assert_int_equal(s.pauses, 1);
	assert_int_equal(s.resumes, 1);
	assert_int_equal(s.migrated, 0);
	assert_int_equal(s.lost, 0);
	assert_int_equal(atomic_load(&s.f.vm.state), VM_RUNNING);
	dest_cleanup(&d);
	source_destroy(&s);
}

static void a_destination_gone_after_the_guest_started_loses_the_vm_and_says_so(void **state)
{
	(void)state;
	struct source s;
	struct dest d;
	struct migrate_progress pr;
	run_postcopy(DEST_PC_DIE_AFTER_START, &s, &d, &pr);
	assert_int_equal(pr.state, MIGRATE_FAILED);
	assert_non_null(strstr(pr.reason, "post-copy failed after the guest started on the destination"));
	assert_int_equal(s.lost, 1);
	assert_int_equal(s.resumes, 0); /* the guest ran on there: resuming this copy would fork it */
	assert_int_equal(s.migrated, 0);
	dest_cleanup(&d);
	source_destroy(&s);
}

static void run_failing(enum dest_mode mode, bool cancel, struct source *s, struct migrate_progress *pr)
{
	source_init(s, cancel ? 1000000 : 0);
	struct dest d;
	pthread_t t;
	/* Slow enough that the cancel lands mid-transfer. */
	/* Paced, so the destination dies and the cancel lands while RAM is still going out. */
	struct migrate_params p = { .bandwidth_mbps = 64, .timeout_ms = 3000 };
	dest_start(&d, mode, 1, p.destination, sizeof(p.destination), &t);
	struct migrate_source_vm vm = source_vm(s);
	struct migrate_source *m;
	char err[512] = "";
	assert_int_equal(migrate_source_start(&m, &p, &vm, err, sizeof(err)), 0);
	if (cancel) {
		struct migrate_progress now;
		do {
			sleep_ms(10);
			migrate_source_progress(m, &now);
		} while (now.state != MIGRATE_PRECOPY || now.bytes_sent < 64 * 1024);
		assert_true(migrate_source_running(m));
		migrate_source_cancel(m);
	}
	wait_done(m, pr);
	migrate_source_free(m);
	dest_finish(&d, t);
	assert_int_equal(s->migrated, 0);
	assert_int_equal(s->pauses, s->resumes);
	assert_int_equal(atomic_load(&s->f.vm.state), VM_RUNNING);
	/* The fake vCPUs still make progress: the guest runs on the source. */
	uint64_t before = fake_progress(&s->f);
	sleep_ms(20);
	assert_true(fake_progress(&s->f) > before);
}

static void a_destination_that_dies_mid_transfer_leaves_the_guest_running_with_the_reason(void **state)
{
	(void)state;
	struct source s;
	struct migrate_progress pr;
	run_failing(DEST_DIE_MID_TRANSFER, false, &s, &pr);
	assert_int_equal(pr.state, MIGRATE_FAILED);
	assert_non_null(strstr(pr.reason, "closed the connection"));
	assert_int_equal(pr.round, 1);
	assert_int_equal(s.pauses, 0);
	source_destroy(&s);
}

static void a_destination_that_dies_before_its_answer_has_the_paused_guest_resumed(void **state)
{
	(void)state;
	struct source s;
	struct migrate_progress pr;
	run_failing(DEST_DIE_BEFORE_ANSWER, false, &s, &pr);
	assert_int_equal(pr.state, MIGRATE_FAILED);
	assert_non_null(strstr(pr.reason, "closed the connection before it said whether the guest runs there"));
	assert_int_equal(s.pauses, 1);
	assert_int_equal(s.flushes, 1);
	source_destroy(&s);
}

static void a_refusal_in_the_handshake_is_shown(void **state)
{
	(void)state;
	struct source s;
	struct migrate_progress pr;
	run_failing(DEST_REFUSE, false, &s, &pr);
	assert_int_equal(pr.state, MIGRATE_FAILED);
	assert_non_null(strstr(pr.reason, "refused the migration: this host has 2 GiB free and the guest needs 8 GiB"));
	assert_int_equal(s.pauses, 0);
	source_destroy(&s);
}

static void a_cancelled_migration_leaves_the_guest_running(void **state)
{
	(void)state;
	struct source s;
	struct migrate_progress pr;
	run_failing(DEST_RUN, true, &s, &pr);
	assert_int_equal(pr.state, MIGRATE_CANCELLED);
	assert_non_null(strstr(pr.reason, "cancelled"));
	source_destroy(&s);
}

static void bad_parameters_start_nothing(void **state)
{
	(void)state;
	struct source s;
	source_init(&s, 0);
	struct migrate_source_vm vm = source_vm(&s);
	struct migrate_source *m = (void *)1;
	char err[512] = "";
	struct migrate_params p = { .destination = "tcp:127.0.0.1" };
	assert_int_equal(migrate_source_start(&m, &p, &vm, err, sizeof(err)), -EINVAL);
	assert_null(m);
	assert_non_null(strstr(err, "the port is missing"));
	source_destroy(&s);
}

/* ---- the API routes, with the engine describing the fake VM ---- */

static void describe_fake(struct api_migrate *m, struct vm *vm, struct migrate_source_vm *out)
{
	(void)vm;
	*out = source_vm(m->opaque);
}

static json_t *call(struct api_ctx *ctx, const char *method, const char *path, const char *body, unsigned int want)
{
	struct api_reply r;
	api_handle(ctx, method, path, body, body ? strlen(body) : 0, false, &r);
	json_t *o = json_loadb(r.body, r.len, 0, NULL);
	if (r.status != want)
		print_message("%s %s: %u %.*s\n", method, path, r.status, (int)r.len, r.body);
	assert_int_equal(r.status, want);
	free(r.body);
	assert_non_null(o);
	return o;
}

static void assert_error_has(json_t *o, const char *text)
{
	const char *e = json_string_value(json_object_get(o, "error"));
	assert_non_null(e);
	if (!strstr(e, text))
		print_message("error: %s\n", e);
	assert_non_null(strstr(e, text));
	json_decref(o);
}

static void the_api_starts_shows_refuses_a_second_cancels_and_guards_the_switch(void **state)
{
	(void)state;
	struct source s;
	source_init(&s, 0);
	struct api_ctx ctx;
	api_ctx_init(&ctx, &s.f.vm);
	ctx.migrate.describe = describe_fake;
	ctx.migrate.opaque = &s;

	json_t *o = call(&ctx, "GET", "/vm/migration", NULL, 200);
	assert_string_equal(json_string_value(json_object_get(o, "state")), "none");
	json_decref(o);
	assert_error_has(call(&ctx, "PUT", "/vm/migrate", "{\"destination\": \"tcp:127.0.0.1\"}", 400),
			 "the port is missing");
	assert_error_has(call(&ctx, "PUT", "/vm/migrate", "{\"destination\": 5}", 400), "needs \"destination\"");
	assert_error_has(call(&ctx, "PUT", "/vm/migrate", "{\"destination\": \"tcp:h:1\", \"speed\": 1}", 400),
			 "unknown key \"speed\"");
	assert_error_has(call(&ctx, "PUT", "/vm/migrate", "{\"destination\": \"tcp:h:1\", \"max_downtime_ms\": -3}", 400),
			 "\"max_downtime_ms\" must be a whole number");
	assert_error_has(call(&ctx, "PUT", "/vm/migrate", "{\"destination\": \"tcp:h:1\", \"postcopy\": \"yes\"}", 400),
			 "\"postcopy\" must be true or false");
	assert_error_has(call(&ctx, "PUT", "/vm/migrate", "[1]", 400), "needs a JSON object");
	assert_error_has(call(&ctx, "DELETE", "/vm/migration", NULL, 409), "no migration is running");

	struct dest d;
	pthread_t t;
	char addr[64], body[256];
	dest_start(&d, DEST_RUN, 1, addr, sizeof(addr), &t);
	snprintf(body, sizeof(body), "{\"destination\": \"%s\", \"bandwidth_mbps\": 16, \"max_downtime_ms\": 300}", addr);
	o = call(&ctx, "PUT", "/vm/migrate", body, 202);
	assert_string_equal(json_string_value(json_object_get(o, "destination")), addr);
	assert_non_null(json_object_get(o, "bytes_sent"));
	assert_non_null(json_object_get(o, "expected_downtime_ms"));
	json_decref(o);
	assert_error_has(call(&ctx, "PUT", "/vm/migrate", body, 409), "a migration is already running");
	for (;;) {
		o = call(&ctx, "GET", "/vm/migration", NULL, 200);
		bool sending = !strcmp(json_string_value(json_object_get(o, "state")), "precopy") &&
			       json_integer_value(json_object_get(o, "bytes_sent")) > 64 * 1024;
		json_decref(o);
		if (sending)
			break;
		sleep_ms(10);
	}
	json_decref(call(&ctx, "DELETE", "/vm/migration", NULL, 200));
	while (migrate_source_running(ctx.migrate.src))
		sleep_ms(10);
	o = call(&ctx, "GET", "/vm/migration", NULL, 200);
	assert_string_equal(json_string_value(json_object_get(o, "state")), "cancelled");
	assert_string_equal(json_string_value(json_object_get(o, "reason")), "the migration was cancelled");
	json_decref(o);
	assert_int_equal(atomic_load(&s.f.vm.state), VM_RUNNING);
	dest_finish(&d, t);

	/* While the switch holds the guest paused, nobody resumes it; afterwards the source has stopped. */
	s.state_delay_ms = 300;
	dest_start(&d, DEST_RUN, 1, addr, sizeof(addr), &t);
	snprintf(body, sizeof(body), "{\"destination\": \"%s\"}", addr);
	json_decref(call(&ctx, "PUT", "/vm/migrate", body, 202));
	for (;;) {
		o = call(&ctx, "GET", "/vm/migration", NULL, 200);
		bool switching = !strcmp(json_string_value(json_object_get(o, "state")), "stop-and-copy");
		json_decref(o);
		if (switching)
			break;
		sleep_ms(5);
	}
	assert_error_has(call(&ctx, "PUT", "/vm/state", "{\"state\": \"running\"}", 409),
			 "paused for a migration's switch");
	while (migrate_source_running(ctx.migrate.src))
		sleep_ms(10);
	o = call(&ctx, "GET", "/vm/migration", NULL, 200);
	assert_string_equal(json_string_value(json_object_get(o, "state")), "completed");
	assert_true(json_integer_value(json_object_get(o, "downtime_ms")) >= 300);
	json_decref(o);
	assert_int_equal(s.migrated, 1);
	dest_finish(&d, t);
	api_ctx_destroy(&ctx);
	source_destroy(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_guest_writing_all_along_arrives_byte_for_byte_after_several_rounds),
		cmocka_unit_test(untouched_ram_is_backed_on_neither_host),
		cmocka_unit_test(a_destination_forgets_a_source_that_vanished_and_takes_the_next),
		cmocka_unit_test(post_copy_brings_every_page_while_the_guest_runs_on_the_destination),
		cmocka_unit_test(a_destination_that_refuses_in_post_copy_has_the_guest_resumed),
		cmocka_unit_test(a_destination_gone_after_the_guest_started_loses_the_vm_and_says_so),
		cmocka_unit_test(a_destination_that_dies_mid_transfer_leaves_the_guest_running_with_the_reason),
		cmocka_unit_test(a_destination_that_dies_before_its_answer_has_the_paused_guest_resumed),
		cmocka_unit_test(a_refusal_in_the_handshake_is_shown),
		cmocka_unit_test(a_cancelled_migration_leaves_the_guest_running),
		cmocka_unit_test(bad_parameters_start_nothing),
		cmocka_unit_test(the_api_starts_shows_refuses_a_second_cancels_and_guards_the_switch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
