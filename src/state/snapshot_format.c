#include "state/snapshot_format.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "lib/util.h"

_Static_assert(sizeof(struct snap_header) == 128, "the on-disk header is 128 bytes");
_Static_assert(sizeof(struct snap_section_entry) == 64, "an on-disk section entry is 64 bytes");

static uint32_t crc(const void *p, size_t len)
{
	uLong c = crc32(0L, Z_NULL, 0);
	const uint8_t *b = p;
	/* zlib takes uInt lengths; feed big buffers in pieces. */
	while (len > 0) {
		uInt n = (uInt)MIN(len, (size_t)1 << 30);
		c = crc32(c, b, n);
		b += n;
		len -= n;
	}
	return (uint32_t)c;
}

/* ---- writing ---- */

void snap_writer_init(struct snap_writer *w) { memset(w, 0, sizeof(*w)); }

void snap_writer_free(struct snap_writer *w)
{
	for (unsigned int i = 0; i < w->n; i++)
		free(w->s[i].data);
	free(w->s);
	memset(w, 0, sizeof(*w));
}

static bool valid_name(const char *name)
{
	size_t n = strnlen(name, SNAP_NAME_MAX);
	if (n == 0 || n >= SNAP_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (name[i] < 0x21 || name[i] > 0x7e)
			return false;
	return true;
}

int snap_writer_add(struct snap_writer *w, const char *name, const void *data, size_t len)
{
	if (!valid_name(name) || w->n >= SNAP_MAX_SECTIONS)
		return -EINVAL;
	for (unsigned int i = 0; i < w->n; i++)
		if (!strcmp(w->s[i].name, name))
			return -EINVAL;
	if (w->n == w->cap) {
		unsigned int cap = w->cap ? w->cap * 2 : 16;
		void *s = realloc(w->s, cap * sizeof(*w->s));
		if (!s)
			return -ENOMEM;
		w->s = s;
		w->cap = cap;
	}
	struct snap_writer_section *s = &w->s[w->n];
	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->data = malloc(len ? len : 1);
	if (!s->data)
		return -ENOMEM;
	if (len)
		memcpy(s->data, data, len);
	s->len = len;
	w->n++;
	return 0;
}

int snap_writer_build(const struct snap_writer *w, uint64_t snapshot_id, const struct snap_cpu *cpu,
		      uint8_t **out, size_t *outlen)
{
	size_t table_len = (size_t)w->n * sizeof(struct snap_section_entry);
	size_t total = sizeof(struct snap_header) + table_len;
	for (unsigned int i = 0; i < w->n; i++)
		total += ALIGN_UP(w->s[i].len, 8);
	uint8_t *buf = calloc(1, total);
	if (!buf)
		return -ENOMEM;

	struct snap_section_entry *table = (struct snap_section_entry *)(buf + sizeof(struct snap_header));
	size_t off = sizeof(struct snap_header) + table_len;
	for (unsigned int i = 0; i < w->n; i++) {
		struct snap_section_entry *e = &table[i];
		memcpy(e->name, w->s[i].name, sizeof(e->name));
		e->offset = off;
		e->length = w->s[i].len;
		memcpy(buf + off, w->s[i].data, w->s[i].len);
		e->crc = crc(buf + off, w->s[i].len);
		off += ALIGN_UP(w->s[i].len, 8);
	}

	struct snap_header h;
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, SNAP_MAGIC, sizeof(h.magic));
	h.version = SNAP_VERSION;
	h.header_size = sizeof(h);
	h.file_size = total;
	h.nsections = w->n;
	h.snapshot_id = snapshot_id;
	if (cpu) {
		memcpy(h.cpu_vendor, cpu->vendor, sizeof(h.cpu_vendor));
		h.cpu_signature = cpu->signature;
		memcpy(h.cpu_features, cpu->features, sizeof(h.cpu_features));
	}
	h.table_crc = crc(table, table_len);
	h.body_crc = crc(buf + sizeof(h), total - sizeof(h));
	h.header_crc = crc(&h, sizeof(h));
	memcpy(buf, &h, sizeof(h));
	*out = buf;
	*outlen = total;
	return 0;
}

/* ---- reading ---- */

