/*
 * Guest RAM backed as --memory SIZE,merge=on and SIZE,hugepages=on ask: what the host's kernel
 * then shows (KSM merging the guest's identical pages, 2 MiB pages in the mapping and the pool),
 * what the balloon's discards give back, and the errors a user gets when the host lacks hugepages.
 * The KSM and hugepage cases change host settings, so they run as root and put them back.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/api_metrics.h"
#include "api_fake_vm.h"
#include "host_memory.h"
#include "lib/util.h"
#include "memory/guest_mem.h"
#include "memory/ksm.h"

#define HUGE (2 * MiB)

/* The value after "name " in the metrics of a fake VM whose RAM is mem; -1 if absent. */
static long long metric_of(const struct guest_mem *mem, const char *name)
{
	static struct fake_vm f;
	fake_vm_init(&f, 1, false, false);
	f.vm.mem = *mem;
	size_t len;
	char *text = api_metrics_render(&f.vm, &len);
	fake_vm_destroy(&f);
	assert_non_null(text);
	char key[128];
	snprintf(key, sizeof(key), "\n%s ", name);
	char *at = strstr(text, key);
	long long v = at ? strtoll(at + strlen(key), NULL, 10) : -1;
	free(text);
	return v;
}

/* ---- merge=on ---- */

static void mergeable_ram_is_private_and_marked_for_ksm(void **state)
{
	(void)state;
	struct guest_mem m;
	char err[256] = "";
	assert_int_equal(guest_mem_init_backed(&m, 16 * MiB, GUEST_MEM_MERGEABLE, err, sizeof(err)), 0);
	assert_int_equal(m.fd, -1); /* no memfd: KSM never looks at shared memory */
	assert_true(m.mergeable);
	assert_string_equal(guest_mem_backing_name(&m), "merge");
	char flags[256];
	assert_true(smaps_line(m.regions[0].host, "VmFlags", flags, sizeof(flags)));
	assert_non_null(strstr(flags, " mg")); /* VM_MERGEABLE */
	assert_true(smaps_line(m.regions[0].host, "Anonymous", flags, sizeof(flags)));

	/* A discard gives the pages back (MADV_DONTNEED) and they read as zero again. */
	memset(gpa_to_host(&m, 4 * MiB, 4 * MiB), 0x77, 4 * MiB);
	long before = smaps_kb(m.regions[0].host, "Rss");
	assert_true(before >= 4096);
	assert_int_equal(guest_mem_discard(&m, 4 * MiB + 100, 2 * MiB), 0); /* the partial first page stays */
	long after = smaps_kb(m.regions[0].host, "Rss");
	assert_true(before - after >= 2044 && before - after <= 2048);
	uint8_t b;
	assert_int_equal(guest_mem_read(&m, 4 * MiB + 100, &b, 1), 0);
	assert_int_equal(b, 0x77);
	assert_int_equal(guest_mem_read(&m, 5 * MiB, &b, 1), 0);
	assert_int_equal(b, 0);
	assert_int_equal(metric_of(&m, "vmon_guest_memory_page_bytes"), 4096);
	assert_int_equal(guest_mem_explain_fault(&m, err, sizeof(err)), 0); /* nothing to blame on the backing */
	guest_mem_destroy(&m);
}

/* A VM restored with merge=on runs on the snapshot's file, mapped privately: still offered to KSM. */
static void restored_ram_can_still_be_merged(void **state)
{
	(void)state;
	char path[] = "/tmp/vmon-test-mem-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)(8 * MiB)), 0);
	struct guest_mem m;
	assert_int_equal(guest_mem_init_from_file(&m, 8 * MiB, path), 0);
	char flags[256];
	assert_true(smaps_line(m.regions[0].host, "VmFlags", flags, sizeof(flags)));
	assert_null(strstr(flags, " mg"));
	assert_int_equal(guest_mem_make_mergeable(&m), 0);
	assert_true(smaps_line(m.regions[0].host, "VmFlags", flags, sizeof(flags)));
	assert_non_null(strstr(flags, " mg"));
	assert_string_equal(guest_mem_backing_name(&m), "snapshot_file");
	guest_mem_destroy(&m);
	close(fd);
	unlink(path);
}

