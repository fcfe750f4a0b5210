/*
 * Landlock file-system (and, where the kernel has it, TCP) confinement of vmon's threads once
 * the VM is set up (docs/security.md, "Landlock"). Everything the VM needs is open by then, so
 * each role is left only the file access it still makes: the API thread writes snapshots
 * beneath the snapshot directory, the main thread removes vmon's sockets and registry entry at
 * exit, every thread may read /proc/self; no thread may open anything else.
 *
 * A Landlock domain belongs to the thread that enforces it (and the threads it starts later),
 * like the seccomp filters, so sandbox_enter() applies it in each thread, before seccomp.
 */
#ifndef VMON_SANDBOX_LANDLOCK_H
#define VMON_SANDBOX_LANDLOCK_H

#include "config/config.h"
#include <stddef.h>

#include "sandbox/sandbox.h"

/* Where a migration's certificates are readable under Landlock, besides the snapshot directories. */
#define MIGRATION_CERT_DIR "/etc/vmon"

/* The kernel's Landlock ABI version (>= 1), or -errno when it has none (-ENOSYS, -EOPNOTSUPP). */
int landlock_abi(void);

/*
 * Records what each role will be allowed, from the configuration (--landlock, --snapshot-dir,
 * sockets, networks), and logs it, or logs that Landlock is off or not available. Call once,
 * before any thread enters a role. Returns 0, or -errno with the reason logged (a
 * --snapshot-dir that is not a directory).
 */
int landlock_configure(const struct vm_config *cfg);

/*
 * Confines the calling thread's file access to what its role needs. Does nothing when Landlock
 * is off, not available or not configured. Needs no_new_privs. Returns 0 or -errno (logged).
 */
int landlock_enter(enum sandbox_role role);

/*
 * The directories snapshots may be written beneath, comma-separated, into buf; empty when
 * Landlock does not limit them. For messages that explain a refused snapshot.
 */
size_t landlock_snapshot_dirs(char *buf, size_t len);

/* Forgets the configuration (unit tests). */
void landlock_reset(void);

#endif
