/*
 * The VM configuration model. The command line (and later the JSON config file, the API and
 * the snapshot header) are views of this one struct, validated in one place.
 */
#ifndef VMON_CONFIG_CONFIG_H
#define VMON_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config_balloon.h"

#define CONFIG_MAX_CPUS 254 /* APIC IDs 0..254 without x2APIC; 255 is broadcast */
#define CONFIG_MAX_SOCK_PATH 108 /* sizeof(sockaddr_un.sun_path) */
#define CONFIG_MAX_NAME 64
#define CONFIG_MAX_NICS 4 /* --net cards */
#define CONFIG_MAX_DISKS 16 /* --disk images */
#define CONFIG_MAX_DISK_SERIAL 20 /* the virtio-blk ID string */

enum host_workarounds {
	HOST_WORKAROUNDS_AUTO = 0, /* probe the host at start-up and apply what it needs */
	HOST_WORKAROUNDS_ON,
	HOST_WORKAROUNDS_OFF,
};

/* --seccomp: the system call filters of vmon's threads (docs/security.md). */
enum seccomp_mode {
	SECCOMP_MODE_ON = 0, /* a forbidden system call kills vmon */
	SECCOMP_MODE_LOG,    /* it is reported on stderr and allowed (for finding what a filter lacks) */
	SECCOMP_MODE_OFF,    /* no filter: development only */
};

/* One --disk (see config/config_disk.h). */
/* A disk image's format: probed from its first bytes unless given (--disk PATH,format=...). */
enum disk_format { DISK_FORMAT_AUTO = 0, DISK_FORMAT_RAW, DISK_FORMAT_QCOW2 };

struct disk_config {
	char *path;
	enum disk_format format;
	bool readonly;
	char *serial;           /* NULL = none */
};

struct vm_config {
	char *kernel_path;
	char *initrd_path;
	char *cmdline;          /* as given by the user; vmon may append host-specific options */
	unsigned int cpus;
	uint64_t memory;        /* bytes */
	/* --memory SIZE,merge=on: private anonymous RAM marked MADV_MERGEABLE for the host's KSM (config_memory.h) */
	bool memory_merge;
	bool memory_hugepages;  /* --memory SIZE,hugepages=on: RAM in 2 MiB hugetlbfs pages */
	enum host_workarounds workarounds;
	char *log_level;        /* "error", "warn", "info", "debug"; NULL = info */
	char *log_file;         /* JSON-lines log file, in addition to stderr; NULL = none */
	char *api_sock;         /* Unix socket path of the control API; NULL = no API */
	char *name;             /* shown by `vmon ps`; NULL = none */
	char *nets[CONFIG_MAX_NICS]; /* --net values, one per NIC (see config/config_net.h) */
	unsigned int nnets;
	struct disk_config disks[CONFIG_MAX_DISKS]; /* --disk, in order: vda, vdb, ... */
	unsigned int ndisks;
	char *console2;         /* --console2 value: socket=PATH or file=PATH (config_sockets.h); NULL = none */
	char *vsock;            /* --vsock value: cid=N,uds=PATH (config_sockets.h); NULL = none */
	bool rng;               /* the virtio entropy device, the guest's /dev/hwrng (default on; --no-rng) */
	struct balloon_config balloon; /* --balloon (config/config_balloon.h) */
	enum seccomp_mode seccomp; /* host-side policy: not saved in snapshots */
	bool landlock;          /* Landlock file-access limits where the kernel has them (default on) */
	char *snapshot_dir;     /* where the API may write snapshots under Landlock; NULL = /tmp and $TMPDIR */
};

void config_init_defaults(struct vm_config *cfg);
void config_free(struct vm_config *cfg);

/* Parses "auto", "on", "off"; returns -1 on anything else. */
int config_parse_workarounds(const char *s);
const char *config_workarounds_name(enum host_workarounds w);

/* Parses "on", "log", "off"; returns -1 on anything else. */
int config_parse_seccomp(const char *s);

/*
 * Checks the configuration; on error writes one human-readable sentence (what is wrong and
 * how to fix it) into err and returns -EINVAL.
 */
int config_validate(const struct vm_config *cfg, char *err, unsigned long errlen);

#endif
