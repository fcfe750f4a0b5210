/* Guest memory layout and the one gpa -> host translation every device relies on. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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

/* A file of size bytes for guest RAM, with "snapshot" at 5 MiB; its path in path. */
static int make_ram_file(char *path, uint64_t size)
{
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	assert_int_equal(pwrite(fd, "snapshot", 8, 5 * MiB), 8);
	return fd;
}

/* What vCPUs see as EFAULT from KVM_RUN: the check names the file and both sizes. */
static void shrunk_file_is_named(void **state)
{
	(void)state;
	char path[] = "/tmp/vmon-test-mem-XXXXXX";
	int fd = make_ram_file(path, 8 * MiB + 4096);
	struct guest_mem m;
	assert_int_equal(guest_mem_init_from_file(&m, 8 * MiB, path), 0);
	char err[512] = "";
	uint64_t now = 0;
	assert_false(guest_mem_file_shrunk(&m, &now));
	assert_int_equal(guest_mem_check_file(&m, err, sizeof(err)), 0);
	/* Losing only what lies past RAM (the trailer) loses no guest memory. */
	assert_int_equal(ftruncate(fd, (off_t)(8 * MiB)), 0);
	assert_int_equal(guest_mem_check_file(&m, err, sizeof(err)), 0);

	assert_int_equal(ftruncate(fd, 4096), 0);
	assert_true(guest_mem_file_shrunk(&m, &now));
	assert_int_equal(now, 4096);
	assert_int_equal(guest_mem_check_file(&m, err, sizeof(err)), -EIO);
	char want[512];
	snprintf(want, sizeof(want),
		 "guest RAM is mapped from %s, which has shrunk to 4096 bytes (was 8392704): the snapshot's "
		 "memory file must not change while a VM restored from it runs",
		 path);
	assert_string_equal(err, want);
	guest_mem_destroy(&m);
	close(fd);
	unlink(path);

	/* RAM of a VM booted afresh has no file to lose. */
	assert_int_equal(guest_mem_init(&m, 4 * MiB), 0);
	assert_false(guest_mem_file_shrunk(&m, &now));
	assert_int_equal(guest_mem_check_file(&m, err, sizeof(err)), 0);
	guest_mem_destroy(&m);
}

/* Runs child_fn in a child whose stderr goes to a file; returns its wait status and stderr. */
static int run_child(void (*child_fn)(const char *), const char *arg, char *out, size_t outlen)
{
	char errpath[] = "/tmp/vmon-test-stderr-XXXXXX";
	int efd = mkstemp(errpath);
	assert_true(efd >= 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* As in vmon, where nothing but vmon's own handlers take SIGBUS (not cmocka's). */
		signal(SIGBUS, SIG_DFL);
		dup2(efd, STDERR_FILENO);
		child_fn(arg);
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	ssize_t n = pread(efd, out, outlen - 1, 0);
	out[n > 0 ? n : 0] = 0;
	close(efd);
	unlink(errpath);
	return status;
}

static void read_past_the_shrunk_end(const char *path)
{
	struct guest_mem m;
	if (guest_mem_init_from_file(&m, 8 * MiB, path))
		_exit(100);
	/* A page the guest wrote is its own copy and outlives the file's bytes. */
	if (guest_mem_write(&m, 1 * MiB, "written", 8))
		_exit(101);
	if (truncate(path, 4096))
		_exit(102);
	char buf[8];
	if (guest_mem_read(&m, 1 * MiB, buf, 8) || memcmp(buf, "written", 8))
		_exit(103);
	/* A page only the file held is gone: device emulation reading it must not look like a crash. */
	guest_mem_read(&m, 5 * MiB, buf, 8);
	_exit(104);
}

static void touching_shrunk_ram_ends_vmon_naming_the_file(void **state)
{
	(void)state;
	char path[] = "/tmp/vmon-test-mem-XXXXXX";
	close(make_ram_file(path, 8 * MiB + 4096));
	char out[1024];
	int status = run_child(read_past_the_shrunk_end, path, out, sizeof(out));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), GUEST_MEM_EXIT_FILE_SHRUNK);
	char want[512];
	snprintf(want, sizeof(want),
		 "vmon: guest RAM is mapped from %s, which has shrunk to 4096 bytes (was 8392704): the snapshot's "
		 "memory file must not change while a VM restored from it runs\n",
		 path);
	assert_string_equal(out, want);
	unlink(path);
}

static void raise_sigbus_with_ram_mapped(const char *path)
{
	struct guest_mem m;
	if (guest_mem_init_from_file(&m, 8 * MiB, path))
		_exit(100);
	raise(SIGBUS);
	_exit(104);
}

/* A SIGBUS that is not about guest RAM keeps its usual outcome (death by SIGBUS), no message. */
static void other_sigbus_is_left_alone(void **state)
{
	(void)state;
	char path[] = "/tmp/vmon-test-mem-XXXXXX";
	close(make_ram_file(path, 8 * MiB));
	char out[4096];
	int status = run_child(raise_sigbus_with_ram_mapped, path, out, sizeof(out));
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGBUS);
	assert_null(strstr(out, "guest RAM is mapped from"));
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		/*
		 * First, before this process maps any file as RAM: vmon installs its SIGBUS handler
		 * once, on top of what is there, and cmocka puts its own in place around each test, so
		 * only a child that maps the first file sees vmon's handler as vmon has it.
		 */
		cmocka_unit_test(touching_shrunk_ram_ends_vmon_naming_the_file),
		cmocka_unit_test(other_sigbus_is_left_alone),
		cmocka_unit_test(small_guest_is_one_region),
		cmocka_unit_test(large_guest_skips_the_mmio_hole),
		cmocka_unit_test(hostile_ranges_are_refused),
		cmocka_unit_test(bad_sizes_are_rejected),
		cmocka_unit_test(ram_from_file_is_private),
		cmocka_unit_test(shrunk_file_is_named),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
