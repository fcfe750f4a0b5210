/*
 * The snapshot state file container: what is written reads back, and every kind of damage or
 * foreign input is refused with a message that says what is wrong.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "state/snapshot_format.h"

static const struct snap_cpu intel = {
	.vendor = "GenuineIntel",
	.signature = 0x906ea,
	.features = { [SNAP_F_1_ECX] = 0x1 | 0x200, [SNAP_F_1_EDX] = 0x178bfbff, [SNAP_F_7_EBX] = 0x20 },
};

/* A file with three sections, one of them empty. */
static void build(uint8_t **buf, size_t *len)
{
	struct snap_writer w;
	snap_writer_init(&w);
	assert_int_equal(snap_writer_add(&w, "config", "{\"cpus\":2}", 10), 0);
	uint8_t regs[300];
	for (size_t i = 0; i < sizeof(regs); i++)
		regs[i] = (uint8_t)(i * 7);
	assert_int_equal(snap_writer_add(&w, "vcpu.0.regs", regs, sizeof(regs)), 0);
	assert_int_equal(snap_writer_add(&w, "dev.pio.empty@60", NULL, 0), 0);
	assert_int_equal(snap_writer_build(&w, 0x1122334455667788ULL, &intel, buf, len), 0);
	snap_writer_free(&w);
}

static void round_trip(void **state)
{
	(void)state;
	uint8_t *buf;
	size_t len;
	build(&buf, &len);
	struct snap_file f;
	char err[256] = "";
	assert_int_equal(snap_file_parse(&f, buf, len, err, sizeof(err)), 0);
	assert_int_equal(f.hdr.version, SNAP_VERSION);
	assert_int_equal(f.hdr.nsections, 3);
	assert_true(f.hdr.snapshot_id == 0x1122334455667788ULL);
	assert_string_equal(f.cpu.vendor, "GenuineIntel");
	assert_int_equal(f.cpu.signature, 0x906ea);
	assert_memory_equal(f.cpu.features, intel.features, sizeof(intel.features));

	size_t l = 0;
	const uint8_t *regs = snap_file_section(&f, "vcpu.0.regs", &l);
	assert_non_null(regs);
	assert_int_equal(l, 300);
	for (size_t i = 0; i < l; i++)
		assert_int_equal(regs[i], (uint8_t)(i * 7));
	const char *cfg = snap_file_section(&f, "config", &l);
	assert_int_equal(l, 10);
	assert_memory_equal(cfg, "{\"cpus\":2}", 10);
	assert_non_null(snap_file_section(&f, "dev.pio.empty@60", &l));
	assert_int_equal(l, 0);
	assert_null(snap_file_section(&f, "vcpu.1.regs", &l));

	const char *name;
	unsigned int n = 0;
	while ((name = snap_file_section_name(&f, n, NULL, NULL)))
		n++;
	assert_int_equal(n, 3);
	free(buf);
}

static void writer_refuses_bad_names(void **state)
{
	(void)state;
	struct snap_writer w;
	snap_writer_init(&w);
	assert_int_equal(snap_writer_add(&w, "", "x", 1), -EINVAL);
	assert_int_equal(snap_writer_add(&w, "has space", "x", 1), -EINVAL);
	char longname[SNAP_NAME_MAX + 1];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[SNAP_NAME_MAX] = 0;
	assert_int_equal(snap_writer_add(&w, longname, "x", 1), -EINVAL);
	assert_int_equal(snap_writer_add(&w, "a", "x", 1), 0);
	assert_int_equal(snap_writer_add(&w, "a", "y", 1), -EINVAL); /* duplicate */
	snap_writer_free(&w);
}

/* Parses a damaged copy; returns the error and leaves the message in err. */
static int parse_copy(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	uint8_t *copy = malloc(len ? len : 1);
	memcpy(copy, buf, len);
	struct snap_file f;
	int rc = snap_file_parse(&f, copy, len, err, errlen);
	free(copy);
	return rc;
}