#define KSM_DIR "/sys/kernel/mm/ksm/"
static const char *const ksm_knobs[] = { KSM_DIR "run", KSM_DIR "pages_to_scan", KSM_DIR "sleep_millisecs" };
static long ksm_saved[3] = { -1, -1, -1 };

/* Puts the host's KSM settings back, whether the test passed or failed. */
static int restore_ksm(void **state)
{
	(void)state;
	for (int i = 2; i >= 0; i--) /* run last: the scan rate is back before ksmd goes on or off */
		if (ksm_saved[i] >= 0 && !write_long(ksm_knobs[i], ksm_saved[i]))
			fprintf(stderr, "could not restore %s to %ld\n", ksm_knobs[i], ksm_saved[i]);
	return 0;
}

#define KSM_RAM (32 * MiB)
#define KSM_WAIT_S 10

static void ksm_merges_a_guests_identical_pages(void **state)
{
	(void)state;
	if (geteuid() != 0 || access(KSM_DIR "run", W_OK)) {
		print_message("skipped: switching the host's KSM on needs root and %s\n", KSM_DIR "run");
		skip();
	}
	struct guest_mem m;
	char err[256] = "";
	assert_int_equal(guest_mem_init_backed(&m, KSM_RAM, GUEST_MEM_MERGEABLE, err, sizeof(err)), 0);
	/* What many idle guests hold: the same page over and over (not zeros, which use_zero_pages treats apart). */
	for (uint64_t gpa = 0; gpa < KSM_RAM; gpa += 4096) {
		uint8_t *p = gpa_to_host(&m, gpa, 4096);
		memset(p, 0x5a, 4096);
		memcpy(p, "same page", 9);
	}
	for (int i = 0; i < 3; i++)
		ksm_saved[i] = read_long(ksm_knobs[i]);
	assert_true(write_long(ksm_knobs[1], 10000) && write_long(ksm_knobs[2], 10) && write_long(ksm_knobs[0], 1));

	uint64_t pages = KSM_RAM / 4096, t0 = monotonic_ns();
	struct ksm_stats k = { 0 };
	while (monotonic_ns() - t0 < KSM_WAIT_S * 1000000000ULL) {
		assert_int_equal(ksm_read_stats(&k), 0);
		if (k.merging_pages >= pages * 9 / 10)
			break;
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	print_message("KSM merged %" PRIu64 " of %" PRIu64 " identical pages in %.2f s\n", k.merging_pages, pages,
		      (double)(monotonic_ns() - t0) / 1e9);
	assert_true(k.merging_pages >= pages * 9 / 10);
	/* What the user reads from GET /metrics. */
	assert_true(metric_of(&m, "vmon_ksm_merging_pages") >= (long long)(pages * 9 / 10));
	guest_mem_destroy(&m);
}

/* ---- hugepages=on ---- */

#define HUGE_RAM (8 * MiB)

static void hugepage_ram_is_hugetlb_and_the_balloon_frees_whole_pages(void **state)
{
	(void)state;
	if (!raise_hugepages(HUGE_RAM / HUGE))
		skip();
	struct hugepage_pool p0 = pool_now();
	struct guest_mem m;
	char err[256] = "";
	assert_int_equal(guest_mem_init_backed(&m, HUGE_RAM, GUEST_MEM_HUGETLB, err, sizeof(err)), 0);
	assert_string_equal(guest_mem_backing_name(&m), "hugepages");
	assert_int_equal(smaps_kb(m.regions[0].host, "KernelPageSize"), 2048);
	/* Every page is reserved at start-up, so the guest never finds the pool empty later. */
	assert_int_equal(pool_now().reserved, p0.reserved + 4);
	memset(gpa_to_host(&m, 0, HUGE_RAM), 0x33, HUGE_RAM);
	assert_int_equal(pool_now().free, p0.free - 4);
	assert_int_equal(metric_of(&m, "vmon_guest_memory_page_bytes"), 2 * 1024 * 1024);

	/* One 4 KiB page inside a hugepage: nothing can be given back, and nothing is lost. */
	assert_int_equal(guest_mem_page_size(&m), HUGE);
	assert_int_equal(guest_mem_discard(&m, HUGE + 4096, 4096), 0);
	assert_int_equal(pool_now().free, p0.free - 4);
	uint8_t b;
	assert_int_equal(guest_mem_read(&m, HUGE + 4096, &b, 1), 0);
	assert_int_equal(b, 0x33);

	/* 1 MiB to 5 MiB holds one whole hugepage, 2-4 MiB: that one goes back to the host. */
	assert_int_equal(guest_mem_discard(&m, 1 * MiB, 4 * MiB), 0);
	assert_int_equal(pool_now().free, p0.free - 3);
	assert_int_equal(guest_mem_read(&m, 2 * MiB, &b, 1), 0);
	assert_int_equal(b, 0);
	assert_int_equal(guest_mem_read(&m, 2 * MiB - 1, &b, 1), 0);
	assert_int_equal(b, 0x33);
	assert_int_equal(guest_mem_read(&m, 4 * MiB, &b, 1), 0);
	assert_int_equal(b, 0x33);

	/* A migration's zero run inside a hugepage is written as zeros; the rest of the page stays. */
	assert_int_equal(guest_mem_zero(&m, 6 * MiB + 4096, 8192), 0);
	assert_int_equal(guest_mem_read(&m, 6 * MiB + 4096 + 8191, &b, 1), 0);
	assert_int_equal(b, 0);
	assert_int_equal(guest_mem_read(&m, 6 * MiB + 4096 + 8192, &b, 1), 0);
	assert_int_equal(b, 0x33);
	/* What a vCPU says when KVM cannot get a hugepage back (EFAULT from KVM_RUN). */
	assert_int_equal(guest_mem_explain_fault(&m, err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, "the host's hugepage pool is empty; keep spare pages in vm.nr_hugepages"));
	guest_mem_destroy(&m);
	assert_int_equal(pool_now().free, p0.free);
}

static void too_few_hugepages_says_how_many_and_what_to_set(void **state)
{
	(void)state;
	struct hugepage_pool p = pool_now();
	uint64_t have = hugepages_available(&p), need = have + 3;
	struct guest_mem m;
	char err[400] = "", want[400];
	assert_int_equal(guest_mem_init_backed(&m, need * HUGE, GUEST_MEM_HUGETLB, err, sizeof(err)), -ENOMEM);
	snprintf(want, sizeof(want),
		 "hugepages=on: guest RAM needs %" PRIu64 " free 2 MiB pages, the host has %" PRIu64
		 ": raise vm.nr_hugepages, e.g. `sysctl vm.nr_hugepages=%" PRIu64 "`",
		 need, have, p.total + 3);
	assert_string_equal(err, want);
	assert_int_equal(m.fd, -1);
}

static void hugepage_ram_must_be_whole_hugepages(void **state)
{
	(void)state;
	struct guest_mem m;
	char err[256] = "";
	assert_int_equal(guest_mem_init_backed(&m, 3 * MiB, GUEST_MEM_HUGETLB, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "hugepages=on: guest RAM of 3145728 bytes is not a whole number of 2 MiB pages; give "
				 "--memory in multiples of 2M");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(mergeable_ram_is_private_and_marked_for_ksm),
		cmocka_unit_test(restored_ram_can_still_be_merged),
		cmocka_unit_test_teardown(ksm_merges_a_guests_identical_pages, restore_ksm),
		cmocka_unit_test_teardown(hugepage_ram_is_hugetlb_and_the_balloon_frees_whole_pages, restore_nr_hugepages),
		cmocka_unit_test(too_few_hugepages_says_how_many_and_what_to_set),
		cmocka_unit_test(hugepage_ram_must_be_whole_hugepages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
