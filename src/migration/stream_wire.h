/*
 * The migration stream's bytes on the wire (little-endian, x86-64 only, as the snapshot format)
 * and the I/O both ends share. Private to src/migration/; docs/migration.md documents the layout.
 */
#ifndef VMON_MIGRATION_STREAM_WIRE_H
#define VMON_MIGRATION_STREAM_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/util.h"
#include "state/snapshot_format.h"

enum mig_rec_type {
	MIG_REC_HEADER = 1,
	MIG_REC_CONFIG = 2,
	MIG_REC_PAGES = 3,
	MIG_REC_ZERO = 4,
	MIG_REC_ROUND = 5,
	MIG_REC_STATE = 6,
	MIG_REC_END = 7,
	/* The connection's handshake (migration/handshake.c), before a stream: never inside one. */
	MIG_REC_HELLO = 8,
	MIG_REC_VERDICT = 9,
	/*
	 * Post-copy (migration/postcopy_*.c, docs/migration.md): the switch, after the state; the
	 * runs of pages the destination must drop because the source sends them again; the
	 * destination's page requests on the way back; the source's end of the push; the
	 * destination's confirmation that every page arrived.
	 */
	MIG_REC_POSTCOPY = 10,
	MIG_REC_DISCARD = 11,
	MIG_REC_PAGE_REQUEST = 12,
	MIG_REC_POSTCOPY_END = 13,
	MIG_REC_POSTCOPY_DONE = 14,
	MIG_REC_TYPES
};

/* The first bytes of a stream, outside any record, so a peer that is not vmon is told apart. */
struct mig_preamble {
	char magic[8];
	uint32_t version;
	uint32_t reserved;
};

/* Frames every record. */
struct mig_rec_hdr {
	uint32_t type;
	uint32_t len;     /* payload bytes after this header */
	uint32_t crc;     /* CRC32 of the payload */
	uint32_t hdr_crc; /* CRC32 of the 12 bytes before it, so a damaged length is never trusted */
};

struct mig_rec_header {
	uint32_t flags; /* none defined: a reader refuses any bit */
	uint32_t reserved;
	char vmon_version[64]; /* NUL-terminated printable ASCII */
};

struct mig_rec_config {
	uint64_t ram_size;
	uint32_t cpus;
	uint32_t page_size;
	char cpu_vendor[12];
	uint32_t cpu_signature;
	uint32_t cpu_features[SNAP_F_WORDS];
	uint32_t cpuid_crc;
	uint32_t reserved;
};

/* PAGES: this, then count pages of data. ZERO: this alone. */
struct mig_rec_pages {
	uint64_t gpa;
	uint64_t count;
};

struct mig_rec_round {
	uint32_t round;
	uint32_t reserved;
	uint64_t pages;
};

struct mig_rec_end {
	uint32_t rounds;
	uint32_t reserved;
};

/* POSTCOPY: the switch to post-copy; discard_runs DISCARD records (struct mig_rec_pages) follow. */
struct mig_rec_postcopy {
	uint64_t discard_runs;
	uint64_t pending; /* pages the source still sends: those of the runs */
};

/* PAGE_REQUEST: the destination faulted on these pages and waits for them. */
struct mig_rec_page_request {
	uint64_t gpa;
	uint32_t count; /* 1..MIG_PAGES_MAX */
	uint32_t reserved;
};

/* POSTCOPY_END (source: every pending page is sent) and POSTCOPY_DONE (destination: all arrived). */
struct mig_rec_postcopy_end {
	uint64_t pages;    /* pages sent (END) or installed (DONE) during post-copy */
	uint64_t requests; /* page requests served (END) or sent (DONE) */
};

/* HELLO: this, then compat_len bytes of the caller's compatibility blob. */
struct mig_rec_hello {
	uint32_t role; /* MIG_ROLE_SOURCE or MIG_ROLE_DESTINATION */
	uint32_t flags; /* none defined: a reader refuses any bit */
	uint32_t compat_len;
	uint32_t reserved;
	char vmon_version[64]; /* NUL-terminated printable ASCII */
};

enum { MIG_ROLE_SOURCE = 1, MIG_ROLE_DESTINATION = 2 };

/* VERDICT: whether the sender accepts the peer's hello, and why not. */
struct mig_rec_verdict {
	uint32_t accept; /* 1 accept, 0 refuse */
	uint32_t reserved;
	char reason[504]; /* NUL-terminated printable ASCII; empty when accepted */
};

/* Writes one sentence into err (if any) and returns rc: lib/util.h's err_fail, under the name migration code uses. */
#define mig_fail err_fail

uint32_t mig_crc(uint32_t crc, const void *p, size_t len);
/* The record header for a payload of len bytes whose CRC32 is crc. */
struct mig_rec_hdr mig_rec_hdr_make(uint32_t type, uint32_t len, uint32_t crc);
/* A NUL-terminated string of printable ASCII within max bytes. */
bool mig_printable(const char *s, size_t max);
/* Whether the page (MIG_PAGE_SIZE bytes, 8-byte aligned) at p holds only zeros. */
bool mig_page_is_zero(const uint8_t *p);
/* Whether a payload of len bytes is one a record of type can have (type known). */
bool mig_rec_len_ok(uint32_t type, uint32_t len);
/* The record's name in messages ("memory record"). */
const char *mig_rec_name(uint32_t type);

struct mig_io;
/* The io of a plain descriptor: mig_write_full and mig_read_full on fd. */
struct mig_io mig_fd_io(int fd);
/* The reason io gives for its last failure, else strerror(-rc). */
const char *mig_io_why(const struct mig_io *io, int rc);

/* All of len bytes, through partial writes and EINTR; no SIGPIPE. 0 or -errno. */
int mig_write_full(int fd, const void *p, size_t len);
/* All of len bytes, through partial reads and EINTR. The bytes read, fewer at end of stream; -errno. */
ssize_t mig_read_full(int fd, void *p, size_t len);

#endif
