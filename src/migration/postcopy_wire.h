/*
 * Post-copy's records on a migration connection (docs/migration.md, "Post-copy"): both ends read
 * and write them at once (the source's page pushes and the destination's page requests), so
 * each end keeps its own byte count for messages and serialises its writers. Every record read
 * is checked (header checksum, a type this end expects, its length, payload checksum, the page
 * range inside guest RAM) before any of it is used. Private to src/migration/.
 */
#ifndef VMON_MIGRATION_POSTCOPY_WIRE_H
#define VMON_MIGRATION_POSTCOPY_WIRE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memory/guest_mem.h"
#include "migration/stream_wire.h"
#include "migration/transport.h"

/* The largest post-copy record: a memory record of MIG_PAGES_MAX pages. */
#define PC_REC_MAX (sizeof(struct mig_rec_pages) + (size_t)MIG_PAGES_MAX * MIG_PAGE_SIZE)

struct pc_link {
	struct mig_conn *conn;
	const char *from;     /* "the source" or "the destination": who sends what this end reads */
	uint64_t rx_offset;   /* post-copy bytes read so far (for messages) */
	pthread_mutex_t wlock; /* one writer at a time */
};

void pc_link_init(struct pc_link *l, struct mig_conn *conn, const char *from);
void pc_link_destroy(struct pc_link *l);

/*
 * Reads one record into buf (PC_REC_MAX bytes) and checks it; *type and *len say what it was.
 * idle_ok: a deadline that passes before the record's first byte is not a failure (-EAGAIN is
 * returned, nothing consumed), for an end that may rightly hear nothing for a while.
 * 0, -EAGAIN, or -errno with one sentence in err.
 */
int pc_read(struct pc_link *l, bool idle_ok, uint32_t *type, void *buf, uint32_t *len, char *err, size_t errlen);
/* One record of head and data (either may be empty). 0 or -errno with one sentence in err. */
int pc_write(struct pc_link *l, uint32_t type, const void *head, size_t head_len, const void *data, size_t data_len,
	     char *err, size_t errlen);

/*
 * A page run from the peer (a memory, zero-run, discard record or a page request): gpa on a
 * page boundary, count pages (1..max), all inside one RAM region of mem. 0 or -EINVAL with err.
 */
int pc_check_run(const struct guest_mem *mem, const char *what, uint64_t rec, uint64_t gpa, uint64_t count,
		 uint64_t max, char *err, size_t errlen);
/* A page request's payload (the mig_rec_page_request of a record pc_read accepted), checked. */
int pc_parse_request(const struct guest_mem *mem, uint64_t rec, const void *payload, uint64_t *gpa, uint32_t *count,
		     char *err, size_t errlen);

/* The index of the page at gpa among all of mem's pages (regions in order), or UINT64_MAX. */
uint64_t pc_page_index(const struct guest_mem *mem, uint64_t gpa);
/* Pages of guest RAM. */
static inline uint64_t pc_pages(const struct guest_mem *mem)
{
	return mem->ram_size / MIG_PAGE_SIZE;
}

#endif
