/*
 * The seccomp filter of every thread role, installed for real in a forked child: a call the
 * role makes works, a call outside its list kills the process with SIGSYS, --seccomp log
 * reports the call instead and lets it through.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "sandbox/sandbox.h"
#include "sandbox/seccomp_policy.h"

/* Ends the child without exit_group, which most roles do not allow; a lone thread's exit ends it. */
static void child_exit(int code) { syscall(SYS_exit, code); }

/*
 * Runs fn in a child confined to role (mode on or log, stderr into errfd when >= 0) and returns
 * its wait status.
 */
static int in_child(enum sandbox_role role, enum seccomp_mode mode, int errfd, int (*fn)(void))
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (errfd >= 0)
			dup2(errfd, STDERR_FILENO);
		if (sandbox_configure(mode))
			_exit(100);
		sandbox_enter(role);
		child_exit(fn());
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static int allowed_calls(void)
{
	/* Every role logs to stderr and takes locks; the allocator maps memory. */
	if (write(STDERR_FILENO, "", 0) != 0 || getpid() <= 0)
		return 1;
	void *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED || munmap(p, 1 << 20))
		return 2;
	return 0;
}

static int forbidden_personality(void)
{
	/* No role asks for (or changes) the process's execution domain once the VM runs. */
	return syscall(SYS_personality, 0xffffffffUL) >= 0 ? 0 : 3;
}

static int executable_mapping(void)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? 4 : 0;
}

static int terminal_ioctl(void)
{
	struct termios t;
	ioctl(STDIN_FILENO, TCGETS, &t);
	return 0;
}

static int inject_terminal_input(void)
{
	/* TIOCSTI types into the terminal vmon was started from: no role may. */
	char c = 0;
	ioctl(-1, TIOCSTI, &c);
	return 0;
}

static int kvm_run_on_a_bad_fd(void)
{
	/* Allowed by the filter: the kernel's own answer (EBADF) comes back. */
	return ioctl(-1, KVM_RUN, 0) < 0 && errno == EBADF ? 0 : 5;
}

static void assert_killed_by_sigsys(int status)
{
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGSYS);
}

