#include "sandbox/sandbox.h"

#include <cap-ng.h>
#include <errno.h>
#include <malloc.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "lib/log.h"
#include "sandbox/landlock.h"
#include "sandbox/seccomp_log.h"
#include "sandbox/seccomp_policy.h"

#define COMP "sandbox"

/* Set once before any thread enters a role; read-only afterwards. */
static bool configured;
static enum seccomp_mode mode;

const char *sandbox_role_name(enum sandbox_role role)
{
	static const char *const names[SANDBOX_ROLE_COUNT] = {
		[SANDBOX_MAIN] = "main",
		[SANDBOX_SIGNAL] = "signal",
		[SANDBOX_API] = "api",
		[SANDBOX_CONSOLE_IN] = "console-in",
		[SANDBOX_CONSOLE_OUT] = "console-out",
		[SANDBOX_EVENT_LOOP] = "event-loop",
		[SANDBOX_VCPU] = "vcpu",
		[SANDBOX_POSTCOPY] = "postcopy",
	};
	return role < SANDBOX_ROLE_COUNT ? names[role] : "unknown";
}

int sandbox_configure(enum seccomp_mode m)
{
	mode = m;
	configured = true;
	/*
	 * glibc reads the time zone (TZ, /etc/localtime) at the first gmtime_r/localtime_r of the
	 * process; the JSON log's timestamps must not make a confined thread open a file.
	 */
	tzset();
	/*
	 * glibc reads /proc/sys/vm/overcommit_memory the first time it shrinks a thread arena's heap,
	 * which a confined thread may do in any free(). With the one main arena there are no thread
	 * heaps to shrink; vmon's threads allocate little outside set-up, so the shared lock costs
	 * nothing measurable. Set before any thread exists, or arenas would already be made.
	 */
	mallopt(M_ARENA_MAX, 1);
	if (m == SECCOMP_MODE_OFF) {
		log_warn(COMP, "*** --seccomp off: no system call filter; a bug in a guest-facing path could take over the "
			       "host account running vmon. For development only: run with --seccomp on (the default) ***");
		return 0;
	}
	return m == SECCOMP_MODE_LOG ? seccomp_log_install_handler() : 0;
}

/* Capabilities are per thread: each thread gives up its own. */
static int drop_capabilities(void)
{
	capng_clear(CAPNG_SELECT_CAPS);
	int rc = capng_apply(CAPNG_SELECT_CAPS);
	return rc ? -EPERM : 0;
}

static void name_thread(enum sandbox_role role)
{
	/*
	 * The main thread keeps vmon's name (ps, pgrep); the others are named after their role,
	 * for ps -L, the kernel's audit log and the log-mode handler (threads inherit the name).
	 */
	if (role != SANDBOX_MAIN)
		prctl(PR_SET_NAME, sandbox_role_name(role), 0, 0, 0);
}

static int confine(enum sandbox_role role)
{
	name_thread(role);
	int rc = drop_capabilities();
	if (rc) {
		log_error(COMP, "the %s thread cannot drop its capabilities: %s", sandbox_role_name(role), strerror(-rc));
		return rc;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		rc = -errno;
		log_error(COMP, "the %s thread cannot set no_new_privs: %s", sandbox_role_name(role), strerror(-rc));
		return rc;
	}
	/* Before seccomp: the filters do not allow the Landlock system calls. */
	if ((rc = landlock_enter(role)))
		return rc;
	if (mode == SECCOMP_MODE_OFF)
		return 0;
	scmp_filter_ctx ctx;
	rc = seccomp_policy_build(role, mode == SECCOMP_MODE_LOG ? SCMP_ACT_TRAP : SCMP_ACT_KILL_PROCESS, &ctx);
	if (!rc) {
		rc = mode == SECCOMP_MODE_LOG ? seccomp_log_load(ctx) : seccomp_load(ctx);
		seccomp_release(ctx);
	}
	if (rc) {
		log_error(COMP, "cannot load the seccomp filter of the %s thread: %s; the kernel needs "
				"CONFIG_SECCOMP_FILTER (or run with --seccomp off, for development only)",
			  sandbox_role_name(role), strerror(-rc));
		return rc;
	}
	return 0;
}

void sandbox_enter(enum sandbox_role role)
{
	/* Unconfigured: unit tests and tools that run vmon's code outside `vmon run`. */
	if (configured && confine(role))
		_exit(1);
}
