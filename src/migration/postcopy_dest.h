/*
 * Post-copy's destination side (docs/migration.md, "Post-copy"): guest RAM is registered with
 * userfaultfd, so the guest runs before all of its pages are here. A fault handler thread turns
 * each fault (a vCPU's, through KVM, or a vmon thread's) into a page request to the source; a
 * receiver thread installs the pages the source sends (asked for, or pushed in the background)
 * atomically with UFFDIO_COPY / UFFDIO_ZEROPAGE, which wakes the threads waiting on them. Each
 * page is installed once and requested at most once. When the source's end record arrives and
 * every pending page is here, userfaultfd is unregistered and post-copy is complete.
 *
 * If the source dies (or the connection fails) before that, the VM is lost: the pages not here
 * exist nowhere else. The handler then stops, makes every missing page fault with SIGBUS
 * (UFFDIO_POISON, or PROT_NONE and SIGSEGV on kernels without it; KVM signals a vCPU whose
 * guest touches a poisoned page) and wakes every waiting thread, so nothing hangs; the event fd
 * fires and postcopy_dest_wait says why. The caller must then stop the VM with that sentence.
 */
#ifndef VMON_MIGRATION_POSTCOPY_DEST_H
#define VMON_MIGRATION_POSTCOPY_DEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memory/guest_mem.h"
#include "migration/transport.h"

struct postcopy_dest;

struct postcopy_dest_stats {
	uint64_t faults;     /* faults the handler read */
	uint64_t requests;   /* page requests sent (one page each) */
	uint64_t pages;      /* pages installed with data */
	uint64_t zero_pages; /* pages installed as zeros */
	uint64_t duplicates; /* pages that arrived twice (a request raced the push): dropped */
};

/*
 * Takes over conn after the pre-copy stream's MIG_EV_POSTCOPY (offset: mig_reader's offset then;
 * discard_runs and pending: the event's count and gpa): reads the discard runs and drops those
 * pages from mem, registers mem with userfaultfd and starts the handler and receiver threads.
 * On return (0) the guest may run. -EOPNOTSUPP for RAM post-copy cannot serve (hugepages=on, a
 * restored snapshot's file) or a host without userfaultfd; -errno for the stream; err says why.
 */
int postcopy_dest_start(struct postcopy_dest **out, struct guest_mem *mem, struct mig_conn *conn, uint64_t offset,
			uint64_t discard_runs, uint64_t pending, char *err, size_t errlen);
/*
 * Tells the source, once the VM is built and before its vCPUs start, that the guest runs here
 * (refusal NULL), or why it cannot (the source then resumes it: nothing ran here). The source
 * takes post-copy as complete only after this: a done record waits for it. 0 or -errno (err);
 * on failure the guest must not start here.
 */
int postcopy_dest_tell(struct postcopy_dest *d, const char *refusal, char *err, size_t errlen);
/* Readable once post-copy has ended, complete or failed: for the caller's event loop. */
int postcopy_dest_event_fd(const struct postcopy_dest *d);
/*
 * Waits up to timeout_ms (< 0: without limit) for the end: 0 complete (userfaultfd is gone),
 * -EINPROGRESS still running, or the failure's -errno with its sentence in err (the VM is lost).
 */
int postcopy_dest_wait(struct postcopy_dest *d, int timeout_ms, char *err, size_t errlen);
void postcopy_dest_get_stats(struct postcopy_dest *d, struct postcopy_dest_stats *st);
/* Whether host (an address a thread faulted on) is guest RAM post-copy could not bring: for a SIGBUS's message. */
bool postcopy_dest_lost(const struct postcopy_dest *d, const void *host);
/*
 * Stops the threads (failing post-copy first if it still runs: the connection must still be
 * open then) and closes userfaultfd. Before guest RAM is unmapped.
 */
void postcopy_dest_free(struct postcopy_dest *d);

#endif
