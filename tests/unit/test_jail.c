/* vmon jail's command line: the checks on the jail's options and the rewriting of the run options. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox/jail.h"

static char dir[64], kernel[128], initrd[128], disk[128], other_kernel[128];

static void touch(char *path, size_t len, const char *sub)
{
	snprintf(path, len, "%s/%s", dir, sub);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);
}

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/vmon-jail.XXXXXX");
	assert_non_null(mkdtemp(dir));
	touch(kernel, sizeof(kernel), "bzImage");
	touch(initrd, sizeof(initrd), "initrd.cpio");
	touch(disk, sizeof(disk), "root.img");
	char sub[128];
	snprintf(sub, sizeof(sub), "%s/other", dir);
	assert_int_equal(mkdir(sub, 0755), 0);
	touch(other_kernel, sizeof(other_kernel), "other/bzImage");
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

/* Parses "jail" + the words of line (split at spaces); returns jail_parse's result. */
static int parse(struct jail_spec *s, char *err, const char *line)
{
	char buf[2048], *argv[64];
	int argc = 0;
	snprintf(buf, sizeof(buf), "%s", line);
	argv[argc++] = "jail";
	for (char *save, *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save))
		argv[argc++] = w;
	argv[argc] = NULL;
	err[0] = 0;
	return jail_parse(argc, argv, s, err, 512);
}

/* Expects line to be refused with an error containing want. */
static void refused(const char *line, const char *want)
{
	struct jail_spec s;
	char err[512];
	assert_int_not_equal(parse(&s, err, line), 0);
	if (!strstr(err, want))
		fail_msg("'%s': error '%s' does not say '%s'", line, err, want);
	jail_spec_free(&s);
}

static void test_rewrites_files_to_jail_paths(void **state)
{
	(void)state;
	struct jail_spec s;
	char err[512], line[1024];
	snprintf(line, sizeof(line),
		 "--id vm-1_a --uid 1000 --gid 1000 -- run --kernel %s --initrd=%s --disk %s,serial=abc --cpus 2 "
		 "--memory 512M --api-sock /run/api.sock --name web --no-rng", kernel, initrd, disk);
	assert_int_equal(parse(&s, err, line), 0);
	assert_string_equal(s.id, "vm-1_a");
	assert_int_equal(s.uid, 1000);
	assert_int_equal(s.gid, 1000);
	assert_string_equal(s.base, JAIL_DEFAULT_BASE);
	const char *want[] = { "vmon", "run", "--kernel=/bzImage", "--initrd=/initrd.cpio",
			       "--disk=/root.img,serial=abc", "--cpus=2", "--memory=512M", "--api-sock=/run/api.sock",
			       "--name=web", "--no-rng" };
	assert_int_equal(s.run_argc, 10);
	for (int i = 0; i < 10; i++)
		assert_string_equal(s.run_argv[i], want[i]);
	assert_null(s.run_argv[10]);
	assert_int_equal(s.nfiles, 3);
	assert_string_equal(s.files[0].host, kernel);
	assert_ptr_equal(s.kernel, &s.files[0]);
	assert_false(s.files[0].writable);
	assert_string_equal(s.files[2].inside, "/root.img");
	assert_true(s.files[2].writable);
	assert_int_equal(s.noutputs, 1);
	assert_string_equal(s.outputs[0], "/run/api.sock");
	assert_string_equal(s.api_sock, "/run/api.sock");
	assert_string_equal(s.vm_name, "web");
	assert_int_equal(s.cpus, 2);
	assert_int_equal(s.memory, 512ull << 20);
	char root[PATH_MAX];
	assert_int_equal(jail_root_path(&s, root, sizeof(root)), 0);
	assert_string_equal(root, JAIL_DEFAULT_BASE "/vm-1_a/root");
	jail_spec_free(&s);
}

static void test_readonly_disk_and_socket_paths(void **state)
{
	(void)state;
	struct jail_spec s;
	char err[512], line[1024];
	snprintf(line, sizeof(line),
		 "--id a --uid 5 --gid 6 --base /var/jails --cgroup memory.max=256M --cgroup pids.max=64 -- run "
		 "--kernel %s --disk %s,readonly --console2 file=/run/c2.log --vsock cid=3,uds=/run/v/vsock "
		 "--log-file /run/vmon.log", kernel, disk);
	assert_int_equal(parse(&s, err, line), 0);
	assert_string_equal(s.base, "/var/jails");
	assert_false(s.files[1].writable);
	assert_string_equal(s.run_argv[3], "--disk=/root.img,readonly");
	assert_string_equal(s.run_argv[5], "--vsock=cid=3,uds=/run/v/vsock");
	assert_int_equal(s.noutputs, 3);
	assert_string_equal(s.outputs[0], "/run/c2.log");
	assert_string_equal(s.outputs[1], "/run/v/vsock");
	assert_string_equal(s.outputs[2], "/run/vmon.log");
	assert_int_equal(s.ncgroups, 2);
	assert_string_equal(s.cgroups[0].key, "memory.max");
	assert_string_equal(s.cgroups[0].value, "256M");
	assert_string_equal(s.cgroups[1].key, "pids.max");
	assert_null(s.api_sock);
	jail_spec_free(&s);
}

