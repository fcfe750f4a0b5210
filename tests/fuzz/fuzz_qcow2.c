/*
 * libFuzzer target: a qcow2 image from the input, opened (header, extensions, tables checked),
 * then read, written, zeroed and discarded at offsets derived from the input, on a memfd.
 * Backing files are refused (no_backing), so no other file is ever opened.
 * Property: no crash, hang or sanitizer report. (A write need not read back: a damaged image may
 * have a table and data share a cluster.)
 * Build and run: make fuzz && build/fuzz/fuzz_qcow2 tests/fuzz/corpus_qcow2
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backends/qcow2.h"
#include "fuzz_common.h"
#include "lib/log.h"

#define MAX_IO 8192

static uint8_t wbuf[MAX_IO], rbuf[MAX_IO];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	log_set_level(LOG_ERROR); /* refusals are the expected outcome of most inputs */
	return 0;
}

static uint64_t next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz-qcow2", MFD_CLOEXEC);
	fuzz_check(fd >= 0, "memfd_create");
	fuzz_check(write(fd, data, size) == (ssize_t)size, "writing the image");
	struct qcow2_options opt = { .no_backing = true };
	struct qcow2 *q;
	if (qcow2_open(fd, "fuzz.qcow2", size, &opt, &q))
		return 0; /* closed the fd */
	uint64_t vsize = qcow2_size(q), seed = 0x9e3779b97f4a7c15ULL ^ size;
	for (size_t i = 0; i < size && i < 64; i++)
		seed = seed * 31 + data[size - 1 - i];
	if (!seed)
		seed = 1;
	for (int op = 0; op < 24 && vsize; op++) {
		uint64_t len = 1 + next(&seed) % MAX_IO, off = next(&seed) % vsize;
		if (len > vsize - off)
			len = vsize - off;
		switch (next(&seed) % 5) {
		case 0:
		case 1:
			qcow2_read(q, off, rbuf, len);
			break;
		case 2:
			memset(wbuf, (int)(next(&seed) | 1), len);
			if (qcow2_write(q, off, wbuf, len) == 0)
				qcow2_read(q, off, rbuf, len);
			break;
		case 3:
			qcow2_write_zeroes(q, off, len);
			break;
		default:
			qcow2_discard(q, off, len);
			break;
		}
	}
	qcow2_flush(q);
	qcow2_close(q);
	return 0;
}
