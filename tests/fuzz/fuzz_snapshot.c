/*
 * libFuzzer target: the snapshot file parser (src/state/snapshot_format.c). Input byte 0 picks
 * how the rest is used: even, the raw file; odd, sections (a name byte count, a name, a
 * 2-byte length, the data) that the writer builds into a well-formed file first, so that the
 * checksums hold and the fuzzer reaches what lies behind them. The parse must find every
 * section it was given, byte for byte.
 * Build and run: make fuzz && build/fuzz/fuzz_snapshot tests/fuzz/corpus_snapshot
 */
#include <string.h>

#include "fuzz_common.h"
#include "lib/log.h"
#include "state/snapshot_format.h"

static void parse_and_walk(const uint8_t *buf, size_t len)
{
	struct snap_file f;
	char err[256];
	if (snap_file_parse(&f, buf, len, err, sizeof(err)) != 0)
		return;
	for (unsigned int i = 0; i < f.hdr.nsections; i++) {
		const void *d;
		size_t n;
		const char *name = snap_file_section_name(&f, i, &d, &n);
		if (!name)
			continue;
		fuzz_check(strlen(name) < SNAP_NAME_MAX, "section name");
		fuzz_check(d == NULL || ((const uint8_t *)d >= buf && (const uint8_t *)d + n <= buf + len), "section bounds");
	}
	struct snap_cpu host = f.cpu;
	(void)snap_cpu_check(&f.cpu, &host, err, sizeof(err));
	snap_file_free(&f);
}

static void build_and_parse(const uint8_t *data, size_t size)
{
	struct snap_writer w;
	snap_writer_init(&w);
	while (size >= 1) {
		size_t nl = data[0] % SNAP_NAME_MAX;
		if (size < 1 + nl + 2)
			break;
		char name[SNAP_NAME_MAX];
		memcpy(name, data + 1, nl);
		name[nl] = 0;
		size_t len = (size_t)(data[1 + nl] | data[2 + nl] << 8);
		data += 3 + nl;
		size -= 3 + nl;
		if (len > size)
			len = size;
		(void)snap_writer_add(&w, name, data, len);
		data += len;
		size -= len;
	}
	struct snap_cpu cpu = { .vendor = "GenuineIntel", .signature = 0x906ea };
	uint8_t *file;
	size_t flen;
	if (snap_writer_build(&w, 42, &cpu, &file, &flen) == 0) {
		struct snap_file f;
		char err[256];
		fuzz_check(snap_file_parse(&f, file, flen, err, sizeof(err)) == 0, "the writer's own file does not parse");
		for (unsigned int i = 0; i < w.n; i++) {
			size_t n;
			const void *d = snap_file_section(&f, w.s[i].name, &n);
			fuzz_check(d != NULL, "a written section is missing");
			fuzz_check(n == w.s[i].len && (n == 0 || !memcmp(d, w.s[i].data, n)), "section data differs");
		}
		snap_file_free(&f);
		parse_and_walk(file, flen);
		free(file);
	}
	snap_writer_free(&w);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	log_set_level(LOG_ERROR);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 1) {
		build_and_parse(data + 1, size - 1);
	} else {
		/* A copy of exactly the file's size, so a read past its end is caught. */
		uint8_t *buf = malloc(size - 1 ? size - 1 : 1);
		fuzz_check(buf != NULL, "malloc");
		memcpy(buf, data + 1, size - 1);
		parse_and_walk(buf, size - 1);
		free(buf);
	}
	return 0;
}
