#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host_memory.h"
#include "lib/log.h"
#include "virtio/virtio_balloon.h"
#include "virtio_rig.h"

#define RAM (8u << 20)
#define QSZ 64
#define INFLATEQ 0
#define DEFLATEQ 1
#define STATSQ 2
#define REPORTQ 3   /* with statistics negotiated; 2 without */
#define PAGES_AT (4u << 20) /* guest pages the tests fill and give back: clear of the rings and buffers */
#define PAGE VIRTIO_BALLOON_PAGE_SIZE
#define CFG(off) (VIRTIO_PCI_DEVICE_OFF + (off))

#define ALL_FEATURES                                                                                           \
	(VIRTIO_F_BIT(VIRTIO_BALLOON_F_STATS_VQ) | VIRTIO_F_BIT(VIRTIO_BALLOON_F_DEFLATE_ON_OOM) |                \
	 VIRTIO_F_BIT(VIRTIO_BALLOON_F_REPORTING))

struct rig {
	struct vrig v;
	struct virtio_balloon *b;
};

/* Guest RAM is a real memfd here, as in vmon, so freed pages show in the file's block count. */
static void rig_setup_backed(struct rig *r, const struct balloon_config *cfg, uint16_t queues, uint64_t features,
			     enum guest_mem_backing backing)
{
	static struct vrig_spec spec = { .ram = RAM, .device_id = VIRTIO_ID_BALLOON, .qsize = QSZ,
					 .max_qsize = VIRTIO_BALLOON_QUEUE_SIZE };
	spec.queues = queues;
	memset(r, 0, sizeof(*r));
	vrig_init(&r->v, &spec);
	free(r->v.ram);
	char err[256];
	assert_int_equal(guest_mem_init_backed(&r->v.mem, RAM, backing, err, sizeof(err)), 0);
	r->v.ram = r->v.mem.regions[0].host;
	assert_int_equal(virtio_balloon_create(&r->v.deps, cfg, &r->b), 0);
	vrig_attach(&r->v);
	start_driver(&r->v, features);
}

static void rig_setup_cfg(struct rig *r, const struct balloon_config *cfg, uint16_t queues, uint64_t features)
{
	rig_setup_backed(r, cfg, queues, features, GUEST_MEM_MEMFD);
}

static void rig_setup(struct rig *r)
{
	struct balloon_config cfg;
	config_balloon_defaults(&cfg);
	cfg.enabled = true;
	cfg.stats_interval_s = 0; /* tests that want ticks set their own */
	rig_setup_cfg(r, &cfg, 3, VIRTIO_F_BIT(VIRTIO_BALLOON_F_REPORTING) | VIRTIO_F_BIT(VIRTIO_BALLOON_F_DEFLATE_ON_OOM));
}

static void rig_free(struct rig *r)
{
	event_loop_stop(r->v.loop);
	virtio_balloon_destroy(r->b);
	guest_mem_destroy(&r->v.mem);
	r->v.ram = NULL;
	vrig_free(&r->v);
}

/* The guest writes n pages from PAGES_AT, so the host holds them. */
static void touch_pages(struct rig *r, uint32_t n)
{
	memset(r->v.ram + PAGES_AT, 0xa5, (size_t)n * PAGE);
}

/* An array of PFNs in guest memory, as the driver fills it for inflateq/deflateq. */
static uint64_t put_pfns(struct rig *r, const uint32_t *pfns, uint32_t n)
{
	uint64_t a = alloc_data(&r->v, n * 4);
	memcpy(r->v.ram + a, pfns, n * 4);
	return a;
}

static void give_pfns(struct rig *r, uint16_t q, const uint32_t *pfns, uint32_t n)
{
	add_buf(&r->v, q, put_pfns(r, pfns, n), n * 4, false);
}

static struct virtio_balloon_info info(struct rig *r)
{
	struct virtio_balloon_info in;
	virtio_balloon_get_info(r->b, &in);
	return in;
}