static void test_kernel_after_initrd(void **state)
{
	(void)state;
	struct jail_spec s;
	char err[512], line[1024];
	snprintf(line, sizeof(line), "--id a --uid 1 --gid 1 -- run --initrd %s --kernel %s", initrd, kernel);
	assert_int_equal(parse(&s, err, line), 0);
	assert_non_null(s.kernel);
	assert_string_equal(s.kernel->host, kernel);
	jail_spec_free(&s);
}

static void test_user_and_group_names(void **state)
{
	(void)state;
	struct jail_spec s;
	char err[512], line[1024];
	snprintf(line, sizeof(line), "--id a --uid nobody --gid nogroup -- run --kernel %s", kernel);
	assert_int_equal(parse(&s, err, line), 0);
	assert_int_equal(s.uid, 65534);
	assert_int_equal(s.gid, 65534);
	jail_spec_free(&s);
}

static void test_bad_jail_options(void **state)
{
	(void)state;
	char k[256];
	snprintf(k, sizeof(k), "-- run --kernel %s", kernel);
	char line[1024];
#define REFUSED(opts, want) (snprintf(line, sizeof(line), "%s %s", opts, k), refused(line, want))
	REFUSED("--id a/b --uid 1 --gid 1", "a jail id is 1 to 64 letters");
	REFUSED("--id .. --uid 1 --gid 1", "a jail id is");
	REFUSED("--id aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa --uid 1 --gid 1", "a jail id");
	REFUSED("--id a --uid no-such-user-here --gid 1", "no such user on this host");
	REFUSED("--id a --uid 1 --gid no-such-group-here", "no such group on this host");
	REFUSED("--id a --uid 0 --gid 1", "root's rights");
	REFUSED("--id a --uid root --gid 1", "root's rights");
	REFUSED("--id a --uid 1 --gid 0", "unprivileged group");
	REFUSED("--id a --uid 99999999999 --gid 1", "out of range");
	REFUSED("--uid 1 --gid 1", "needs --id, --uid and --gid");
	REFUSED("--id a --uid 1 --gid 1 --base relative", "absolute directory");
	REFUSED("--id a --uid 1 --gid 1 --bogus x", "unknown option '--bogus'");
	REFUSED("--id a --uid 1 --gid 1 --cgroup memory.max", "KEY=VALUE");
	REFUSED("--id a --uid 1 --gid 1 --cgroup ../../tasks=1", "cgroup file name");
	REFUSED("--id a --uid 1 --gid 1 --cgroup memory/x.max=1", "cgroup file name");
	REFUSED("--id a --uid 1 --gid 1 --cgroup nodot=1", "cgroup file name");
#undef REFUSED
	refused("--id a --uid 1 --gid 1", "end the jail's options with -- run");
	refused("--id a --uid 1 --gid 1 -- ps", "end the jail's options with -- run");
	refused("--id a --uid 1 --gid 1 -- run --cpus 1", "needs --kernel");
	snprintf(k, sizeof(k), "--id a --uid 1 --gid 1 -- run --initrd %s", initrd);
	refused(k, "needs --kernel");
}

static void test_bad_run_options(void **state)
{
	(void)state;
	char line[1024];
#define REFUSED(opts, want) \
	(snprintf(line, sizeof(line), "--id a --uid 1 --gid 1 -- run --kernel %s %s", kernel, opts), refused(line, want))
	REFUSED("--api-sock /run/../../etc/x.sock", "not a path inside the jail");
	REFUSED("--api-sock run/api.sock", "not a path inside the jail");
	REFUSED("--api-sock /api.sock", "root directory is not writable");
	REFUSED("--log-file /..", "not a path inside the jail");
	REFUSED("--vsock cid=3,uds=/run/../../v", "not a path inside the jail");
	REFUSED("--console2 socket=/run/x/..", "not a path inside the jail");
	REFUSED("--config /etc/vm.json", "--config is not supported");
	REFUSED("--kern /x", "full option names");
	REFUSED("--memory", "needs a value");
	REFUSED("stray", "unexpected argument 'stray'");
	snprintf(line, sizeof(line), "--id a --uid 1 --gid 1 -- run --kernel %s --initrd %s", kernel, other_kernel);
	refused(line, "same file name");
	REFUSED("--disk /no/such/disk.img", "--disk /no/such/disk.img: No such file or directory");
	REFUSED("--initrd /tmp", "not a regular file");
#undef REFUSED
	refused("--id a --uid 1 --gid 1 -- run --kernel /no/such/kernel", "--kernel /no/such/kernel: No such file");
}

static void test_path_inside(void **state)
{
	(void)state;
	assert_true(jail_path_inside("/run/api.sock"));
	assert_true(jail_path_inside("/run/a..b"));
	assert_true(jail_path_inside("/run/..b/c"));
	assert_false(jail_path_inside("/"));
	assert_false(jail_path_inside("run/x"));
	assert_false(jail_path_inside("/.."));
	assert_false(jail_path_inside("/run/../x"));
	assert_false(jail_path_inside("/run/x/.."));
	assert_false(jail_path_inside(""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rewrites_files_to_jail_paths),
		cmocka_unit_test(test_readonly_disk_and_socket_paths),
		cmocka_unit_test(test_kernel_after_initrd),
		cmocka_unit_test(test_user_and_group_names),
		cmocka_unit_test(test_bad_jail_options),
		cmocka_unit_test(test_bad_run_options),
		cmocka_unit_test(test_path_inside),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
