/*
 * The destination side of a pre-copy live migration, before any VM exists: accept a source on
 * a listener, shake hands (the caller judges the source's configuration: CPU, memory), receive
 * guest RAM into memory of its own and the device and vCPU state, then let the caller build
 * and start the VM and answer the source (mig_outcome_send) that the guest runs here, or why
 * not. A source that fails before its stream is complete (refused, not vmon, gone mid-stream)
 * is logged and the listener waits for the next one, so a retried migration needs no restart.
 */
#ifndef VMON_MIGRATION_MIGRATE_DEST_H
#define VMON_MIGRATION_MIGRATE_DEST_H

#include <stddef.h>
#include <stdint.h>

#include "memory/guest_mem.h"
#include "migration/handshake.h"
#include "migration/stream.h"
#include "migration/transport.h"

/*
 * Judges the configuration a source's hello carries (checked for sanity first): 0 to accept, or
 * nonzero with one sentence in reason, which the source shows ("this host's CPU lacks AVX2...").
 */
typedef int (*migrate_dest_check)(void *opaque, const struct mig_config *cfg, char *reason, size_t len);

struct migrate_dest_params {
	const char *vmon_version; /* VMON_VERSION */
	int accept_wait_ms;       /* how long to wait for a source; < 0: without limit */
	int timeout_ms;           /* per step without progress once connected; 0: MIG_TIMEOUT_MS_DEFAULT */
	int attempts;             /* sources to try before giving up; 0: without limit */
	migrate_dest_check check; /* NULL: any configuration that is sane */
	void *opaque;
};

/* A stream received whole: what the caller builds the VM from. */
struct migrate_dest {
	struct mig_conn *conn; /* still open: the source waits for the answer on it */
	struct mig_config cfg;
	char source_version[MIG_VMON_VERSION_MAX];
	struct guest_mem mem;  /* the guest's RAM; the caller may move it into its VM (then clear it here) */
	struct snap_file state; /* the device and vCPU state, checked by snap_file_parse */
	uint32_t rounds;
	uint64_t pages;        /* memory and zero-run pages received, all rounds */
	uint64_t bytes;        /* stream bytes received */
	uint64_t connected_ns, received_ns; /* monotonic: the source connected, the end record arrived */
	/*
	 * The source switched to post-copy (the stream ended with MIG_EV_POSTCOPY, not its end
	 * record): the rest of RAM comes through postcopy_dest_start() with these, and the caller
	 * answers with postcopy_dest_tell() instead of migrate_dest_answer().
	 */
	bool postcopy;
	uint64_t pc_offset, pc_discard_runs, pc_pending;
};

/*
 * Judges a source's hello (the handshake calls it): its blob is the source's struct mig_config
 * as it is, untrusted bytes checked field by field (sizes, vCPUs, vendor string), then p->check.
 * 0 with *out set, or nonzero with one sentence in reason.
 */
int migrate_dest_check_hello(const struct migrate_dest_params *p, const struct mig_peer *peer, struct mig_config *out,
			     char *reason, size_t len);

/*
 * Waits for a source on l and receives its stream into d. 0, or -errno with the sentence in err
 * when no source came within accept_wait_ms, every one of `attempts` failed (the last one's
 * reason), or the listener failed.
 */
int migrate_dest_receive(struct migrate_dest *d, struct mig_listener *l, const struct migrate_dest_params *p,
			 char *err, size_t errlen);
/*
 * Tells the source the guest runs here (refusal NULL; the source then stops it for good) or why
 * it could not be started (the source resumes it). 0 or -errno (err).
 */
int migrate_dest_answer(struct migrate_dest *d, const char *refusal, char *err, size_t errlen);
/* Closes the connection and frees what d still holds. */
void migrate_dest_free(struct migrate_dest *d);

#endif
