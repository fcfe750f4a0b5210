/*
 * Landlock confinement of vmon's thread roles, enforced for real in a forked child: the API
 * thread writes snapshots beneath --snapshot-dir and nowhere else, the vCPU threads open no
 * file, the main thread removes its sockets, every thread reads /proc/self; TCP is denied
 * unless --net user needs it. Skipped on a kernel without Landlock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config/config.h"
#include "config/config_json.h"
#include "lib/util.h"
#include "sandbox/landlock.h"

struct dirs {
	char inside[64];  /* --snapshot-dir */
	char outside[64]; /* any other directory */
	char outside_file[96];
};

static int setup(void **state)
{
	int abi = landlock_abi();
	if (abi < 0) {
		print_message("Landlock is not available on this kernel (%s): skipping\n", strerror(-abi));
		return 0;
	}
	struct dirs *d = calloc(1, sizeof(*d));
	snprintf(d->inside, sizeof(d->inside), "/tmp/vmon-ll-in-XXXXXX");
	snprintf(d->outside, sizeof(d->outside), "/tmp/vmon-ll-out-XXXXXX");
	assert_non_null(mkdtemp(d->inside));
	assert_non_null(mkdtemp(d->outside));
	snprintf(d->outside_file, sizeof(d->outside_file), "%s/secret", d->outside);
	int fd = open(d->outside_file, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	*state = d;
	return 0;
}

static int teardown(void **state)
{
	struct dirs *d = *state;
	if (!d)
		return 0;
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", d->inside, d->outside);
	assert_int_equal(system(cmd), 0);
	free(d);
	return 0;
}

#define SKIP_WITHOUT_LANDLOCK(state)                                   \
	do {                                                           \
		if (!*(state)) {                                       \
			print_message("no Landlock on this kernel\n"); \
			skip();                                        \
		}                                                      \
	} while (0)

/*
 * Configures Landlock from cfg and enters role in a child (stderr into errfile when given),
 * then returns fn's result: 0 when everything it checks holds, else the number of the check.
 */
static int in_child(const struct vm_config *cfg, enum sandbox_role role, const char *errfile,
		    int (*fn)(const struct dirs *d), const struct dirs *d)
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (errfile) {
			int fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			dup2(fd, STDERR_FILENO);
		}
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || landlock_configure(cfg) || landlock_enter(role))
			_exit(100);
		_exit(fn(d));
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void config_for(struct vm_config *cfg, const struct dirs *d)
{
	config_init_defaults(cfg);
	cfg->snapshot_dir = strdup(d->inside);
}

static int open_errno(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

static int proc_self_readable(void)
{
	char buf[64];
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf));
	close(fd);
	return n > 0;
}

/* What a snapshot does: a directory, a temporary file written and renamed, an old file removed. */
static int api_checks(const struct dirs *d)
{
	char sub[128], tmp[160], final[160];
	snprintf(sub, sizeof(sub), "%s/snap", d->inside);
	snprintf(tmp, sizeof(tmp), "%s/.tmp-state-1", sub);
	snprintf(final, sizeof(final), "%s/state", sub);
	if (mkdir(sub, 0755) < 0)
		return 1;
	int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, "x", 1) != 1 || ftruncate(fd, 0) < 0)
		return 2;
	close(fd);
	if (rename(tmp, final) < 0 || unlink(final) < 0)
		return 3;
	if (open_errno(d->outside_file, O_RDONLY) != EACCES)
		return 4;
	char other[128];
	snprintf(other, sizeof(other), "%s/snap", d->outside);
	if (mkdir(other, 0755) == 0 || errno != EACCES)
		return 5;
	if (open_errno("/etc/passwd", O_RDONLY) != EACCES)
		return 6;
	if (!proc_self_readable())
		return 7;
	return 0;
}

static void test_api_writes_snapshots_beneath_snapshot_dir_only(void **state)
{
	SKIP_WITHOUT_LANDLOCK(state);
	const struct dirs *d = *state;
	struct vm_config cfg;
	config_for(&cfg, d);
	int rc = in_child(&cfg, SANDBOX_API, NULL, api_checks, d);
	config_free(&cfg);
	assert_int_equal(rc, 0);
}

static int vcpu_checks(const struct dirs *d)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/file", d->inside);
	if (open_errno(path, O_WRONLY | O_CREAT) != EACCES)
		return 1;
	if (open_errno(d->outside_file, O_RDONLY) != EACCES)
		return 2;
	if (!proc_self_readable())
		return 3;
	return 0;
}

static void test_vcpu_opens_no_file(void **state)
{
	SKIP_WITHOUT_LANDLOCK(state);
	const struct dirs *d = *state;
	struct vm_config cfg;
	config_for(&cfg, d);
	int rc = in_child(&cfg, SANDBOX_VCPU, NULL, vcpu_checks, d);
	config_free(&cfg);
	assert_int_equal(rc, 0);
}

static int main_checks(const struct dirs *d)
{
	char sock[128];
	snprintf(sock, sizeof(sock), "%s/api.sock", d->inside);
	/* The socket's directory: its file goes at exit; any other file stays. */
	if (unlink(sock) < 0)
		return 1;
	if (unlink(d->outside_file) == 0 || errno != EACCES)
		return 2;
	return 0;
}

