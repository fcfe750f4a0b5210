/*
 * What each thread role may ask the kernel for: system calls by name, some only with given
 * arguments, and the ioctl requests it issues. One table, read by the filter builder and by
 * the listing in docs/security.md (make seccomp-policy), so the two cannot drift.
 */
#ifndef VMON_SANDBOX_SECCOMP_POLICY_H
#define VMON_SANDBOX_SECCOMP_POLICY_H

#include <seccomp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sandbox/sandbox.h"

struct ioctl_request {
	unsigned long request;
	const char *name;
};

struct seccomp_policy {
	const char *const *syscalls;  /* allowed with any arguments */
	size_t nsyscalls;
	const struct ioctl_request *ioctls; /* ioctl, only with these requests */
	size_t nioctls;
	bool threads; /* may start threads (clone with CLONE_THREAD; clone3 fails with ENOSYS) */
	bool sockets; /* socket(AF_UNIX/AF_INET/AF_INET6) */
	bool names_threads; /* prctl(PR_SET_NAME): libmicrohttpd names its threads */
	bool reads_files; /* openat read-only (no O_CREAT, O_TRUNC, write access) */
};

/*
 * The syscalls every role makes: locking, memory, signal return, logging to stderr; besides,
 * every role may restore the terminal (ioctl TCGETS and TCSETS) from the fatal-signal handler.
 */
extern const char *const seccomp_common_syscalls[];
extern const size_t seccomp_ncommon_syscalls;

const struct seccomp_policy *seccomp_policy_of(enum sandbox_role role);

/*
 * Builds the filter of a role: what its policy allows is allowed, anything else gets
 * default_action (SCMP_ACT_KILL_PROCESS or SCMP_ACT_TRAP). 0 or a negative errno.
 */
int seccomp_policy_build(enum sandbox_role role, uint32_t default_action, scmp_filter_ctx *out);

/* How many distinct system calls a role's filter allows (in any form). */
size_t seccomp_policy_count(enum sandbox_role role);

#endif
