/*
 * The snapshot state file (DIR/state): a fixed header, a table of named sections, and the
 * sections' bytes, each section with its own CRC32 and the whole body with another. The layout
 * is documented in docs/snapshot-format.md; this module only builds and checks the container,
 * it knows nothing of what the sections mean.
 *
 * Every check of a file read from disk produces one sentence saying what is wrong with it, so a
 * truncated, corrupted or foreign file is refused with a clear message, never half-loaded.
 */
#ifndef VMON_STATE_SNAPSHOT_FORMAT_H
#define VMON_STATE_SNAPSHOT_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAP_MAGIC "VMONSNAP"
#define SNAP_VERSION 1u
#define SNAP_NAME_MAX 40 /* section names, NUL included */
#define SNAP_MAX_SECTIONS 4096

/* The CPU feature words recorded in the header, in this order. */
enum snap_feature_word {
	SNAP_F_1_ECX = 0,
	SNAP_F_1_EDX,
	SNAP_F_7_EBX,
	SNAP_F_7_ECX,
	SNAP_F_7_EDX,
	SNAP_F_80000001_ECX,
	SNAP_F_80000001_EDX,
	SNAP_F_D_1_EAX, /* XSAVEOPT, XSAVEC, XGETBV1, XSAVES */
	SNAP_F_WORDS
};

/* What the guest's CPU looked like: the vendor and the features the guest could use. */
struct snap_cpu {
	char vendor[13];   /* "GenuineIntel", "AuthenticAMD", NUL-terminated */
	uint32_t signature; /* CPUID.1:EAX (family, model, stepping), informational */
	uint32_t features[SNAP_F_WORDS];
};

/* The file's header, as laid out on disk (little-endian, x86 only). */
struct snap_header {
	char magic[8];
	uint32_t version;
	uint32_t header_size;
	uint64_t file_size;
	uint32_t nsections;
	uint32_t flags;
	uint64_t snapshot_id; /* also in the memory file's header: the two files belong together */
	char cpu_vendor[12];
	uint32_t cpu_signature;
	uint32_t cpu_features[SNAP_F_WORDS];
	uint32_t table_crc;  /* CRC32 of the section table */
	uint32_t body_crc;   /* CRC32 of everything after the header */
	uint32_t header_crc; /* CRC32 of this header with header_crc set to 0 */
	uint8_t reserved[28];
};

struct snap_section_entry {
	char name[SNAP_NAME_MAX];
	uint64_t offset; /* from the start of the file */
	uint64_t length;
	uint32_t crc;
	uint32_t reserved;
};

/* ---- writing ---- */

struct snap_writer_section {
	char name[SNAP_NAME_MAX];
	uint8_t *data;
	size_t len;
};

struct snap_writer {
	struct snap_writer_section *s;
	unsigned int n, cap;
};

void snap_writer_init(struct snap_writer *w);
void snap_writer_free(struct snap_writer *w);
/* Copies data into a new section. -EINVAL for a bad or duplicate name, -ENOMEM. */
int snap_writer_add(struct snap_writer *w, const char *name, const void *data, size_t len);
/* The whole file in a malloc'ed buffer. */
int snap_writer_build(const struct snap_writer *w, uint64_t snapshot_id, const struct snap_cpu *cpu,
		      uint8_t **out, size_t *outlen);

/* ---- reading ---- */

struct snap_file {
	uint8_t *buf; /* owned when read with snap_file_read */
	size_t len;
	struct snap_header hdr;
	const struct snap_section_entry *table; /* points into buf */
	struct snap_cpu cpu;
};

/*
 * Checks a whole file held in buf (not copied; buf must outlive f): magic, version, header
 * checksum, size, section table, every section's checksum, the body checksum. On error writes
 * one sentence into err and returns -EINVAL (-EPROTO for a version this vmon does not read).
 */
int snap_file_parse(struct snap_file *f, const uint8_t *buf, size_t len, char *err, size_t errlen);
/* Reads path and parses it; -errno if it cannot be read (message in err). */
int snap_file_read(struct snap_file *f, const char *path, char *err, size_t errlen);
void snap_file_free(struct snap_file *f);

/* The section called name, or NULL (len untouched). */
const void *snap_file_section(const struct snap_file *f, const char *name, size_t *len);
/* The i-th section's name, for iterating; NULL past the end. */
const char *snap_file_section_name(const struct snap_file *f, unsigned int i, const void **data, size_t *len);

/*
 * Can a guest that ran on the CPU `saved` continue on `host`? Same vendor, and every feature
 * the guest could use present on the host. 0, or -ENOTSUP with the reason in err.
 */
int snap_cpu_check(const struct snap_cpu *saved, const struct snap_cpu *host, char *err, size_t errlen);

#endif
