/*
 * The migration stream's bytes on the wire (little-endian, x86-64 only, as the snapshot format)
 * and the I/O both ends share. Private to src/migration/; docs/migration.md documents the layout.
 */
#ifndef VMON_MIGRATION_STREAM_WIRE_H
#define VMON_MIGRATION_STREAM_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "state/snapshot_format.h"

enum mig_rec_type {
	MIG_REC_HEADER = 1,
	MIG_REC_CONFIG = 2,
	MIG_REC_PAGES = 3,
	MIG_REC_ZERO = 4,
	MIG_REC_ROUND = 5,
	MIG_REC_STATE = 6,
	MIG_REC_END = 7,
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

/* Writes one sentence into err (if any) and returns rc. */
int mig_fail(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

uint32_t mig_crc(uint32_t crc, const void *p, size_t len);
/* The record header for a payload of len bytes whose CRC32 is crc. */
struct mig_rec_hdr mig_rec_hdr_make(uint32_t type, uint32_t len, uint32_t crc);
/* The record's name in messages ("memory record"). */
const char *mig_rec_name(uint32_t type);

/* All of len bytes, through partial writes and EINTR; no SIGPIPE. 0 or -errno. */
int mig_write_full(int fd, const void *p, size_t len);
/* All of len bytes, through partial reads and EINTR. The bytes read, fewer at end of stream; -errno. */
ssize_t mig_read_full(int fd, void *p, size_t len);

#endif
