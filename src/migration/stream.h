/*
 * The live-migration stream: what a source vmon sends a destination over one connection. A
 * preamble (magic and format version), then records, each framed by a header with its own CRC32
 * and a CRC32 of its payload: the vmon header, the configuration the destination must be able to
 * run, guest RAM (runs of pages with their data, or runs of zero pages without), round markers,
 * the device and vCPU state (a snapshot state file, built and parsed by state/snapshot_format.h,
 * so snapshot and migration share one serialisation), and an end record. docs/migration.md has
 * the byte layout.
 *
 * The reader trusts nothing it reads: every record is checked (header, length bound, payload
 * checksum, place in the stream, page range inside guest RAM) before any of it is used, and
 * every refusal is one sentence naming the record and its byte offset in the stream.
 */
#ifndef VMON_MIGRATION_STREAM_H
#define VMON_MIGRATION_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "memory/dirty_log.h"
#include "memory/guest_mem.h"
#include "state/snapshot_format.h"

#define MIG_MAGIC "VMONMIGR"
#define MIG_VERSION 1u
#define MIG_PAGE_SIZE 4096u
/* Pages carried by one memory record: bounds a record to 1 MiB of data plus its header. */
#define MIG_PAGES_MAX 256u
/* The most guest RAM a stream may carry: 1 TiB. */
#define MIG_RAM_MAX (1024ULL << 30)
/* The state record is a snapshot state file: tens of KiB per vCPU, no guest RAM. */
#define MIG_STATE_MAX (64u * 1024 * 1024)
#define MIG_VMON_VERSION_MAX 64 /* the vmon version string, NUL included */
/* The largest compatibility blob a handshake's hello carries (CPUID tables and sizes take a few KiB). */
#define MIG_COMPAT_MAX (64u * 1024)

/* What the destination must be able to run before it accepts anything else. */
struct mig_config {
	uint64_t ram_size;   /* bytes of guest RAM, a multiple of MIG_PAGE_SIZE */
	uint32_t cpus;       /* vCPUs, 1..CONFIG_MAX_CPUS */
	uint32_t cpuid_crc;  /* CRC32 of the guest's CPUID table (struct kvm_cpuid2 and entries) */
	struct snap_cpu cpu; /* the vendor and CPU features the guest could use */
};

/*
 * Where a stream's bytes go and come from: a plain descriptor (the *_start/_open functions that
 * take an fd), or a migration connection with deadlines and TLS (migration/transport.h).
 */
struct mig_io {
	int (*write)(void *ctx, const void *p, size_t len);  /* all of len bytes: 0 or -errno */
	ssize_t (*read)(void *ctx, void *p, size_t len);     /* all of len, fewer at end of stream; or -errno */
	/* Optional: the transport's own sentence for its last failure (a deadline, TLS), or NULL. */
	const char *(*why)(void *ctx);
	void *ctx;
};

/* ---- writing (the source) ---- */

struct mig_writer {
	int fd; /* -1 when the writer sends through io */
	struct mig_io io;
	uint64_t offset;      /* bytes written so far: the next record's position */
	uint32_t round;       /* rounds closed so far */
	uint64_t round_pages; /* pages sent since the last round marker */
	bool state_sent, ended; /* ended: the end record, or the switch to post-copy */
	uint8_t *buf; /* one memory record: a copy of the pages, so its checksum matches what is sent */
};

/*
 * Sends the preamble, the header record (vmon_version, e.g. VMON_VERSION) and the configuration
 * record on fd (a socket or pipe; left open and not owned). 0 or -errno (message in err).
 */
int mig_writer_start(struct mig_writer *w, int fd, const char *vmon_version, const struct mig_config *cfg,
		     char *err, size_t errlen);
/* The same, sending through io (a migration connection). */
int mig_writer_start_io(struct mig_writer *w, const struct mig_io *io, const char *vmon_version,
			const struct mig_config *cfg, char *err, size_t errlen);
/*
 * Sends count pages of mem from gpa (page-aligned, inside one RAM region): runs of zero pages as
 * zero-run records, the others as memory records of their data. The guest may be running: each
 * record's pages are copied before they are checksummed, so a page the guest changes meanwhile
 * goes out consistent (and dirty, to be sent again in a later round).
 */