static void assert_exited_ok(int status)
{
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_every_role_allows_its_calls_and_kills_on_others(void **state)
{
	(void)state;
	for (int r = 0; r < SANDBOX_ROLE_COUNT; r++) {
		enum sandbox_role role = (enum sandbox_role)r;
		print_message("role %s: %zu system calls\n", sandbox_role_name(role), seccomp_policy_count(role));
		assert_exited_ok(in_child(role, SECCOMP_MODE_ON, -1, allowed_calls));
		assert_killed_by_sigsys(in_child(role, SECCOMP_MODE_ON, -1, forbidden_personality));
		assert_killed_by_sigsys(in_child(role, SECCOMP_MODE_ON, -1, executable_mapping));
	}
}

static void test_ioctl_is_matched_on_the_request(void **state)
{
	(void)state;
	assert_exited_ok(in_child(SANDBOX_VCPU, SECCOMP_MODE_ON, -1, kvm_run_on_a_bad_fd));
	assert_killed_by_sigsys(in_child(SANDBOX_VCPU, SECCOMP_MODE_ON, -1, inject_terminal_input));
	assert_killed_by_sigsys(in_child(SANDBOX_MAIN, SECCOMP_MODE_ON, -1, inject_terminal_input));
	/* Any thread's crash handler gives the terminal back. */
	assert_exited_ok(in_child(SANDBOX_VCPU, SECCOMP_MODE_ON, -1, terminal_ioctl));
	/* The main thread restores the terminal, and has no business running a vCPU. */
	assert_exited_ok(in_child(SANDBOX_MAIN, SECCOMP_MODE_ON, -1, terminal_ioctl));
	assert_killed_by_sigsys(in_child(SANDBOX_MAIN, SECCOMP_MODE_ON, -1, kvm_run_on_a_bad_fd));
	assert_killed_by_sigsys(in_child(SANDBOX_SIGNAL, SECCOMP_MODE_ON, -1, kvm_run_on_a_bad_fd));
}

static void *nothing(void *arg) { return arg; }

static int start_a_thread(void)
{
	pthread_t t;
	if (pthread_create(&t, NULL, nothing, NULL))
		return 6;
	return pthread_join(t, NULL) ? 7 : 0;
}

static void test_only_the_api_starts_threads(void **state)
{
	(void)state;
	/* libmicrohttpd starts a thread per connection (clone3 refused, glibc falls back to clone). */
	assert_exited_ok(in_child(SANDBOX_API, SECCOMP_MODE_ON, -1, start_a_thread));
#if !defined(__SANITIZE_ADDRESS__) /* the sanitizer's leak check needs clone in every role */
	assert_killed_by_sigsys(in_child(SANDBOX_VCPU, SECCOMP_MODE_ON, -1, start_a_thread));
#endif
}

static int end_the_process(void)
{
	/* exit(): atexit handlers, stdio, and in sanitizer builds the leak check. */
	exit(0);
}

static void test_the_main_thread_ends_the_process(void **state)
{
	(void)state;
	assert_exited_ok(in_child(SANDBOX_MAIN, SECCOMP_MODE_ON, -1, end_the_process));
}

/* What the console's fatal-signal handler does: give the terminal back, re-raise with the old action. */
static struct sigaction previous_abort_action;
static void on_abort(int sig)
{
	struct termios t;
	memset(&t, 0, sizeof(t));
	tcsetattr(STDIN_FILENO, TCSANOW, &t); /* stdin is /dev/null here: ENOTTY */
	sigaction(sig, &previous_abort_action, NULL);
	raise(sig);
}

static int crash(void)
{
	abort();
}

static void test_a_crash_in_any_role_is_reported_as_itself(void **state)
{
	(void)state;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_abort;
	sigemptyset(&sa.sa_mask);
	int devnull = open("/dev/null", O_RDONLY);
	int saved_stdin = dup(STDIN_FILENO);
	dup2(devnull, STDIN_FILENO);
	assert_int_equal(sigaction(SIGABRT, &sa, &previous_abort_action), 0);
	for (int r = 0; r < SANDBOX_ROLE_COUNT; r++) {
		int status = in_child((enum sandbox_role)r, SECCOMP_MODE_ON, -1, crash);
		assert_true(WIFSIGNALED(status));
		assert_int_equal(WTERMSIG(status), SIGABRT);
	}
	sigaction(SIGABRT, &previous_abort_action, NULL);
	dup2(saved_stdin, STDIN_FILENO);
	close(saved_stdin);
	close(devnull);
}

static void test_log_mode_reports_the_call_and_lets_it_through(void **state)
{
	(void)state;
	char path[] = "/tmp/vmon-sandbox.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_exited_ok(in_child(SANDBOX_EVENT_LOOP, SECCOMP_MODE_LOG, fd, forbidden_personality));
	char buf[512] = "";
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	assert_true(n > 0);
	assert_non_null(strstr(buf, "the event-loop thread called personality"));
	assert_non_null(strstr(buf, "--seccomp log"));
}

static void test_off_mode_installs_no_filter(void **state)
{
	(void)state;
	assert_exited_ok(in_child(SANDBOX_VCPU, SECCOMP_MODE_OFF, open("/dev/null", O_WRONLY), forbidden_personality));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_role_allows_its_calls_and_kills_on_others),
		cmocka_unit_test(test_ioctl_is_matched_on_the_request),
		cmocka_unit_test(test_only_the_api_starts_threads),
		cmocka_unit_test(test_the_main_thread_ends_the_process),
		cmocka_unit_test(test_a_crash_in_any_role_is_reported_as_itself),
		cmocka_unit_test(test_log_mode_reports_the_call_and_lets_it_through),
		cmocka_unit_test(test_off_mode_installs_no_filter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
