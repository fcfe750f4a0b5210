/* unix_socket_listen: the socket is its owner's alone, without touching the process-wide umask. */
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
#include <sys/syscall.h>
#include <unistd.h>

#include "lib/unix_socket.h"

/*
 * Replaces libc's umask for this binary: vmon's threads create files while a socket is being
 * set up, so changing the process-wide umask there is a bug, and this counts any call.
 */
static int umask_calls;
mode_t umask(mode_t mask)
{
	umask_calls++;
	return (mode_t)syscall(SYS_umask, mask);
}

static char dir[64];
static char path[128];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/vmon-usock.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/api.sock", dir);
	umask_calls = 0;
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

/* With a permissive umask (000) the socket still ends up 0600, and the umask was never changed. */
static void test_socket_is_private_without_umask(void **state)
{
	(void)state;
	mode_t old = (mode_t)syscall(SYS_umask, 0);
	int fd = unix_socket_listen(path, "--api-sock");
	syscall(SYS_umask, old);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(umask_calls, 0);

	int c = unix_socket_connect(path); /* and it works */
	assert_true(c >= 0);
	close(c);
	close(fd);
}

/* A socket file left by a dead process is replaced; a live one and a regular file are refused. */
static void test_stale_live_and_regular_file(void **state)
{
	(void)state;
	int fd = unix_socket_listen(path, "--api-sock");
	assert_true(fd >= 0);
	assert_int_equal(unix_socket_listen(path, "--api-sock"), -EADDRINUSE);
	close(fd); /* the file stays behind, nobody listens */
	fd = unix_socket_listen(path, "--api-sock");
	assert_true(fd >= 0);
	close(fd);

	char file[160];
	snprintf(file, sizeof(file), "%s/disk.img", dir);
	FILE *f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(unix_socket_listen(file, "--api-sock"), -EEXIST);
	assert_int_equal(access(file, F_OK), 0); /* the user's file is untouched */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_socket_is_private_without_umask, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_live_and_regular_file, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
