/*
 * The source side of a pre-copy live migration: on its own thread, connect to the destination,
 * shake hands, send guest RAM in rounds while the guest runs (dirty tracking tells what changed),
 * then pause the guest, send the rest and its device state, and wait for the destination to say
 * the guest runs there. Any failure before that answer resumes the guest here.
 *
 * The engine touches the VM only through struct migrate_vm_ops, so it runs against a fake VM in
 * the unit tests; migrate_vm.c supplies the operations for a real struct vm.
 */
#ifndef VMON_MIGRATION_MIGRATE_SOURCE_H
#define VMON_MIGRATION_MIGRATE_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memory/dirty_log.h"
#include "memory/guest_mem.h"
#include "migration/stream.h"

#define MIGRATE_REASON_MAX 512

enum migrate_state {
	MIGRATE_NONE,      /* no migration ran yet */
	MIGRATE_CONNECTING,
	MIGRATE_PRECOPY,   /* rounds while the guest runs */
	MIGRATE_STOPPED,   /* guest paused: the last pages and the state are going out */
	MIGRATE_POSTCOPY,  /* the switch to post-copy: the guest starts there, the rest of RAM follows */
	MIGRATE_COMPLETED, /* the destination runs the guest */
	MIGRATE_FAILED,    /* reason says why; the guest runs here again */
	MIGRATE_CANCELLED, /* DELETE /vm/migration; the guest runs here again */
};

const char *migrate_state_name(enum migrate_state s);

struct migrate_vm_ops {
	/* Stops the vCPUs and devices (in-flight disk requests completed). 0 or -errno (err). */
	int (*pause)(void *ctx, char *err, size_t errlen);
	void (*resume)(void *ctx);
	/* Flushes every disk so no acknowledged write is lost on the switch. 0 or -errno (err). */
	int (*flush_disks)(void *ctx, char *err, size_t errlen);
	/* The paused VM's state file (as a snapshot builds it), malloc'd. 0 or -errno (err). */
	int (*build_state)(void *ctx, uint8_t **out, size_t *len, char *err, size_t errlen);
	/* The destination runs the guest now: stop it here for good. */
	void (*migrated)(void *ctx, const char *destination);
	/* Post-copy failed after the guest started on the destination: the VM is lost; stop it here with why. */
	void (*lost)(void *ctx, const char *why);
	/* Holds the vCPUs off pct % of the time (auto-converge); NULL when the VM cannot. */
	void (*set_throttle)(void *ctx, uint32_t pct);
};

struct migrate_params {
	char destination[512];    /* a migration address (mig_address_parse) */
	uint32_t max_downtime_ms; /* 0: 300 */
	uint32_t bandwidth_mbps;  /* 0: unlimited */
	bool postcopy;            /* after round 1, switch to post-copy (docs/migration.md) */
	int timeout_ms;           /* per step without progress; 0: MIG_TIMEOUT_MS_DEFAULT */
};

/* What the engine needs from the VM besides ops: its RAM, how the vCPUs' writes are logged, its
 * description for the stream's configuration record and the handshake. */
struct migrate_source_vm {
	struct guest_mem *mem;
	const struct dirty_log_ops *dirty_ops;
	void *dirty_ctx;
	struct mig_config cfg;
	const char *vmon_version;
	const struct migrate_vm_ops *ops;
	void *ctx;
};

struct migrate_progress {
	enum migrate_state state;
	uint32_t round;
	uint64_t bytes_sent;
	uint64_t pages_remaining;
	uint64_t dirty_rate_pps;       /* pages per second, smoothed */
	uint64_t bandwidth_bps;        /* bytes per second, smoothed */
	uint64_t expected_downtime_ms;
	uint32_t throttle_pct;
	uint64_t downtime_ms;          /* pause to the destination's answer (completed) */
	uint64_t total_ms;             /* start to end (completed, failed, cancelled) */
	char destination[512];
	char reason[MIGRATE_REASON_MAX]; /* failed or cancelled: why; precopy: the plan's last word */
};

struct migrate_source;

/*
 * Checks p and starts the migration thread. -EINVAL with the address parser's sentence (or the
 * field's) in err when p is wrong; nothing started then.
 */
int migrate_source_start(struct migrate_source **out, const struct migrate_params *p,
			 const struct migrate_source_vm *vm, char *err, size_t errlen);
/* Any thread. */
void migrate_source_progress(struct migrate_source *s, struct migrate_progress *out);
bool migrate_source_running(struct migrate_source *s);
/* Any thread: the step in progress fails at once and the guest resumes. */
void migrate_source_cancel(struct migrate_source *s);
/* Waits for the thread and frees s. NULL ignored. */
void migrate_source_free(struct migrate_source *s);

#endif