int mig_writer_pages(struct mig_writer *w, const struct guest_mem *mem, uint64_t gpa, uint64_t count, char *err,
		     size_t errlen);
/* Closes a round: a marker with its number (1, 2, ...) and the pages sent since the last one. */
int mig_writer_round(struct mig_writer *w, char *err, size_t errlen);
/* Sends the device and vCPU state: a snapshot state file as snap_writer_build() makes it. Once. */
int mig_writer_state(struct mig_writer *w, const uint8_t *state, size_t len, char *err, size_t errlen);
/*
 * Switches the stream to post-copy (after the state, with the last round closed): the switch
 * record, then the runs of pending pages (one bit per page of guest RAM, set for each page the
 * source sends again, as dirty_log.h counts them) for the destination to drop. Then postcopy_source takes the connection.
 */
int mig_writer_postcopy(struct mig_writer *w, const struct guest_mem *mem, const struct dirty_pages *pending, char *err,
			size_t errlen);
/* Sends the end record (after the state, with the last round closed). */
int mig_writer_end(struct mig_writer *w, char *err, size_t errlen);
void mig_writer_free(struct mig_writer *w);

/* ---- reading (the destination) ---- */

enum mig_event_kind {
	MIG_EV_PAGES, /* count pages from gpa were written into guest RAM */
	MIG_EV_ZERO,  /* count pages from gpa were cleared */
	MIG_EV_ROUND, /* round `round` ended after `count` pages */
	MIG_EV_STATE, /* the device and vCPU state, checked by snap_file_parse; the caller frees it */
	MIG_EV_END,   /* the end record: nothing more follows */
	/*
	 * The switch to post-copy: the stream goes on in postcopy_dest_start (migration/postcopy_dest.h),
	 * which reads `count` discard runs; `gpa` holds the pages still to come.
	 */
	MIG_EV_POSTCOPY,
};

struct mig_event {
	enum mig_event_kind kind;
	uint64_t gpa, count;
	uint32_t round;
	struct snap_file state; /* MIG_EV_STATE: owns its buffer, release with snap_file_free */
};

enum mig_reader_phase { MIG_R_START, MIG_R_BODY, MIG_R_ENDED, MIG_R_FAILED };

struct mig_reader {
	int fd; /* -1 when the reader reads through io */
	struct mig_io io;
	uint64_t offset; /* bytes read so far: the next record's position */
	enum mig_reader_phase phase;
	char vmon_version[MIG_VMON_VERSION_MAX]; /* of the source, for messages */
	uint32_t flags;
	struct mig_config cfg;
	const struct guest_mem *mem;
	uint32_t round;
	uint64_t round_pages;
	bool have_state;
	uint8_t *buf; /* one record's payload */
	size_t buf_len;
};

/*
 * Reads and checks the preamble, the header record and the configuration record from fd (not
 * owned). 0; -EPROTO for a stream of another format version or one that is not a vmon migration
 * stream; -EINVAL for damage; -EPIPE if the peer closed the connection; -errno; message in err.
 */
int mig_reader_open(struct mig_reader *r, int fd, char *err, size_t errlen);
/* The same, reading through io (a migration connection). */
int mig_reader_open_io(struct mig_reader *r, const struct mig_io *io, char *err, size_t errlen);
/*
 * The guest RAM the stream is delivered into, made from r->cfg by the caller: refused
 * (-EINVAL) if its size is not the configuration's.
 */
int mig_reader_set_memory(struct mig_reader *r, const struct guest_mem *mem, char *err, size_t errlen);
/*
 * Reads, checks and applies the next record (pages are written into the memory given to
 * mig_reader_set_memory, through gpa_to_host) and says what it was in ev. After MIG_EV_END the
 * stream is over. 0 or -errno as for mig_reader_open; after an error the reader refuses to go on.
 */
int mig_reader_next(struct mig_reader *r, struct mig_event *ev, char *err, size_t errlen);
void mig_reader_free(struct mig_reader *r);

#endif