static void features_follow_the_configuration(void **state)
{
	(void)state;
	struct rig r;
	struct balloon_config cfg = { .enabled = true, .stats_interval_s = 0 };
	rig_setup_cfg(&r, &cfg, 2, 0);
	assert_int_equal(device_features(&r.v) & ALL_FEATURES, 0);
	assert_int_equal(rd(&r.v, NUMQ, 2), 2);
	rig_free(&r);

	config_balloon_defaults(&cfg);
	cfg.enabled = true;
	rig_setup_cfg(&r, &cfg, 4, ALL_FEATURES);
	assert_int_equal(device_features(&r.v) & ALL_FEATURES, ALL_FEATURES);
	assert_int_equal(rd(&r.v, NUMQ, 2), 4);
	rig_free(&r);
}

static void config_space_holds_num_pages_and_actual(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	assert_int_equal(rd(&r.v, CFG(0), 4), 0);
	assert_int_equal(info(&r).target_bytes, RAM);
	assert_int_equal(virtio_balloon_set_target(r.b, RAM - (1u << 20)), 0);
	assert_int_equal(rd(&r.v, CFG(0), 4), 256); /* 1 MiB of 4 KiB pages to inflate */
	assert_int_equal(info(&r).target_bytes, RAM - (1u << 20));
	assert_int_equal(virtio_balloon_set_target(r.b, RAM + PAGE), -EINVAL);
	assert_int_equal(virtio_balloon_set_target(r.b, 100), -EINVAL);
	assert_int_equal(rd(&r.v, CFG(0), 4), 256);

	/* The driver writes actual, byte by byte if it likes; num_pages is not its to change. */
	wr(&r.v, CFG(4), 0x00, 1);
	wr(&r.v, CFG(5), 0x01, 1);
	assert_int_equal(rd(&r.v, CFG(4), 4), 256);
	assert_int_equal(info(&r).actual_bytes, RAM - (1u << 20));
	wr(&r.v, CFG(0), 7, 4);
	assert_int_equal(rd(&r.v, CFG(0), 4), 256);
	/* A reset forgets the driver's balloon, not the host's target. */
	wr(&r.v, STATUS, 0, 1);
	assert_int_equal(rd(&r.v, CFG(4), 4), 0);
	assert_int_equal(rd(&r.v, CFG(0), 4), 256);
	rig_free(&r);
}

/* The evidence that host memory really drops: the memfd's blocks go, and the pages read as zero. */
static void inflated_pages_leave_the_memfd(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	enum { N = 256 };
	touch_pages(&r, N);
	uint32_t pfns[N];
	for (uint32_t i = 0; i < N; i++) /* out of order, as a driver may give them */
		pfns[i] = PAGES_AT / PAGE + (i * 7) % N;
	uint64_t a = put_pfns(&r, pfns, N);
	uint64_t before = fd_allocated_bytes(r.v.mem.fd);
	assert_true(before >= N * PAGE);
	add_buf(&r.v, INFLATEQ, a, N * 4, false);
	assert_true(wait_used(&r.v, INFLATEQ, 1));
	uint64_t after = fd_allocated_bytes(r.v.mem.fd);
	assert_true(before - after >= N * PAGE);
	for (uint32_t i = 0; i < N * PAGE; i += PAGE)
		assert_int_equal(r.v.ram[PAGES_AT + i], 0);
	struct virtio_balloon_info in = info(&r);
	assert_int_equal(in.inflated_pages, N);
	assert_int_equal(in.discarded_bytes, N * PAGE);
	assert_int_equal(in.invalid_pfns, 0);

	/* Deflate: the driver takes them back and uses them again. */
	give_pfns(&r, DEFLATEQ, pfns, N);
	assert_true(wait_used(&r.v, DEFLATEQ, 1));
	assert_int_equal(info(&r).deflated_pages, N);
	touch_pages(&r, N);
	assert_int_equal(r.v.ram[PAGES_AT + (N - 1) * PAGE], 0xa5);
	rig_free(&r);
}

/* Inflates n consecutive pages from pfn, in one request as Linux's driver gives up to 256. */
static void inflate_run(struct rig *r, uint32_t pfn, uint32_t n, uint16_t *used)
{
	uint32_t pfns[256];
	for (uint32_t i = 0; i < n; i++)
		pfns[i] = pfn + i;
	give_pfns(r, INFLATEQ, pfns, n);
	assert_true(wait_used(&r->v, INFLATEQ, ++*used));
}

