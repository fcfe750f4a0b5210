/*
 * The runtime registry of running VMs, read by `vmon ps` and `vmon ctl --vm`: each vmon process
 * writes one JSON file, <dir>/<pid>.json, with its pid, process start time, API socket, start
 * time and configuration, and removes it on exit. An entry whose process is gone (killed, or the
 * pid now belongs to another process) is stale.
 *
 * The directory is $VMON_RUNTIME_DIR if set, else $XDG_RUNTIME_DIR/vmon, else /run/vmon for
 * root, else /tmp/vmon-<uid>.
 */
#ifndef VMON_VM_REGISTRY_H
#define VMON_VM_REGISTRY_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct registry_entry {
	int pid;
	bool stale;                          /* the process that wrote it is gone */
	long long started_at;                /* Unix time the VM started */
	unsigned int cpus;
	uint64_t memory;
	char name[CONFIG_MAX_NAME + 1];      /* "" if none */
	char api_sock[CONFIG_MAX_SOCK_PATH]; /* "" if the VM has no API */
	uint32_t vsock_cid;                  /* the guest's vsock CID, 0 if it has no vsock */
	char kernel[PATH_MAX];
	char path[PATH_MAX];                 /* the entry's file */
};

/* Writes the registry directory's path into buf. 0 or -ENAMETOOLONG. */
int registry_dir(char *buf, size_t len);

/*
 * Whether dir may hold the registry: a directory (-ENOTDIR otherwise); when private_dir (the
 * fallback in /tmp, which another user could have created first) also not a symlink, owned by
 * this user and closed to group and others (-EPERM). Logs the reason for a refusal.
 */
int registry_check_dir(const char *dir, bool private_dir);

/*
 * Registers the calling process as running a VM with this configuration. path receives the
 * entry's file, for registry_unregister. 0 or a negative errno (the reason is logged).
 */
int registry_register(const struct vm_config *cfg, char *path, size_t len);

/* Removes an entry file; a missing file is fine. */
void registry_unregister(const char *path);

/*
 * Reads every entry, sorted by pid, into *out (malloc'ed, free() it; NULL when there are none).
 * Unreadable or malformed files are skipped. Returns the number of entries or a negative errno
 * (the reason logged). A missing directory means no VMs: 0.
 */
int registry_list(struct registry_entry **out);

/* Whether pid is still the process with the given start time (from /proc/<pid>/stat). */
bool registry_process_alive(int pid, unsigned long long proc_start);

/* The start time of a process in clock ticks since boot, or 0 if it cannot be read. */
unsigned long long registry_proc_start(int pid);

#endif
