/* Guest memory layout and the one gpa -> host translation every device relies on. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/util.h"
#include "memory/guest_mem.h"

static void small_guest_is_one_region(void **state)
{
	(void)state;
	struct guest_mem m;
	assert_int_equal(guest_mem_init(&m, 64 * MiB), 0);
	assert_int_equal(m.nregions, 1);
	assert_int_equal(guest_mem_low_end(&m), 64 * MiB);
	assert_non_null(gpa_to_host(&m, 0, 64 * MiB));
	assert_null(gpa_to_host(&m, 0, 64 * MiB + 1));
	assert_null(gpa_to_host(&m, 64 * MiB, 1));
	guest_mem_destroy(&m);
}

static void large_guest_skips_the_mmio_hole(void **state)
{
	(void)state;
	struct guest_mem m;
	assert_int_equal(guest_mem_init(&m, 4 * GiB), 0);
	assert_int_equal(m.nregions, 2);
	assert_int_equal(guest_mem_low_end(&m), GUEST_MEM_LOW_LIMIT);
	/* The hole is not RAM. */
	assert_null(gpa_to_host(&m, GUEST_MEM_LOW_LIMIT, 1));
	assert_null(gpa_to_host(&m, 0xfee00000ULL, 4));
	/* A range straddling the end of low RAM is refused even though both ends look plausible. */
	assert_null(gpa_to_host(&m, GUEST_MEM_LOW_LIMIT - 2, 4));
	/* High RAM holds the rest: 4 GiB - 3 GiB = 1 GiB above 4 GiB. */
	assert_non_null(gpa_to_host(&m, GUEST_MEM_HIGH_BASE, 1 * GiB));
	assert_null(gpa_to_host(&m, GUEST_MEM_HIGH_BASE, 1 * GiB + 1));
	/* Both regions share one backing: a write through one mapping is what the other sees. */
	uint32_t v = 0xdeadbeef, r = 0;
	assert_int_equal(guest_mem_write(&m, GUEST_MEM_HIGH_BASE + 8, &v, 4), 0);
	assert_int_equal(guest_mem_read(&m, GUEST_MEM_HIGH_BASE + 8, &r, 4), 0);
	assert_int_equal(r, v);
	guest_mem_destroy(&m);
}

static void hostile_ranges_are_refused(void **state)
{
	(void)state;
	struct guest_mem m;
	assert_int_equal(guest_mem_init(&m, 16 * MiB), 0);
	assert_null(gpa_to_host(&m, 0, 0));
	assert_null(gpa_to_host(&m, UINT64_MAX, 1));
	assert_null(gpa_to_host(&m, 8, UINT64_MAX));
	assert_null(gpa_to_host(&m, UINT64_MAX - 4, 16)); /* wraps around */
	assert_null(gpa_to_host(&m, 16 * MiB - 1, 2));
	char buf[8];
	assert_int_equal(guest_mem_read(&m, 16 * MiB - 4, buf, 8), -EFAULT);
	assert_int_equal(guest_mem_write(&m, 16 * MiB, buf, 1), -EFAULT);
	guest_mem_destroy(&m);
}

static void bad_sizes_are_rejected(void **state)
{
	(void)state;
	struct guest_mem m;
	assert_int_equal(guest_mem_init(&m, 0), -EINVAL);
	assert_int_equal(guest_mem_init(&m, 4097), -EINVAL);
}

/* RAM mapped from a file: the file's bytes appear in RAM, the guest's writes never reach the file. */
static void ram_from_file_is_private(void **state)
{
	(void)state;
	char path[] = "/tmp/vmon-test-mem-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)(8 * MiB)), 0);
	assert_int_equal(pwrite(fd, "snapshot", 8, 5 * MiB), 8);

	struct guest_mem m;
	assert_int_equal(guest_mem_init_from_file(&m, 8 * MiB, path), 0);
	assert_true(m.file_backed);
	char buf[8];
	assert_int_equal(guest_mem_read(&m, 5 * MiB, buf, 8), 0);
	assert_memory_equal(buf, "snapshot", 8);
	assert_int_equal(guest_mem_write(&m, 5 * MiB, "modified", 8), 0);
	assert_int_equal(guest_mem_read(&m, 5 * MiB, buf, 8), 0);
	assert_memory_equal(buf, "modified", 8);
	assert_int_equal(pread(fd, buf, 8, 5 * MiB), 8);
	assert_memory_equal(buf, "snapshot", 8);
	guest_mem_destroy(&m);

	/* A file shorter than the RAM it should hold is refused, a missing one too. */
	assert_int_equal(guest_mem_init_from_file(&m, 16 * MiB, path), -EINVAL);
	assert_int_equal(m.fd, -1);
	close(fd);
	unlink(path);
	assert_int_equal(guest_mem_init_from_file(&m, 8 * MiB, path), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(small_guest_is_one_region),
		cmocka_unit_test(large_guest_skips_the_mmio_hole),
		cmocka_unit_test(hostile_ranges_are_refused),
		cmocka_unit_test(bad_sizes_are_rejected),
		cmocka_unit_test(ram_from_file_is_private),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