/*
 * hugepages=on: the guest gives 4 KiB pages, at most 1 MiB a request; the host gets a 2 MiB
 * page back once all 512 of its pages are given, never before, and counts it once.
 */
static void hugepages_go_back_once_all_their_pages_are_given(void **state)
{
	(void)state;
	if (!raise_hugepages(RAM / (2u << 20)))
		skip();
	struct rig r;
	struct balloon_config cfg;
	config_balloon_defaults(&cfg);
	cfg.enabled = true;
	cfg.stats_interval_s = 0;
	rig_setup_backed(&r, &cfg, 3, VIRTIO_F_BIT(VIRTIO_BALLOON_F_REPORTING), GUEST_MEM_HUGETLB);
	touch_pages(&r, 512); /* the rings and buffers are in the first 2 MiB page, in use already */
	uint64_t free0 = pool_now().free;
	uint32_t first = PAGES_AT / PAGE;
	uint16_t used = 0;
	inflate_run(&r, first, 256, &used);
	assert_int_equal(pool_now().free, free0); /* half a hugepage: nothing the host can take */
	assert_int_equal(info(&r).discarded_bytes, 0);
	assert_int_equal(r.v.ram[PAGES_AT], 0xa5);
	inflate_run(&r, first + 256, 256, &used);
	assert_int_equal(pool_now().free, free0 + 1);
	assert_int_equal(info(&r).discarded_bytes, 2u << 20);
	assert_int_equal(r.v.ram[PAGES_AT], 0);
	inflate_run(&r, first + 5, 1, &used); /* given twice: nothing more goes back */
	assert_int_equal(info(&r).discarded_bytes, 2u << 20);

	/* The guest takes one page back and uses it: the hugepage is the guest's again until re-given. */
	uint32_t one = first + 5;
	give_pfns(&r, DEFLATEQ, &one, 1);
	assert_true(wait_used(&r.v, DEFLATEQ, 1));
	r.v.ram[PAGES_AT + 5 * PAGE] = 1;
	assert_int_equal(pool_now().free, free0);
	inflate_run(&r, one, 1, &used);
	assert_int_equal(pool_now().free, free0 + 1);
	assert_int_equal(info(&r).discarded_bytes, 4u << 20);
	rig_free(&r);
}

