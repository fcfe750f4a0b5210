/*
 * libFuzzer target: the migration handshake (src/migration/handshake.c), which reads a preamble,
 * hello and verdict records from whoever connects to a destination or answers a source. Input
 * byte 0 picks the side (bit 0: this end is the source; bit 1: its caller refuses the peer); the
 * rest is what the peer sends, then it closes. The handshake must end (no wait: the peer's end
 * is closed), accept only a peer that said hello as vmon does, and explain every refusal.
 * Build and run: make fuzz && build/fuzz/fuzz_migration_handshake tests/fuzz/corpus_migration_handshake
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "lib/log.h"
#include "config/config.h"
#include "migration/handshake.h"
#include "migration/migrate_dest.h"

#define INPUT_MAX (64 * 1024) /* within a socket's buffer, so writing it never blocks */

static int judge(void *opaque, const struct mig_peer *peer, char *reason, size_t len)
{
	const bool *refuse = opaque;
	fuzz_check(peer->compat_len <= MIG_COMPAT_MAX && (peer->compat || !peer->compat_len), "a blob out of bounds");
	if (*refuse)
		snprintf(reason, len, "refused by the fuzzer");
	return *refuse;
}

/* vmon receive's judgement of a source's hello: what it accepts is a guest vmon can run. */
static int judge_as_receive(void *opaque, const struct mig_peer *peer, char *reason, size_t len)
{
	if (judge(opaque, peer, reason, len))
		return 1;
	struct migrate_dest_params p = { .vmon_version = "fuzz" };
	struct mig_config c;
	int rc = migrate_dest_check_hello(&p, peer, &c, reason, len);
	if (rc == 0)
		fuzz_check(c.ram_size && c.ram_size % MIG_PAGE_SIZE == 0 && c.ram_size <= MIG_RAM_MAX && c.cpus >= 1 &&
				   c.cpus <= CONFIG_MAX_CPUS && memchr(c.cpu.vendor, 0, sizeof(c.cpu.vendor)),
			   "vmon receive accepted a guest it cannot run");
	else
		fuzz_check(reason[0] != 0, "vmon receive refused a source without a reason");
	return rc;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	log_set_level(LOG_ERROR);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > INPUT_MAX)
		return 0;
	int sv[2];
	int sndbuf = 4 * INPUT_MAX;
	fuzz_check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof(sndbuf));
	if (size > 1)
		fuzz_check(write(sv[1], data + 1, size - 1) == (ssize_t)(size - 1), "write");
	shutdown(sv[1], SHUT_WR);
	bool refuse = data[0] & 2;
	/* A destination judges as vmon receive does; a source with the plain judge. */
	struct mig_hello h = { .vmon_version = "fuzz", .compat = "c", .compat_len = 1,
			       .check = data[0] & 1 ? judge : judge_as_receive, .opaque = &refuse };
	struct mig_conn_opts o = { .timeout_ms = 1000 };
	struct mig_conn *c;
	fuzz_check(mig_conn_wrap(&c, sv[0], "fuzz-peer", data[0] & 1, &o) == 0, "mig_conn_wrap");
	struct mig_peer peer;
	char err[1024] = "";
	int rc = mig_handshake(c, &h, &peer, err, sizeof(err));
	fuzz_check(rc != -ETIMEDOUT, "the handshake waited on a closed peer");
	if (rc == 0) {
		fuzz_check(!refuse, "accepted a peer the caller refused");
		fuzz_check(peer.stream_version == MIG_VERSION && peer.vmon_version[0], "accepted a peer without its hello");
	} else {
		fuzz_check(!strncmp(err, "migration handshake: ", 21), "an error without its prefix");
	}
	mig_conn_close(c);
	close(sv[1]);
	return 0;
}
