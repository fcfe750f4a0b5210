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
#include "migration/handshake.h"

#define INPUT_MAX (64 * 1024) /* within a socket's buffer, so writing it never blocks */

static int judge(void *opaque, const struct mig_peer *peer, char *reason, size_t len)
{
	const bool *refuse = opaque;
	fuzz_check(peer->compat_len <= MIG_COMPAT_MAX && (peer->compat || !peer->compat_len), "a blob out of bounds");
	if (*refuse)
		snprintf(reason, len, "refused by the fuzzer");
	return *refuse;
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
	struct mig_hello h = { .vmon_version = "fuzz", .compat = "c", .compat_len = 1, .check = judge, .opaque = &refuse };
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