static void pfns_outside_ram_are_skipped_and_counted(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	touch_pages(&r, 2);
	uint32_t pfns[] = { RAM / PAGE, 0xffffffffu, PAGES_AT / PAGE + 1, 0x100000u };
	uint64_t a = put_pfns(&r, pfns, 4);
	uint64_t before = fd_allocated_bytes(r.v.mem.fd);
	add_buf(&r.v, INFLATEQ, a, sizeof(pfns), false);
	assert_true(wait_used(&r.v, INFLATEQ, 1));
	struct virtio_balloon_info in = info(&r);
	assert_int_equal(in.invalid_pfns, 3);
	assert_int_equal(in.inflated_pages, 1);
	assert_int_equal(before - fd_allocated_bytes(r.v.mem.fd), PAGE);
	assert_int_equal(r.v.ram[PAGES_AT], 0xa5); /* the page next to it is untouched */
	assert_false(rd(&r.v, STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);

	/* A buffer of odd length: the whole PFNs in it count, the stray bytes do not. */
	a = alloc_data(&r.v, 7);
	uint32_t pfn = PAGES_AT / PAGE;
	memcpy(r.v.ram + a, &pfn, 4);
	add_buf(&r.v, INFLATEQ, a, 7, false);
	assert_true(wait_used(&r.v, INFLATEQ, 2));
	assert_int_equal(info(&r).inflated_pages, 2);
	assert_int_equal(r.v.ram[PAGES_AT], 0);
	rig_free(&r);
}

/* Free page reporting: each range of the chain goes back to the host; partial pages stay. */
static void reported_ranges_are_discarded(void **state)
{
	(void)state;
	struct rig r;
	struct balloon_config cfg;
	config_balloon_defaults(&cfg);
	cfg.enabled = true;
	rig_setup_cfg(&r, &cfg, 4, ALL_FEATURES);
	touch_pages(&r, 64);
	vrig_track_writes(&r.v);
	uint64_t before = fd_allocated_bytes(r.v.mem.fd);
	struct seg s[] = {
		{ PAGES_AT, 32 * PAGE, true },
		{ PAGES_AT + 40 * PAGE + 100, 8 * PAGE, true }, /* unaligned: 7 whole pages inside */
	};
	add_chain(&r.v, REPORTQ, s, 2, true);
	assert_true(wait_used(&r.v, REPORTQ, 1));
	struct virtio_balloon_info in = info(&r);
	assert_int_equal(in.reported_bytes, 40 * PAGE);
	assert_int_equal(before - fd_allocated_bytes(r.v.mem.fd), 39 * PAGE);
	assert_int_equal(r.v.ram[PAGES_AT], 0);
	assert_int_equal(r.v.ram[PAGES_AT + 40 * PAGE + 99], 0xa5);  /* before the range */
	assert_int_equal(r.v.ram[PAGES_AT + 48 * PAGE + 100], 0xa5); /* after it */
	assert_int_equal(r.v.ram[PAGES_AT + 48 * PAGE + 99], 0xa5);  /* in its partial last page */
	/* Discarded pages now read as zero: migration must send them again; kept pages it need not. */
	assert_true(vrig_marked(&r.v, PAGES_AT, 32 * PAGE));
	assert_true(vrig_marked(&r.v, PAGES_AT + 41 * PAGE, 7 * PAGE));
	assert_int_equal(vrig_marked_pages(&r.v, PAGES_AT + 32 * PAGE, 9 * PAGE), 0);
	assert_int_equal(vrig_marked_pages(&r.v, PAGES_AT + 48 * PAGE, PAGE), 0);
	rig_free(&r);
}

/* Without statistics the reporting queue is the third: queues that do not exist take no index. */
static void reporting_queue_moves_up_without_statistics(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	touch_pages(&r, 4);
	add_buf(&r.v, 2, PAGES_AT, 4 * PAGE, true);
	assert_true(wait_used(&r.v, 2, 1));
	assert_int_equal(info(&r).reported_bytes, 4 * PAGE);
	assert_int_equal(r.v.ram[PAGES_AT], 0);
	rig_free(&r);
}

static void put_stat(uint8_t *p, uint16_t tag, uint64_t val)
{
	memcpy(p, &tag, 2);
	memcpy(p + 2, &val, 8);
}

/* The driver's buffer is read at once, held, and given back at each tick for new figures. */
static void statistics_are_read_and_asked_for_at_the_interval(void **state)
{
	(void)state;
	struct rig r;
	struct balloon_config cfg;
	config_balloon_defaults(&cfg);
	cfg.enabled = true;
	cfg.stats_interval_s = 1;
	rig_setup_cfg(&r, &cfg, 4, ALL_FEATURES);
	uint8_t buf[4 * 10 + 5];
	memset(buf, 0xee, sizeof(buf));
	put_stat(buf, VIRTIO_BALLOON_S_MEMFREE, 123 << 20);
	put_stat(buf + 10, VIRTIO_BALLOON_S_MEMTOT, 8 << 20);
	put_stat(buf + 20, 999, 1); /* a tag from the future: ignored */
	put_stat(buf + 30, VIRTIO_BALLOON_S_MAJFLT, 42);
	uint64_t a = alloc_data(&r.v, sizeof(buf));
	memcpy(r.v.ram + a, buf, sizeof(buf)); /* ... and 5 stray bytes */
	add_buf(&r.v, STATSQ, a, sizeof(buf), false);
	for (int i = 0; i < VRIG_WAIT_MS && info(&r).stats_updates == 0; i++)
		usleep(1000);
	struct virtio_balloon_info in = info(&r);
	assert_int_equal(in.stats_updates, 1);
	assert_int_equal(in.stats[VIRTIO_BALLOON_S_MEMFREE], 123 << 20);
	assert_int_equal(in.stats[VIRTIO_BALLOON_S_MEMTOT], 8 << 20);
	assert_int_equal(in.stats[VIRTIO_BALLOON_S_MAJFLT], 42);
	assert_int_equal(in.stats_valid, (1u << VIRTIO_BALLOON_S_MEMFREE) | (1u << VIRTIO_BALLOON_S_MEMTOT) |
						 (1u << VIRTIO_BALLOON_S_MAJFLT));
	assert_int_equal(used_idx(&r.v, STATSQ), 0); /* held until the tick */
	assert_true(wait_used(&r.v, STATSQ, 1));
	assert_string_equal(virtio_balloon_stat_name(VIRTIO_BALLOON_S_MEMFREE), "memfree_bytes");
	assert_string_equal(virtio_balloon_stat_name(VIRTIO_BALLOON_S_NR), "unknown");
	rig_free(&r);
}

static void statistics_shorter_than_one_entry_change_nothing(void **state)
{
	(void)state;
	struct rig r;
	struct balloon_config cfg;
	config_balloon_defaults(&cfg);
	cfg.enabled = true;
	rig_setup_cfg(&r, &cfg, 4, ALL_FEATURES);
	uint64_t a = alloc_data(&r.v, 9);
	put_stat(r.v.ram + a, VIRTIO_BALLOON_S_MEMFREE, 5); /* only 9 of its 10 bytes are in the buffer */
	add_buf(&r.v, STATSQ, a, 9, false);
	for (int i = 0; i < VRIG_WAIT_MS && info(&r).stats_updates == 0; i++)
		usleep(1000);
	assert_int_equal(info(&r).stats_valid, 0);
	rig_free(&r);
}

static void save_and_load_round_trip(void **state)
{
	(void)state;
	struct rig r;
	struct balloon_config cfg;
	config_balloon_defaults(&cfg);
	cfg.enabled = true;
	rig_setup_cfg(&r, &cfg, 4, ALL_FEATURES);
	assert_int_equal(virtio_balloon_set_target(r.b, RAM / 2), 0);
	wr(&r.v, CFG(4), 100, 4);
	uint64_t a = alloc_data(&r.v, 10);
	put_stat(r.v.ram + a, VIRTIO_BALLOON_S_AVAIL, 77);
	add_buf(&r.v, STATSQ, a, 10, false);
	for (int i = 0; i < VRIG_WAIT_MS && info(&r).stats_updates == 0; i++)
		usleep(1000);
	struct virtio_device *vdev = r.v.fn->owner;
	static uint8_t image[1 << 16];
	event_loop_stop(r.v.loop);
	long len = virtio_pci_save(vdev, image, sizeof(image));
	assert_true(len > 0);
	struct virtio_balloon_info saved = info(&r);

	assert_int_equal(virtio_balloon_set_target(r.b, RAM), 0);
	wr(&r.v, CFG(4), 5, 4);
	assert_int_equal(virtio_pci_load(vdev, image, (size_t)len), 0);
	struct virtio_balloon_info loaded = info(&r);
	assert_memory_equal(&saved, &loaded, sizeof(saved));
	assert_int_equal(rd(&r.v, CFG(0), 4), RAM / 2 / PAGE);
	assert_int_equal(rd(&r.v, CFG(4), 4), 100);

	/* The held statistics buffer comes back after a load: the restored guest keeps reporting. */
	assert_int_equal(event_loop_start(r.v.loop), 0);
	assert_true(wait_used(&r.v, STATSQ, 1));

	/* A device image with a target beyond RAM is refused. */
	event_loop_stop(r.v.loop);
	size_t dev_off = (size_t)len - (16 + sizeof(struct virtio_balloon_info));
	uint32_t huge = RAM / PAGE + 1;
	memcpy(image + dev_off + 4, &huge, 4);
	assert_int_equal(virtio_pci_load(vdev, image, (size_t)len), -EINVAL);
	rig_free(&r);
}

int main(void)
{
	log_set_level(LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(features_follow_the_configuration),
		cmocka_unit_test(config_space_holds_num_pages_and_actual),
		cmocka_unit_test(inflated_pages_leave_the_memfd),
		cmocka_unit_test_teardown(hugepages_go_back_once_all_their_pages_are_given, restore_nr_hugepages),
		cmocka_unit_test(pfns_outside_ram_are_skipped_and_counted),
		cmocka_unit_test(reported_ranges_are_discarded),
		cmocka_unit_test(reporting_queue_moves_up_without_statistics),
		cmocka_unit_test(statistics_are_read_and_asked_for_at_the_interval),
		cmocka_unit_test(statistics_shorter_than_one_entry_change_nothing),
		cmocka_unit_test(save_and_load_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
