/* The memory file's RAM checksum: written with every snapshot, checked by vmon restore --verify. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "lib/util.h"
#include "memory/guest_mem.h"
#include "state/mem_state.h"
#include "host_memory.h"

#define RAM (8 * MiB)
#define ID 0x1234abcdULL

struct fixture {
	char path[64];
	struct guest_mem mem;
};

/* A snapshot's memory file of 8 MiB of RAM, mostly zero (holes), with data in a few pages. */
static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	assert_int_equal(guest_mem_init(&f->mem, RAM), 0);
	for (uint64_t gpa = 0x1000; gpa < RAM; gpa += 3 * MiB + 0x5000)
		assert_int_equal(guest_mem_write(&f->mem, gpa, "guest data", 10), 0);
	memset(gpa_to_host_write(&f->mem, 6 * MiB, MiB), 0x5a, MiB);
	snprintf(f->path, sizeof(f->path), "/tmp/vmon-test-memstate-XXXXXX");
	int fd = mkstemp(f->path);
	assert_true(fd >= 0);
	char err[512] = "";
	assert_int_equal(mem_state_write(&f->mem, fd, ID, err, sizeof(err)), 0);
	close(fd);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	unlink(f->path);
	guest_mem_destroy(&f->mem);
	free(f);
	return 0;
}

static void poke(const char *path, uint64_t off, uint8_t xor_with)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	uint8_t b;
	assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
	b ^= xor_with;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);
}

static void intact_file_passes(void **state)
{
	struct fixture *f = *state;
	char err[512] = "";
	assert_int_equal(mem_state_check(f->path, RAM, ID, err, sizeof(err)), 0);
	assert_int_equal(mem_state_verify(f->path, RAM, err, sizeof(err)), 0);
}

/* The checksum is zlib's CRC32 of the RAM bytes, as docs/snapshot-format.md says, holes as zeros. */
static void checksum_is_crc32_of_ram(void **state)
{
	struct fixture *f = *state;
	uLong want = crc32(0L, gpa_to_host(&f->mem, 0, RAM), RAM);
	int fd = open(f->path, O_RDONLY);
	assert_true(fd >= 0);
	uint32_t flags, ram_crc;
	assert_int_equal(pread(fd, &flags, 4, (off_t)RAM + 36), 4);
	assert_int_equal(pread(fd, &ram_crc, 4, (off_t)RAM + 40), 4);
	close(fd);
	assert_int_equal(flags & 1, 1);
	assert_int_equal(ram_crc, (uint32_t)want);
}

static void expect_mismatch(const char *path)
{
	char err[512] = "", want[512];
	/* The size and trailer are as they were: only --verify can tell. */
	assert_int_equal(mem_state_check(path, RAM, ID, err, sizeof(err)), 0);
	assert_int_equal(mem_state_verify(path, RAM, err, sizeof(err)), -EBADMSG);
	snprintf(want, sizeof(want),
		 "memory file %s does not match the checksum written with the snapshot: it was changed or damaged",
		 path);
	assert_string_equal(err, want);
}

static void flipped_data_byte_fails(void **state)
{
	struct fixture *f = *state;
	poke(f->path, 6 * MiB + 12345, 0x01);
	expect_mismatch(f->path);
}

/* A byte written into a page the snapshot left as a hole changes RAM as much as any other. */
static void byte_written_into_a_hole_fails(void **state)
{
	struct fixture *f = *state;
	poke(f->path, 2 * MiB + 7, 0x80);
	expect_mismatch(f->path);
}

/* A memory file as vmon releases before the checksum wrote it: flags 0, trailer CRC over 40 bytes. */
static void old_snapshot_says_it_has_no_checksum(void **state)
{
	struct fixture *f = *state;
	int fd = open(f->path, O_RDWR);
	assert_true(fd >= 0);
	uint8_t t[48];
	assert_int_equal(pread(fd, t, sizeof(t), (off_t)RAM), (ssize_t)sizeof(t));
	memset(t + 32, 0, 16); /* crc, flags, ram_crc */
	uint32_t c = (uint32_t)crc32(0L, t, 40);
	memcpy(t + 32, &c, 4);
	assert_int_equal(pwrite(fd, t, sizeof(t), (off_t)RAM), (ssize_t)sizeof(t));
	close(fd);

	char err[512] = "", want[512];
	assert_int_equal(mem_state_check(f->path, RAM, ID, err, sizeof(err)), 0); /* still restores */
	assert_int_equal(mem_state_verify(f->path, RAM, err, sizeof(err)), -ENODATA);
	snprintf(want, sizeof(want),
		 "the memory file %s has no checksum to verify: the snapshot was written by an older vmon; restore it "
		 "without --verify, or take a new snapshot",
		 f->path);
	assert_string_equal(err, want);
}

