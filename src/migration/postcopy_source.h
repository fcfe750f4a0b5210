/*
 * Post-copy's source side (docs/migration.md, "Post-copy"): once the guest is paused here and
 * runs on the destination, sends every page the destination still lacks, the pages it asks for
 * first. A reader thread takes the destination's page requests off the connection; the calling
 * thread writes: each request is answered before the next background chunk, and the background
 * push walks the pending pages in order. The guest must stay paused (and vmon's devices quiet)
 * while this runs: RAM here is the one true copy of every page not sent yet.
 */
#ifndef VMON_MIGRATION_POSTCOPY_SOURCE_H
#define VMON_MIGRATION_POSTCOPY_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "memory/dirty_log.h"
#include "memory/guest_mem.h"
#include "migration/transport.h"

/* Pages the background push sends per record: small, so an urgent page waits for little. */
#define POSTCOPY_PUSH_PAGES 32u

struct postcopy_source_stats {
	uint64_t pushed;    /* pages sent by the background push */
	uint64_t requested; /* pages sent because the destination asked for them */
	uint64_t requests;  /* page requests received */
	/*
	 * The destination said the guest runs there (postcopy_dest_tell), at started_ns (monotonic).
	 * Until then a failure leaves the guest whole here, to resume; after it, a failure loses it.
	 */
	bool started;
	uint64_t started_ns;
};

/*
 * Runs post-copy's source side on conn after mig_writer_postcopy() sent the switch with the same
 * pending pages (one bit per page not sent since it last changed, as dirty_log.h counts them),
 * until the destination confirms every page arrived (0) or the connection fails (-errno with one
 * sentence in err). Such a failure loses the VM, its memory split between the hosts, once the
 * destination said the guest runs there (stats->started); before that (a refusal is -EPERM with
 * the destination's reason) the guest is whole here and may resume. Cancel through the
 * connection's mig_cancel. The reader thread runs with the caller's confinement (the api role).
 * bandwidth_mbps (0 = unlimited) paces the background push; a requested page is sent at once.
 */
int postcopy_source_run(const struct guest_mem *mem, struct mig_conn *conn, const struct dirty_pages *pending,
			uint32_t bandwidth_mbps, struct postcopy_source_stats *stats, char *err, size_t errlen);

#endif
