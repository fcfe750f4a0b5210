/* initrd placement: top of low RAM, page aligned, above the kernel, below the kernel's limit. */
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
#include <sys/wait.h>
#include <unistd.h>

#include "boot/kernel.h"
#include "lib/util.h"
#include "memory/guest_mem.h"

#define RAM (64 * MiB)

static char tmp_path[64];

/* A temp file of len bytes, byte i = i * 31 mod 251 (so misplaced bytes show). */
static const char *make_initrd(size_t len)
{
	strcpy(tmp_path, "/tmp/vmon-test-initrd-XXXXXX");
	int fd = mkstemp(tmp_path);
	assert_true(fd >= 0);
	uint8_t *buf = malloc(len ? len : 1);
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(i * 31 % 251);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	free(buf);
	close(fd);
	return tmp_path;
}

static int setup(void **state)
{
	struct guest_mem *mem = calloc(1, sizeof(*mem));
	assert_int_equal(guest_mem_init(mem, RAM), 0);
	*state = mem;
	return 0;
}

static int teardown(void **state)
{
	guest_mem_destroy(*state);
	free(*state);
	if (tmp_path[0])
		unlink(tmp_path);
	tmp_path[0] = '\0';
	return 0;
}

static const struct kernel_image bz_kernel = { .load_start = 16 * MiB, .load_end = 24 * MiB,
					       .initrd_addr_max = 0x7fffffff };

static void test_placed_at_top_of_low_ram_page_aligned(void **state)
{
	const size_t len = 5000;
	const char *path = make_initrd(len);
	uint64_t gpa = 0, size = 0;
	char err[512] = "";
	assert_int_equal(initrd_load(*state, path, &bz_kernel, &gpa, &size, err, sizeof(err)), 0);
	assert_int_equal(size, len);
	assert_int_equal(gpa % 4096, 0);
	assert_int_equal(gpa, ALIGN_DOWN(RAM - len, 4096)); /* as high as it goes */
	const uint8_t *p = gpa_to_host(*state, gpa, len);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(p[i], (uint8_t)(i * 31 % 251));
}

static void test_stays_below_initrd_addr_max(void **state)
{
	struct kernel_image k = bz_kernel;
	k.initrd_addr_max = 0x2ffffff; /* last usable byte just below 48 MiB */
	const char *path = make_initrd(3 * MiB + 1);
	uint64_t gpa = 0, size = 0;
	char err[512] = "";
	assert_int_equal(initrd_load(*state, path, &k, &gpa, &size, err, sizeof(err)), 0);
	assert_true(gpa + size <= 0x3000000);
	assert_int_equal(gpa, ALIGN_DOWN(0x3000000 - size, 4096));
}

static void test_exactly_fills_space_above_kernel(void **state)
{
	const char *path = make_initrd(40 * MiB); /* 24..64 MiB */
	uint64_t gpa = 0, size = 0;
	char err[512] = "";
	assert_int_equal(initrd_load(*state, path, &bz_kernel, &gpa, &size, err, sizeof(err)), 0);
	assert_int_equal(gpa, 24 * MiB);
}

/* A FIFO would block open() until a writer comes; it is refused at once (alarm: a hang fails). */
static void test_fifo_refused_without_blocking(void **state)
{
	char dir[] = "/tmp/vmon-test-fifo-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char fifo[64];
	snprintf(fifo, sizeof(fifo), "%s/initrd", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	uint64_t gpa = 0, size = 0;
	char err[512] = "";
	alarm(10);
	int rc = initrd_load(*state, fifo, &bz_kernel, &gpa, &size, err, sizeof(err));
	alarm(0);
	unlink(fifo);
	rmdir(dir);
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(err, "initrd /tmp/vmon-test-fifo-"));
	assert_non_null(strstr(err, "is not a regular file (a FIFO)"));
}

static void test_too_big_says_memory_needed(void **state)
{
	const char *path = make_initrd(41 * MiB);
	uint64_t gpa = 0, size = 0;
	char err[512] = "";
	assert_int_equal(initrd_load(*state, path, &bz_kernel, &gpa, &size, err, sizeof(err)), -E2BIG);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "41.0 MiB"));
	assert_non_null(strstr(err, "--memory of at least 66M")); /* 65M rounded to --memory's 2M steps */
}

static void test_too_big_for_kernel_limit_says_use_smaller(void **state)
{
	struct kernel_image k = bz_kernel;
	k.initrd_addr_max = 0x1ffffff; /* 32 MiB: only 8 MiB above the kernel, whatever the RAM */
	const char *path = make_initrd(10 * MiB);
	uint64_t gpa = 0, size = 0;
	char err[512] = "";
	assert_int_equal(initrd_load(*state, path, &k, &gpa, &size, err, sizeof(err)), -E2BIG);
	assert_non_null(strstr(err, "use a smaller initrd"));
	assert_null(strstr(err, "--memory"));
}

static void test_missing_file(void **state)
{
	uint64_t gpa, size;
	char err[512] = "";
	assert_int_equal(initrd_load(*state, "/nonexistent/initrd.cpio", &bz_kernel, &gpa, &size, err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "initrd /nonexistent/initrd.cpio does not exist"));
}

static int unreadable_result(struct guest_mem *mem, const char *path)
{
	uint64_t gpa, size;
	char err[512] = "";
	int rc = initrd_load(mem, path, &bz_kernel, &gpa, &size, err, sizeof(err));
	return rc == -EACCES && strstr(err, "not readable") != NULL;
}

static void test_unreadable_file(void **state)
{
	const char *path = make_initrd(100);
	assert_int_equal(chmod(path, 0), 0);
	if (geteuid() != 0) {
		assert_true(unreadable_result(*state, path));
		return;
	}
	/* root reads anything: check as an unprivileged user in a child. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(setuid(65534) == 0 && unreadable_result(*state, path) ? 0 : 1);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_directory(void **state)
{
	uint64_t gpa, size;
	char err[512] = "";
	assert_int_equal(initrd_load(*state, "/tmp", &bz_kernel, &gpa, &size, err, sizeof(err)), -EISDIR);
	assert_non_null(strstr(err, "initrd /tmp is a directory"));
}

static void test_empty_file_refused(void **state)
{
	const char *path = make_initrd(0);
	uint64_t gpa, size;
	char err[512] = "";
	assert_int_equal(initrd_load(*state, path, &bz_kernel, &gpa, &size, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "is empty"));
	assert_non_null(strstr(err, "leave out --initrd"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_placed_at_top_of_low_ram_page_aligned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stays_below_initrd_addr_max, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exactly_fills_space_above_kernel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fifo_refused_without_blocking, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_big_says_memory_needed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_big_for_kernel_limit_says_use_smaller, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_file_refused, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