int snap_file_parse(struct snap_file *f, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	memset(f, 0, sizeof(*f));
	struct snap_header h;
	if (len == 0)
		return err_fail(err, errlen, -EINVAL, "the snapshot state file is empty");
	if (len < 8 && memcmp(buf, SNAP_MAGIC, len) == 0)
		return err_fail(err, errlen, -EINVAL, "the snapshot is truncated: only %zu bytes, not even a whole header", len);
	if (len < 8 || memcmp(buf, SNAP_MAGIC, 8) != 0)
		return err_fail(err, errlen, -EINVAL, "this is not a vmon snapshot (no VMONSNAP signature at its start)");
	if (len < 16)
		return err_fail(err, errlen, -EINVAL, "the snapshot is truncated: only %zu bytes, not even a whole header", len);
	uint32_t version;
	memcpy(&version, buf + 8, sizeof(version));
	if (version != SNAP_VERSION)
		return err_fail(err, errlen, -EPROTO,
			    "the snapshot has format version %u; this vmon reads version %u only: restore it with the "
			    "vmon release that wrote it",
			    version, SNAP_VERSION);
	if (len < sizeof(h))
		return err_fail(err, errlen, -EINVAL, "the snapshot is truncated: only %zu bytes, not even a whole header", len);
	memcpy(&h, buf, sizeof(h));
	uint32_t want_crc = h.header_crc;
	h.header_crc = 0;
	if (crc(&h, sizeof(h)) != want_crc)
		return err_fail(err, errlen, -EINVAL, "the snapshot's header is corrupted (checksum mismatch)");
	h.header_crc = want_crc;
	if (h.header_size != sizeof(h))
		return err_fail(err, errlen, -EINVAL, "the snapshot's header has an unexpected size (%u bytes)", h.header_size);
	if (h.file_size != len)
		return err_fail(err, errlen, -EINVAL,
			    h.file_size > len ? "the snapshot is truncated: %zu of its %llu bytes are there"
					      : "the snapshot has %zu bytes where its header says %llu: it was damaged",
			    len, (unsigned long long)h.file_size);
	if (h.nsections > SNAP_MAX_SECTIONS ||
	    (uint64_t)h.nsections * sizeof(struct snap_section_entry) > len - sizeof(h))
		return err_fail(err, errlen, -EINVAL, "the snapshot's section table (%u sections) does not fit in the file",
			    h.nsections);
	const struct snap_section_entry *table = (const struct snap_section_entry *)(buf + sizeof(h));
	size_t table_len = (size_t)h.nsections * sizeof(*table);
	if (crc(table, table_len) != h.table_crc)
		return err_fail(err, errlen, -EINVAL, "the snapshot's section table is corrupted (checksum mismatch)");
	uint64_t data_start = sizeof(h) + table_len;
	for (uint32_t i = 0; i < h.nsections; i++) {
		const struct snap_section_entry *e = &table[i];
		if (strnlen(e->name, SNAP_NAME_MAX) == SNAP_NAME_MAX)
			return err_fail(err, errlen, -EINVAL, "section %u of the snapshot has an unterminated name", i);
		/* The name goes into messages: say where it is wrong without printing what is in it. */
		if (!valid_name(e->name))
			return err_fail(err, errlen, -EINVAL,
				    "section %u of the snapshot has a name that is empty or holds characters other than "
				    "printable ASCII: the file was not written by vmon",
				    i);
		for (uint32_t j = 0; j < i; j++)
			if (!strcmp(table[j].name, e->name))
				return err_fail(err, errlen, -EINVAL,
					    "the snapshot has two sections called '%s': the file was not written by vmon",
					    e->name);
		if (e->offset < data_start || e->offset > len || e->length > len - e->offset)
			return err_fail(err, errlen, -EINVAL, "section '%s' of the snapshot lies outside the file", e->name);
		if (crc(buf + e->offset, (size_t)e->length) != e->crc)
			return err_fail(err, errlen, -EINVAL, "section '%s' of the snapshot is corrupted (checksum mismatch)",
				    e->name);
	}
	if (crc(buf + sizeof(h), len - sizeof(h)) != h.body_crc)
		return err_fail(err, errlen, -EINVAL, "the snapshot is corrupted (whole-file checksum mismatch)");

	f->buf = NULL;
	f->len = len;
	f->hdr = h;
	f->table = table;
	memset(&f->cpu, 0, sizeof(f->cpu));
	memcpy(f->cpu.vendor, h.cpu_vendor, sizeof(h.cpu_vendor));
	f->cpu.signature = h.cpu_signature;
	memcpy(f->cpu.features, h.cpu_features, sizeof(f->cpu.features));
	return 0;
}