/* ---- RAM backed otherwise: private anonymous (merge=on) and hugetlbfs (hugepages=on) ---- */

/* Writes mem's snapshot into a new file (its path in path, its descriptor returned). */
static int snapshot_into(const struct guest_mem *mem, char *path)
{
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	char err[512] = "";
	assert_int_equal(mem_state_write(mem, fd, ID, err, sizeof(err)), 0);
	assert_int_equal(mem_state_check(path, mem->ram_size, ID, err, sizeof(err)), 0);
	assert_int_equal(mem_state_verify(path, mem->ram_size, err, sizeof(err)), 0);
	return fd;
}

/*
 * The snapshot in fd (at path) of RAM holding about 1 MiB of data takes about that much room and
 * maps back as RAM with the very bytes of m; then both go.
 */
static void assert_restores_then_drop(struct guest_mem *m, char *path, int fd)
{
	assert_true(fd_allocated_bytes(fd) <= MiB + 64 * 1024); /* RAM never written stays a hole */
	struct guest_mem back;
	assert_int_equal(guest_mem_init_from_file(&back, m->ram_size, path), 0);
	assert_memory_equal(gpa_to_host(&back, 0, m->ram_size), gpa_to_host(m, 0, m->ram_size), m->ram_size);
	guest_mem_destroy(&back);
	close(fd);
	unlink(path);
	guest_mem_destroy(m);
}

/*
 * A VM restored from this file, whose file is then truncated: a new snapshot of it must fail
 * naming the file, not write a snapshot that holds almost nothing and cannot be restored.
 */
static void snapshot_of_ram_whose_file_shrank_fails(void **state)
{
	struct fixture *f = *state;
	struct guest_mem m;
	assert_int_equal(guest_mem_init_from_file(&m, RAM, f->path), 0);
	assert_int_equal(truncate(f->path, 4096), 0);
	char path[] = "/tmp/vmon-test-memstate-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	char err[512] = "";
	assert_int_equal(mem_state_write(&m, fd, ID + 1, err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, "has shrunk to 4096 bytes"));
	assert_non_null(strstr(err, f->path));
	assert_non_null(strstr(err, "no snapshot was written"));
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 0);
	close(fd);
	unlink(path);
	guest_mem_destroy(&m);
}

static void private_ram_snapshot_keeps_data_and_leaves_holes(void **state)
{
	(void)state;
	struct guest_mem m;
	char err[256] = "";
	assert_int_equal(guest_mem_init_backed(&m, RAM, GUEST_MEM_MERGEABLE, err, sizeof(err)), 0);
	memset(gpa_to_host_write(&m, 6 * MiB, MiB), 0x5a, MiB);
	assert_int_equal(guest_mem_write(&m, 0x1000, "guest data", 10), 0);
	uint8_t b;
	assert_int_equal(guest_mem_read(&m, 3 * MiB, &b, 1), 0); /* read, never written: still zero */
	char path[] = "/tmp/vmon-test-memstate-XXXXXX";
	int fd = snapshot_into(&m, path);
	assert_true(lseek(fd, 2 * MiB, SEEK_DATA) >= (off_t)(6 * MiB));
	assert_restores_then_drop(&m, path, fd);
}

/*
 * hugetlbfs answers SEEK_DATA with "all of it is data": a snapshot that trusted it would read,
 * and so allocate, every hugepage the guest never touched.
 */
static void hugepage_ram_snapshot_reads_only_touched_pages(void **state)
{
	(void)state;
	if (!raise_hugepages(RAM / (2 * MiB)))
		skip();
	struct guest_mem m;
	char err[256] = "";
	assert_int_equal(guest_mem_init_backed(&m, RAM, GUEST_MEM_HUGETLB, err, sizeof(err)), 0);
	assert_int_equal(guest_mem_write(&m, 0x1000, "guest data", 10), 0);
	memset(gpa_to_host_write(&m, 4 * MiB, MiB), 0x5a, MiB);
	uint64_t free_before = pool_now().free;
	char path[] = "/tmp/vmon-test-memstate-XXXXXX";
	int fd = snapshot_into(&m, path);
	assert_int_equal(pool_now().free, free_before); /* hugepages 2-4 MiB and 6-8 MiB still untouched */
	assert_restores_then_drop(&m, path, fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(snapshot_of_ram_whose_file_shrank_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(intact_file_passes, setup, teardown),
		cmocka_unit_test_setup_teardown(checksum_is_crc32_of_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(flipped_data_byte_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(byte_written_into_a_hole_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(old_snapshot_says_it_has_no_checksum, setup, teardown),
		cmocka_unit_test(private_ram_snapshot_keeps_data_and_leaves_holes),
		cmocka_unit_test_teardown(hugepage_ram_snapshot_reads_only_touched_pages, restore_nr_hugepages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
