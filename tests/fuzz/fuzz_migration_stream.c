/*
 * libFuzzer target: the migration stream reader (src/migration/stream_reader.c), which takes bytes
 * from another host. Input byte 0 picks how the rest is used: even, the raw stream, read into
 * guest RAM of the size its configuration record asks for (up to 4 MiB); odd, operations for
 * the writer (send pages, close a round, send a state, end) whose stream the reader must then
 * accept record for record, and whose pages must arrive as they were sent.
 * Build and run: make fuzz && build/fuzz/fuzz_migration_stream tests/fuzz/corpus_migration_stream
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "lib/log.h"
#include "lib/util.h"
#include "migration/stream.h"

#define RAW_RAM_MAX (4 * MiB)
#define OPS_RAM (256 * KiB)
#define OPS_PAGES (OPS_RAM / MIG_PAGE_SIZE)

static int stream_fd(void)
{
	int fd = memfd_create("fuzz-migration", MFD_CLOEXEC);
	fuzz_check(fd >= 0, "memfd_create");
	return fd;
}

/* Reads the whole stream in fd; the number of records after the configuration that passed. */
static unsigned int receive(int fd, struct guest_mem *dst, bool must_pass)
{
	char err[512];
	struct mig_reader r;
	unsigned int records = 0;
	fuzz_check(lseek(fd, 0, SEEK_SET) == 0, "lseek");
	int rc = mig_reader_open(&r, fd, err, sizeof(err));
	fuzz_check(!must_pass || rc == 0, "the reader refused the writer's header");
	struct guest_mem raw;
	bool own = false;
	if (!rc && !dst) {
		if (r.cfg.ram_size > RAW_RAM_MAX || guest_mem_init(&raw, r.cfg.ram_size) != 0) {
			mig_reader_free(&r);
			return 0;
		}
		dst = &raw;
		own = true;
	}
	if (!rc)
		rc = mig_reader_set_memory(&r, dst, err, sizeof(err));
	struct mig_event ev = { .kind = MIG_EV_PAGES };
	while (!rc && ev.kind != MIG_EV_END) {
		rc = mig_reader_next(&r, &ev, err, sizeof(err));
		if (rc) {
			fuzz_check(!must_pass, "the reader refused a record the writer wrote");
			fuzz_check(strncmp(err, "migration stream: ", 18) == 0, "an error without its prefix");
			break;
		}
		records++;
		if (ev.kind == MIG_EV_STATE)
			snap_file_free(&ev.state);
		if (ev.kind == MIG_EV_PAGES || ev.kind == MIG_EV_ZERO)
			fuzz_check(gpa_to_host(dst, ev.gpa, ev.count * MIG_PAGE_SIZE) != NULL, "pages outside RAM");
	}
	/* After the end, or after a refusal, the reader goes no further. */
	if (rc)
		fuzz_check(mig_reader_next(&r, &ev, err, sizeof(err)) != 0, "the reader went on after a refusal");
	mig_reader_free(&r);
	if (own)
		guest_mem_destroy(&raw);
	return records;
}

static void raw_stream(const uint8_t *data, size_t size)
{
	int fd = stream_fd();
	fuzz_check(write(fd, data, size) == (ssize_t)size, "write");
	(void)receive(fd, NULL, false);
	close(fd);
}

static const struct mig_config ops_config = {
	.ram_size = OPS_RAM,
	.cpus = 1,
	.cpu = { .vendor = "AuthenticAMD" },
};

/* Each operation: one byte picks it, the next bytes are its arguments. */
static void writer_ops(const uint8_t *data, size_t size)
{
	struct guest_mem src, dst;
	fuzz_check(guest_mem_init(&src, OPS_RAM) == 0 && guest_mem_init(&dst, OPS_RAM) == 0, "guest_mem_init");
	int fd = stream_fd();
	char err[512];
	struct mig_writer w;
	fuzz_check(mig_writer_start(&w, fd, "fuzz", &ops_config, err, sizeof(err)) == 0, "mig_writer_start");
	unsigned int records = 0;
	uint64_t sent_at = w.offset;
	uint8_t *sent = calloc(1, OPS_RAM); /* the source's pages as they were when last sent */
	fuzz_check(sent != NULL, "calloc");
	for (size_t i = 0; i + 3 <= size; i += 3) {
		uint8_t op = data[i] % 5, a = data[i + 1] % OPS_PAGES, b = data[i + 2];
		int rc = 0;
		if (op == 0) { /* change a page of the source: it gets a + b everywhere */
			memset(gpa_to_host_write(&src, (uint64_t)a * MIG_PAGE_SIZE, MIG_PAGE_SIZE), (uint8_t)(a + b), MIG_PAGE_SIZE);
			continue;
		} else if (op == 1) {
			uint64_t count = MIN((uint64_t)b + 1, OPS_PAGES - a);
			uint64_t gpa = (uint64_t)a * MIG_PAGE_SIZE;
			rc = mig_writer_pages(&w, &src, gpa, count, err, sizeof(err));
			if (!rc)
				memcpy(sent + gpa, gpa_to_host(&src, gpa, count * MIG_PAGE_SIZE), count * MIG_PAGE_SIZE);
		} else if (op == 2) {
			rc = mig_writer_round(&w, err, sizeof(err));
		} else if (op == 3) {
			struct snap_writer sw;
			uint8_t *state;
			size_t len;
			snap_writer_init(&sw);
			fuzz_check(snap_writer_add(&sw, "config", data, MIN(size, (size_t)b)) == 0, "snap_writer_add");
			fuzz_check(snap_writer_build(&sw, a, &ops_config.cpu, &state, &len) == 0, "snap_writer_build");
			rc = mig_writer_state(&w, state, len, err, sizeof(err));
			free(state);
			snap_writer_free(&sw);
		} else {
			rc = mig_writer_end(&w, err, sizeof(err));
		}
		/* A refused operation writes nothing: the stream stays one the reader must accept. */
		fuzz_check(rc == 0 || w.offset == sent_at, "a refused operation wrote bytes");
		if (w.offset != sent_at)
			records++;
		sent_at = w.offset;
		if (w.ended)
			break;
	}
	bool ended = w.ended;
	mig_writer_free(&w);
	unsigned int got = receive(fd, &dst, ended);
	/* Every record of a completed stream passed, and each page holds what was last sent of it. */
	if (ended) {
		fuzz_check(got >= records, "records were lost");
		fuzz_check(!memcmp(gpa_to_host(&dst, 0, OPS_RAM), sent, OPS_RAM), "pages differ from those sent");
	}
	free(sent);
	close(fd);
	guest_mem_destroy(&src);
	guest_mem_destroy(&dst);
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
	if (data[0] & 1)
		writer_ops(data + 1, size - 1);
	else
		raw_stream(data + 1, size - 1);
	return 0;
}