/* A state file holds tens of KiB per vCPU (no guest RAM): 254 vCPUs and every device fit many times over. */
#define SNAP_STATE_FILE_MAX (64 * 1024 * 1024)

int snap_file_read(struct snap_file *f, const char *path, char *err, size_t errlen)
{
	memset(f, 0, sizeof(*f));
	uint8_t *buf;
	size_t len;
	int rc = read_file(path, SNAP_STATE_FILE_MAX, &buf, &len);
	if (rc == -EFBIG)
		return err_fail(err, errlen, rc, "%s is larger than %d MiB, which no vmon state file is: this is not a vmon "
			    "snapshot", path, SNAP_STATE_FILE_MAX >> 20);
	if (rc)
		return err_fail(err, errlen, rc, "cannot read %s: %s", path, strerror(-rc));
	rc = snap_file_parse(f, buf, len, err, errlen);
	if (rc) {
		free(buf);
		memset(f, 0, sizeof(*f));
		return rc;
	}
	f->buf = buf;
	return 0;
}

void snap_file_free(struct snap_file *f)
{
	free(f->buf);
	memset(f, 0, sizeof(*f));
}

const char *snap_file_section_name(const struct snap_file *f, unsigned int i, const void **data, size_t *len)
{
	if (!f->table || i >= f->hdr.nsections)
		return NULL;
	const struct snap_section_entry *e = &f->table[i];
	const uint8_t *base = (const uint8_t *)f->table - sizeof(struct snap_header);
	if (data)
		*data = base + e->offset;
	if (len)
		*len = (size_t)e->length;
	return e->name;
}

const void *snap_file_section(const struct snap_file *f, const char *name, size_t *len)
{
	const void *data;
	size_t l;
	const char *n;
	for (unsigned int i = 0; (n = snap_file_section_name(f, i, &data, &l)); i++) {
		if (!strcmp(n, name)) {
			if (len)
				*len = l;
			return data;
		}
	}
	return NULL;
}

/* ---- CPU compatibility ---- */

static const char *const word_names[SNAP_F_WORDS] = {
	[SNAP_F_1_ECX] = "CPUID.1:ECX",
	[SNAP_F_1_EDX] = "CPUID.1:EDX",
	[SNAP_F_7_EBX] = "CPUID.7.0:EBX",
	[SNAP_F_7_ECX] = "CPUID.7.0:ECX",
	[SNAP_F_7_EDX] = "CPUID.7.0:EDX",
	[SNAP_F_80000001_ECX] = "CPUID.80000001h:ECX",
	[SNAP_F_80000001_EDX] = "CPUID.80000001h:EDX",
	[SNAP_F_D_1_EAX] = "CPUID.0Dh.1:EAX",
};

int snap_cpu_check(const struct snap_cpu *saved, const struct snap_cpu *host, char *err, size_t errlen)
{
	if (strncmp(saved->vendor, host->vendor, 12) != 0)
		return err_fail(err, errlen, -ENOTSUP,
			    "the snapshot was taken on a %.12s CPU and this host has a %.12s CPU: restore it on a host "
			    "with the same CPU vendor",
			    saved->vendor[0] ? saved->vendor : "(unknown)", host->vendor[0] ? host->vendor : "(unknown)");
	char list[512];
	size_t pos = 0;
	list[0] = 0;
	for (int w = 0; w < SNAP_F_WORDS; w++) {
		uint32_t missing = saved->features[w] & ~host->features[w];
		for (int b = 0; b < 32 && missing; b++) {
			if (!(missing & (1u << b)))
				continue;
			missing &= ~(1u << b);
			if (pos < sizeof(list))
				pos += (size_t)snprintf(list + pos, sizeof(list) - pos, "%s%s bit %d", pos ? ", " : "",
							word_names[w], b);
		}
	}
	if (pos)
		return err_fail(err, errlen, -ENOTSUP,
			    "this host's CPU lacks features the snapshot's guest was using (%s): restore it on a host "
			    "with the same or a newer CPU",
			    list);
	return 0;
}
