/*
 * --seccomp log: a forbidden system call traps (SIGSYS); the handler writes one line naming
 * the thread's role and the call, then makes the call itself from one known instruction that
 * every log-mode filter lets through, so the VM behaves as without a filter.
 */
#ifndef VMON_SANDBOX_SECCOMP_LOG_H
#define VMON_SANDBOX_SECCOMP_LOG_H

#include <seccomp.h>

/* Installs the SIGSYS handler and the table of system call names it prints. 0 or -errno. */
int seccomp_log_install_handler(void);

/*
 * Loads ctx (built with SCMP_ACT_TRAP as its default action) on the calling thread, preceded
 * by the rule that lets the handler's own system calls through. 0 or a negative errno.
 */
int seccomp_log_load(scmp_filter_ctx ctx);

#endif