static void bad_magic(void **state)
{
	(void)state;
	uint8_t *buf;
	size_t len;
	build(&buf, &len);
	buf[0] = 'X';
	char err[256];
	assert_int_equal(parse_copy(buf, len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a vmon snapshot"));
	/* A kernel image or an empty file: same answer, no crash. */
	assert_int_equal(parse_copy((const uint8_t *)"\x7f" "ELF", 4, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a vmon snapshot"));
	assert_int_equal(parse_copy(buf, 0, err, sizeof(err)), -EINVAL);
	free(buf);
}

static void other_version(void **state)
{
	(void)state;
	uint8_t *buf;
	size_t len;
	build(&buf, &len);
	uint32_t v = SNAP_VERSION + 1;
	memcpy(buf + 8, &v, sizeof(v));
	char err[256];
	assert_int_equal(parse_copy(buf, len, err, sizeof(err)), -EPROTO);
	assert_non_null(strstr(err, "format version 2"));
	assert_non_null(strstr(err, "reads version 1"));
	free(buf);
}

static void truncated(void **state)
{
	(void)state;
	uint8_t *buf;
	size_t len;
	build(&buf, &len);
	char err[256];
	/* Cut anywhere: inside the magic, the header, the table, the last section. */
	size_t cuts[] = { 5, 60, sizeof(struct snap_header) + 10, len - 1 };
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		assert_int_equal(parse_copy(buf, cuts[i], err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "truncated"));
	}
	/* Bytes appended are damage too. */
	uint8_t *longer = calloc(1, len + 16);
	memcpy(longer, buf, len);
	assert_int_equal(parse_copy(longer, len + 16, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "damaged"));
	free(longer);
	free(buf);
}

static void flipped_bytes(void **state)
{
	(void)state;
	uint8_t *buf;
	size_t len;
	build(&buf, &len);
	struct snap_file f;
	char err[256];
	assert_int_equal(snap_file_parse(&f, buf, len, err, sizeof(err)), 0);
	size_t l;
	const uint8_t *regs = snap_file_section(&f, "vcpu.0.regs", &l);
	size_t regs_off = (size_t)(regs - buf);

	/* A byte of a section: the message names the section. */
	buf[regs_off + 100] ^= 0x01;
	assert_int_equal(parse_copy(buf, len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "vcpu.0.regs"));
	assert_non_null(strstr(err, "corrupted"));
	buf[regs_off + 100] ^= 0x01;

	/* A byte of the header (the snapshot id) and of the section table. */
	buf[34] ^= 0x80;
	assert_int_equal(parse_copy(buf, len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "header is corrupted"));
	buf[34] ^= 0x80;
	buf[sizeof(struct snap_header) + 3] ^= 0x10;
	assert_int_equal(parse_copy(buf, len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "section table is corrupted"));
	buf[sizeof(struct snap_header) + 3] ^= 0x10;

	/* Padding between sections belongs to no section: the whole-file checksum catches it. */
	const uint8_t *cfg = snap_file_section(&f, "config", &l);
	size_t pad = (size_t)(cfg - buf) + l; /* 10 bytes of config, padded to 16 */
	buf[pad] ^= 0xff;
	assert_int_equal(parse_copy(buf, len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "whole-file checksum"));
	buf[pad] ^= 0xff;

	assert_int_equal(parse_copy(buf, len, err, sizeof(err)), 0);
	free(buf);
}

/* Every single-bit flip anywhere in the file is detected (CRC32 catches all of them). */
static void every_bit_flip_is_caught(void **state)
{
	(void)state;
	uint8_t *buf;
	size_t len;
	build(&buf, &len);
	char err[256];
	for (size_t i = 0; i < len; i++) {
		for (int b = 0; b < 8; b += 3) {
			buf[i] ^= (uint8_t)(1u << b);
			assert_int_not_equal(parse_copy(buf, len, err, sizeof(err)), 0);
			buf[i] ^= (uint8_t)(1u << b);
		}
	}
	free(buf);
}

/* A section whose table entry points outside the file, with checksums made consistent. */
/* Makes the table, body and header checksums valid again after an edit of the section table. */
static void reseal(uint8_t *buf, size_t len)
{
	struct snap_header h;
	memcpy(&h, buf, sizeof(h));
	const uint8_t *table = buf + sizeof(h);
	h.table_crc = (uint32_t)crc32(0, table, (unsigned int)(h.nsections * sizeof(struct snap_section_entry)));
	h.body_crc = (uint32_t)crc32(0, buf + sizeof(h), (unsigned int)(len - sizeof(h)));
	h.header_crc = 0;
	h.header_crc = (uint32_t)crc32(0, (const unsigned char *)&h, sizeof(h));
	memcpy(buf, &h, sizeof(h));
}

static void section_outside_file(void **state)
{
	(void)state;
	uint8_t *buf;
	size_t len;
	build(&buf, &len);
	struct snap_section_entry *e = (struct snap_section_entry *)(buf + sizeof(struct snap_header));
	e[1].length = 1ULL << 40;
	reseal(buf, len);
	char err[256];
	assert_int_equal(parse_copy(buf, len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "outside the file"));
	free(buf);
}

/* A table entry renamed the way a hostile writer would, checksums made valid again. */
static int parse_renamed(int index, const char *name, char *err, size_t errlen)
{
	uint8_t *buf;
	size_t len;
	build(&buf, &len);
	struct snap_section_entry *e = (struct snap_section_entry *)(buf + sizeof(struct snap_header));
	memset(e[index].name, 0, sizeof(e[index].name));
	memcpy(e[index].name, name, strlen(name));
	reseal(buf, len);
	int rc = parse_copy(buf, len, err, errlen);
	free(buf);
	return rc;
}

static void duplicate_section_refused(void **state)
{
	(void)state;
	char err[256];
	assert_int_equal(parse_renamed(2, "vcpu.0.regs", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "two sections called 'vcpu.0.regs'"));
}

static void section_name_with_control_characters_refused(void **state)
{
	(void)state;
	char err[256];
	assert_int_equal(parse_renamed(1, "vcpu\033[2J", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "section 1 of the snapshot has a name"));
	assert_null(strchr(err, '\033'));
	assert_int_equal(parse_renamed(1, "", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "empty"));
}


static void cpu_vendor_must_match(void **state)
{
	(void)state;
	struct snap_cpu amd = intel;
	memcpy(amd.vendor, "AuthenticAMD", 12);
	char err[256];
	assert_int_equal(snap_cpu_check(&intel, &intel, err, sizeof(err)), 0);
	assert_int_equal(snap_cpu_check(&intel, &amd, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "GenuineIntel"));
	assert_non_null(strstr(err, "AuthenticAMD"));
	assert_non_null(strstr(err, "same CPU vendor"));
}

static void cpu_features_must_be_present(void **state)
{
	(void)state;
	struct snap_cpu older = intel, newer = intel;
	older.features[SNAP_F_7_EBX] &= ~0x20u; /* no AVX2 */
	newer.features[SNAP_F_7_ECX] |= 0x4000u;
	char err[256];
	/* A host with more features takes the snapshot; one with fewer does not, and says which. */
	assert_int_equal(snap_cpu_check(&intel, &newer, err, sizeof(err)), 0);
	assert_int_equal(snap_cpu_check(&intel, &older, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "lacks features"));
	assert_non_null(strstr(err, "CPUID.7.0:EBX bit 5"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip),
		cmocka_unit_test(writer_refuses_bad_names),
		cmocka_unit_test(bad_magic),
		cmocka_unit_test(other_version),
		cmocka_unit_test(truncated),
		cmocka_unit_test(flipped_bytes),
		cmocka_unit_test(every_bit_flip_is_caught),
		cmocka_unit_test(section_outside_file),
		cmocka_unit_test(duplicate_section_refused),
		cmocka_unit_test(section_name_with_control_characters_refused),
		cmocka_unit_test(cpu_vendor_must_match),
		cmocka_unit_test(cpu_features_must_be_present),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
