/*
 * `vmon jail`: runs `vmon run` confined the way Firecracker's jailer does it, for hosts that run
 * many VMs of different tenants. The jailer (root) builds BASE/NAME/root holding only what the VM
 * needs, then in new mount, PID, IPC and UTS namespaces (and optionally a given network
 * namespace) pivots into it, applies cgroup limits, drops to UID/GID and executes `vmon run`
 * with its options rewritten to the in-jail paths. docs/security.md describes the layout.
 *
 * This header is the command-line model (jail_args.c, unit tested) and the steps that act on the
 * host (jail_root.c, jail_cgroup.c, jail.c).
 */
#ifndef VMON_SANDBOX_JAIL_H
#define VMON_SANDBOX_JAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define JAIL_DEFAULT_BASE "/srv/vmon"
#define JAIL_MAX_ID 64
#define JAIL_MAX_CGROUPS 16
#define JAIL_MAX_FILES 18   /* kernel, initrd and up to 16 disks */
#define JAIL_MAX_OUTPUTS 4  /* API socket, log file, console2, vsock */

/* A file named by a run option, linked or copied into the jail. */
struct jail_file {
	char *host;    /* canonical host path */
	char *inside;  /* path inside the jail: "/" + the file's name */
	bool writable; /* a disk not marked readonly: chowned to the jail's uid */
};

struct jail_cgroup {
	char *key;     /* a cgroup file such as memory.max or cpu.cfs_quota_us */
	char *value;
};

struct jail_spec {
	char id[JAIL_MAX_ID + 1];
	uid_t uid;
	gid_t gid;
	char *base;    /* default JAIL_DEFAULT_BASE */
	char *netns;   /* a network namespace file to join (e.g. /var/run/netns/NAME); NULL = the host's */
	struct jail_cgroup cgroups[JAIL_MAX_CGROUPS];
	unsigned int ncgroups;
	struct jail_file files[JAIL_MAX_FILES];
	unsigned int nfiles;
	const struct jail_file *kernel; /* one of files; NULL until --kernel is seen */
	/* In-jail paths vmon run creates (sockets, the log): their directories are made for uid. */
	char *outputs[JAIL_MAX_OUTPUTS];
	unsigned int noutputs;
	/* The command line to execute: "vmon", "run", the rewritten options, NULL. */
	char **run_argv;
	int run_argc;
	/* For the host's registry entry (vmon ps): the VM's name, API socket inside the jail, size. */
	char *vm_name;
	char *api_sock;
	unsigned int cpus;
	unsigned long long memory;
};

/*
 * Parses `vmon jail` options (argv[0] = "jail") up to "--", then the `run` command line after it:
 * checks the jail's id, uid and gid, resolves the files the VM reads and rewrites their options
 * to in-jail paths, and checks that every path vmon run writes stays inside the jail. On a bad
 * command line writes one sentence (the cause and the fix) into err and returns -EINVAL.
 * The spec is filled either way; free it with jail_spec_free.
 */
int jail_parse(int argc, char **argv, struct jail_spec *spec, char *err, size_t errlen);
void jail_spec_free(struct jail_spec *spec);

/* Whether an in-jail path is absolute, has no ".." component and is not the jail root itself. */
bool jail_path_inside(const char *path);

/* BASE/ID/root into buf. 0 or -ENAMETOOLONG. */
int jail_root_path(const struct jail_spec *spec, char *buf, size_t len);

/*
 * Creates BASE/ID/root on the host (refusing an existing one) with the files, device nodes,
 * directories for outputs and mount points for the shared libraries. 0 or -errno, reason printed.
 */
int jail_root_build(const struct jail_spec *spec, const char *root);
/* Removes BASE/ID, only before anything ran in it (the jailer's own files, no symlink followed). */
void jail_root_remove(const struct jail_spec *spec);
/* In the jail's mount namespace: the read-only library mounts and /proc. 0 or -errno, printed. */
int jail_root_mount(const char *root);

/* Cgroup directories of one jail, across the v1 controllers and the v2 hierarchy it uses. */
struct jail_cgroups {
	char *dirs[JAIL_MAX_CGROUPS];
	unsigned int ndirs;
};
/* Creates vmon/ID under each controller named by the keys and writes the limits. 0 or -errno. */
int jail_cgroups_create(const struct jail_spec *spec, struct jail_cgroups *cg);
/* Moves pid into every cgroup of the jail. 0 or -errno, printed. */
int jail_cgroups_add(const struct jail_cgroups *cg, pid_t pid);
/* Removes the jail's cgroups (once its processes are gone) and frees the list. */
void jail_cgroups_remove(struct jail_cgroups *cg);

#endif
