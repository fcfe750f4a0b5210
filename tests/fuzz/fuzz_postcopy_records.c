/*
 * libFuzzer target: post-copy's records as a source reads them from a destination (page
 * requests, the verdict and the done record, src/migration/postcopy_wire.c, handshake.c), over a real migration
 * connection on a socketpair. Every record is refused with a "post-copy: " sentence, or a page
 * request it accepts names 1 to MIG_PAGES_MAX pages inside guest RAM.
 * Build and run: make fuzz && build/fuzz/fuzz_postcopy_records tests/fuzz/corpus_postcopy_records
 */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "lib/util.h"
#include "migration/handshake.h"
#include "migration/postcopy_wire.h"

/* Below a socketpair's buffer, so the whole input is written before it is read. */
#define INPUT_MAX (64 * KiB)
/* Two regions: 3 GiB below the MMIO hole and 1 MiB above 4 GiB, without touching any of it. */
#define RAM (GUEST_MEM_LOW_LIMIT + MiB)

static struct guest_mem mem;
static uint8_t buf[PC_REC_MAX];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_check(guest_mem_init(&mem, RAM) == 0, "guest_mem_init");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	fuzz_check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
	int big = 2 * INPUT_MAX;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	size = MIN(size, (size_t)INPUT_MAX);
	fuzz_check(write(sv[0], data, size) == (ssize_t)size, "write");
	close(sv[0]);
	struct mig_conn *c;
	struct mig_conn_opts o = { .timeout_ms = 1000 };
	fuzz_check(mig_conn_wrap(&c, sv[1], "fuzz", true, &o) == 0, "mig_conn_wrap");
	struct pc_link l;
	pc_link_init(&l, c, "the destination");
	char err[512];
	for (;;) {
		uint32_t type, len;
		uint64_t rec = l.rx_offset;
		int rc = pc_read(&l, false, &type, buf, &len, err, sizeof(err));
		if (rc) {
			fuzz_check(strncmp(err, "post-copy: ", 11) == 0, "a refusal without its prefix");
			break;
		}
		fuzz_check(mig_rec_len_ok(type, len), "a record of a length its type does not have");
		if (type == MIG_REC_VERDICT) {
			char reason[MIG_REASON_MAX];
			bool accept = true;
			if (mig_verdict_parse(buf, reason, &accept) == 0)
				fuzz_check(memchr(reason, 0, sizeof(reason)) && (!accept || !reason[0]),
					   "a verdict accepted with a reason, or one without its end");
			continue;
		}
		if (type != MIG_REC_PAGE_REQUEST)
			continue;
		uint64_t gpa;
		uint32_t count;
		if (pc_parse_request(&mem, rec, buf, &gpa, &count, err, sizeof(err))) {
			fuzz_check(strncmp(err, "post-copy: ", 11) == 0, "a refusal without its prefix");
			continue;
		}
		fuzz_check(count >= 1 && count <= MIG_PAGES_MAX, "a page request of a count out of bounds");
		fuzz_check(gpa_to_host(&mem, gpa, (uint64_t)count * MIG_PAGE_SIZE) != NULL, "a page request outside RAM");
		fuzz_check(pc_page_index(&mem, gpa) < pc_pages(&mem), "a page index outside RAM");
	}
	pc_link_destroy(&l);
	mig_conn_close(c);
	return 0;
}
