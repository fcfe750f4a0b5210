/* read_file: a file is read whole only up to the caller's limit, whatever size it claims. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/util.h"

static char dir[64];
static char path[128];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/vmon-readfile.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static void make_file(off_t size, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	if (text)
		assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	else
		assert_int_equal(ftruncate(fd, size), 0);
	close(fd);
}

/* A sparse file claiming 1 TiB: refused from its size, nothing allocated or read. */
static void test_huge_file_refused_before_reading(void **state)
{
	(void)state;
	make_file((off_t)1 << 40, NULL);
	uint8_t *data = NULL;
	size_t len = 0;
	assert_int_equal(read_file(path, 1024 * 1024, &data, &len), -EFBIG);
	assert_null(data);
}

static void test_limit_is_inclusive(void **state)
{
	(void)state;
	make_file(0, "0123456789");
	uint8_t *data;
	size_t len;
	assert_int_equal(read_file(path, 10, &data, &len), 0);
	assert_int_equal(len, 10);
	assert_memory_equal(data, "0123456789", 10);
	free(data);
	assert_int_equal(read_file(path, 9, &data, &len), -EFBIG);
}

static void test_empty_file(void **state)
{
	(void)state;
	make_file(0, NULL);
	uint8_t *data;
	size_t len = 99;
	assert_int_equal(read_file(path, 0, &data, &len), 0);
	assert_int_equal(len, 0);
	free(data);
}

/* A FIFO nobody writes to must not block the caller: it is refused as not a regular file. */
static void test_fifo_refused_without_blocking(void **state)
{
	(void)state;
	assert_int_equal(mkfifo(path, 0600), 0);
	alarm(10); /* a hang fails the test instead of stalling the suite */
	uint8_t *data;
	size_t len;
	assert_int_equal(read_file(path, 1024, &data, &len), -EINVAL);
	alarm(0);
	unlink(path);
}

static void test_directory_and_missing(void **state)
{
	(void)state;
	uint8_t *data;
	size_t len;
	assert_int_equal(read_file(dir, 1024, &data, &len), -EISDIR);
	assert_int_equal(read_file("/nonexistent/vmon-read-file", 1024, &data, &len), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_huge_file_refused_before_reading, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limit_is_inclusive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fifo_refused_without_blocking, setup, teardown),
		cmocka_unit_test_setup_teardown(test_directory_and_missing, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
