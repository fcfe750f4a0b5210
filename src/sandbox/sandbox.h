/*
 * Confinement of the vmon process once the VM is set up (docs/security.md): every thread
 * calls sandbox_enter() with its role at its start, which drops the thread's capabilities,
 * sets no_new_privs, enforces the role's Landlock rules (sandbox/landlock.h) and loads the
 * seccomp filter of that role. The filters are per thread
 * (no TSYNC): a thread created later inherits its creator's filter, so a thread that starts
 * others enters its role only after them, or starts them with the role they need.
 */
#ifndef VMON_SANDBOX_SANDBOX_H
#define VMON_SANDBOX_SANDBOX_H

#include "config/config.h"

enum sandbox_role {
	SANDBOX_MAIN,        /* waits for the VM to end and tears it down */
	SANDBOX_SIGNAL,      /* turns SIGINT/SIGTERM/SIGHUP into a stop */
	SANDBOX_API,         /* libmicrohttpd's listener and connection threads (pause, snapshot, ...) */
	SANDBOX_CONSOLE_IN,  /* reads the terminal into the serial port */
	SANDBOX_CONSOLE_OUT, /* writes the serial port's output to the terminal */
	SANDBOX_EVENT_LOOP,  /* device backends: disks, networks, sockets, timers */
	SANDBOX_VCPU,        /* KVM_RUN and exit handling */
	SANDBOX_POSTCOPY,    /* a migration's post-copy on the destination: page faults, requests, installs */
	SANDBOX_ROLE_COUNT,
};

const char *sandbox_role_name(enum sandbox_role role);

/*
 * Chooses the seccomp mode for the threads that enter a role from now on; prints the loud
 * warning of SECCOMP_MODE_OFF. Call once, before any thread enters a role.
 */
int sandbox_configure(enum seccomp_mode mode);

/*
 * Confines the calling thread to its role. A thread that cannot be confined must not run the
 * VM: on failure the reason is logged and vmon exits with status 1 (EXIT_GUEST_FAILED).
 * Does nothing before sandbox_configure() (unit tests, tools reusing vmon's code).
 */
void sandbox_enter(enum sandbox_role role);

/*
 * Process-wide limits sized from the configuration (RLIMIT_NOFILE, RLIMIT_FSIZE), applied
 * once set-up has opened what it needs. Returns 0 or a negative errno (reason logged).
 */
int sandbox_limit_resources(const struct vm_config *cfg);

#endif