static void test_main_removes_its_socket_and_nothing_else(void **state)
{
	SKIP_WITHOUT_LANDLOCK(state);
	const struct dirs *d = *state;
	struct vm_config cfg;
	config_init_defaults(&cfg);
	assert_int_equal(asprintf(&cfg.api_sock, "%s/api.sock", d->inside) > 0, 1);
	int fd = open(cfg.api_sock, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	int rc = in_child(&cfg, SANDBOX_MAIN, NULL, main_checks, d);
	config_free(&cfg);
	assert_int_equal(rc, 0);
}

static int unrestricted_checks(const struct dirs *d)
{
	return open_errno(d->outside_file, O_RDONLY) == 0 ? 0 : 1;
}

/* The file as a C string. */
static char *read_text(const char *path)
{
	uint8_t *data = NULL;
	size_t len = 0;
	assert_int_equal(read_file(path, 1 << 20, &data, &len), 0);
	char *text = calloc(1, len + 1);
	memcpy(text, data, len);
	free(data);
	return text;
}

static void test_landlock_off_limits_nothing_and_says_so(void **state)
{
	SKIP_WITHOUT_LANDLOCK(state);
	const struct dirs *d = *state;
	struct vm_config cfg;
	config_for(&cfg, d);
	cfg.landlock = false;
	char log[128];
	snprintf(log, sizeof(log), "%s/log", d->outside);
	int rc = in_child(&cfg, SANDBOX_VCPU, log, unrestricted_checks, d);
	char *text = read_text(log);
	bool said = strstr(text, "Landlock is off (--landlock off)") != NULL;
	free(text);
	config_free(&cfg);
	assert_int_equal(rc, 0);
	assert_true(said);
}

static void test_log_names_abi_and_snapshot_dir(void **state)
{
	SKIP_WITHOUT_LANDLOCK(state);
	const struct dirs *d = *state;
	struct vm_config cfg;
	config_for(&cfg, d);
	char log[128];
	snprintf(log, sizeof(log), "%s/log", d->outside);
	int rc = in_child(&cfg, SANDBOX_API, log, api_checks, d);
	char *text = read_text(log), want[160];
	snprintf(want, sizeof(want), "Landlock ABI %d: file access limited to writing snapshots beneath %s,",
		 landlock_abi(), d->inside);
	bool said = strstr(text, want) != NULL;
	free(text);
	config_free(&cfg);
	assert_int_equal(rc, 0);
	assert_true(said);
}

static void test_missing_snapshot_dir_is_refused(void **state)
{
	SKIP_WITHOUT_LANDLOCK(state);
	const struct dirs *d = *state;
	struct vm_config cfg;
	config_init_defaults(&cfg);
	assert_int_equal(asprintf(&cfg.snapshot_dir, "%s/missing", d->outside) > 0, 1);
	assert_int_equal(landlock_configure(&cfg), -ENOENT);
	free(cfg.snapshot_dir);
	cfg.snapshot_dir = strdup(d->outside_file);
	assert_int_equal(landlock_configure(&cfg), -ENOTDIR);
	landlock_reset();
	config_free(&cfg);
}

/* A listener made before the child is confined; the child then connects to it. */
static int listener_port;

static int tcp_connect_errno(const struct dirs *d)
{
	(void)d;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)listener_port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int rc = connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? errno : 0;
	close(s);
	return rc;
}

static int listen_on_loopback(void)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(sa);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s, 4), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &len), 0);
	listener_port = ntohs(sa.sin_port);
	return s;
}

static void test_tcp_denied_unless_user_networking(void **state)
{
	SKIP_WITHOUT_LANDLOCK(state);
	if (landlock_abi() < 4) {
		print_message("Landlock ABI %d has no TCP rights\n", landlock_abi());
		skip();
	}
	const struct dirs *d = *state;
	int s = listen_on_loopback();
	struct vm_config cfg;
	config_for(&cfg, d);
	int without_user = in_child(&cfg, SANDBOX_EVENT_LOOP, NULL, tcp_connect_errno, d);
	cfg.nets[cfg.nnets++] = strdup("user");
	int with_user = in_child(&cfg, SANDBOX_EVENT_LOOP, NULL, tcp_connect_errno, d);
	close(s);
	config_free(&cfg);
	assert_int_equal(without_user, EACCES);
	assert_int_equal(with_user, 0);
}

/* The configuration file's keys reach the same fields as --landlock and --snapshot-dir. */
static void test_json_keys(void **state)
{
	(void)state;
	struct vm_config cfg;
	config_init_defaults(&cfg);
	assert_true(cfg.landlock);
	json_error_t jerr;
	json_t *o = json_loads("{\"landlock\": false, \"snapshot_dir\": \"/srv/snaps\"}", 0, &jerr);
	char err[256] = "";
	int rc = config_json_apply(&cfg, o, err, sizeof(err));
	bool off = !cfg.landlock, dir = cfg.snapshot_dir && !strcmp(cfg.snapshot_dir, "/srv/snaps");
	json_decref(o);
	json_t *bad = json_loads("{\"landlock\": \"off\"}", 0, &jerr);
	int bad_rc = config_json_apply(&cfg, bad, err, sizeof(err));
	json_decref(bad);
	config_free(&cfg);
	assert_int_equal(rc, 0);
	assert_true(off);
	assert_true(dir);
	assert_int_equal(bad_rc, -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_api_writes_snapshots_beneath_snapshot_dir_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vcpu_opens_no_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_main_removes_its_socket_and_nothing_else, setup, teardown),
		cmocka_unit_test_setup_teardown(test_landlock_off_limits_nothing_and_says_so, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_names_abi_and_snapshot_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_snapshot_dir_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tcp_denied_unless_user_networking, setup, teardown),
		cmocka_unit_test(test_json_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
