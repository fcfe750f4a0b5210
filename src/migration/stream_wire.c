#include "migration/stream_wire.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "lib/util.h"
#include "migration/stream.h"

_Static_assert(sizeof(struct mig_preamble) == 16, "the preamble is 16 bytes");
_Static_assert(sizeof(struct mig_rec_hdr) == 16, "a record header is 16 bytes");
_Static_assert(sizeof(struct mig_rec_header) == 72, "the header record is 72 bytes");
_Static_assert(sizeof(struct mig_rec_config) == 72, "the configuration record is 72 bytes");
_Static_assert(sizeof(struct mig_rec_pages) == 16, "a page run is 16 bytes");
_Static_assert(sizeof(struct mig_rec_round) == 16, "a round marker is 16 bytes");
_Static_assert(sizeof(struct mig_rec_end) == 8, "the end record is 8 bytes");
_Static_assert(sizeof(struct mig_rec_hello) == 80, "the hello record's fixed part is 80 bytes");
_Static_assert(sizeof(struct mig_rec_verdict) == 512, "the verdict record is 512 bytes");
_Static_assert(sizeof(struct mig_rec_postcopy) == 16, "the post-copy switch record is 16 bytes");
_Static_assert(sizeof(struct mig_rec_page_request) == 16, "a page request is 16 bytes");
_Static_assert(sizeof(struct mig_rec_postcopy_end) == 16, "the post-copy end and done records are 16 bytes");

uint32_t mig_crc(uint32_t crc, const void *p, size_t len)
{
	const uint8_t *b = p;
	uLong c = crc;
	while (len > 0) { /* zlib takes uInt lengths */
		uInt n = (uInt)MIN(len, (size_t)1 << 30);
		c = crc32(c, b, n);
		b += n;
		len -= n;
	}
	return (uint32_t)c;
}

struct mig_rec_hdr mig_rec_hdr_make(uint32_t type, uint32_t len, uint32_t crc)
{
	struct mig_rec_hdr h = { .type = type, .len = len, .crc = crc };
	h.hdr_crc = mig_crc(0, &h, offsetof(struct mig_rec_hdr, hdr_crc));
	return h;
}

const char *mig_rec_name(uint32_t type)
{
	static const char *const names[MIG_REC_TYPES] = {
		[MIG_REC_HEADER] = "header record",
		[MIG_REC_CONFIG] = "configuration record",
		[MIG_REC_PAGES] = "memory record",
		[MIG_REC_ZERO] = "zero-run record",
		[MIG_REC_ROUND] = "round marker",
		[MIG_REC_STATE] = "state record",
		[MIG_REC_END] = "end record",
		[MIG_REC_HELLO] = "hello record",
		[MIG_REC_VERDICT] = "verdict record",
		[MIG_REC_POSTCOPY] = "post-copy switch record",
		[MIG_REC_DISCARD] = "discard record",
		[MIG_REC_PAGE_REQUEST] = "page request",
		[MIG_REC_POSTCOPY_END] = "post-copy end record",
		[MIG_REC_POSTCOPY_DONE] = "post-copy done record",
	};
	return type < MIG_REC_TYPES && names[type] ? names[type] : "record";
}

bool mig_page_is_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)p;
	for (unsigned int i = 0; i < MIG_PAGE_SIZE / sizeof(*q); i++)
		if (q[i])
			return false;
	return true;
}

bool mig_printable(const char *s, size_t max)
{
	size_t n = strnlen(s, max);
	if (n == max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return false;
	return true;
}

/* The fixed size of a record type's payload, or 0 for the types of variable size. */
static size_t fixed_len(uint32_t type)
{
	switch (type) {
	case MIG_REC_HEADER: return sizeof(struct mig_rec_header);
	case MIG_REC_CONFIG: return sizeof(struct mig_rec_config);
	case MIG_REC_ZERO: return sizeof(struct mig_rec_pages);
	case MIG_REC_ROUND: return sizeof(struct mig_rec_round);
	case MIG_REC_END: return sizeof(struct mig_rec_end);
	case MIG_REC_VERDICT: return sizeof(struct mig_rec_verdict);
	case MIG_REC_POSTCOPY: return sizeof(struct mig_rec_postcopy);
	case MIG_REC_DISCARD: return sizeof(struct mig_rec_pages);
	case MIG_REC_PAGE_REQUEST: return sizeof(struct mig_rec_page_request);
	case MIG_REC_POSTCOPY_END:
	case MIG_REC_POSTCOPY_DONE: return sizeof(struct mig_rec_postcopy_end);
	default: return 0;
	}
}

bool mig_rec_len_ok(uint32_t type, uint32_t len)
{
	const size_t pages_max = sizeof(struct mig_rec_pages) + (size_t)MIG_PAGES_MAX * MIG_PAGE_SIZE;
	size_t want = fixed_len(type);
	if (want)
		return len == want;
	switch (type) {
	case MIG_REC_STATE: return len > 0 && len <= MIG_STATE_MAX;
	case MIG_REC_HELLO: return len >= sizeof(struct mig_rec_hello) && len <= sizeof(struct mig_rec_hello) + MIG_COMPAT_MAX;
	case MIG_REC_PAGES:
		return len > sizeof(struct mig_rec_pages) && len <= pages_max &&
		       (len - sizeof(struct mig_rec_pages)) % MIG_PAGE_SIZE == 0;
	default: return false;
	}
}

int mig_write_full(int fd, const void *p, size_t len)
{
	const uint8_t *b = p;
	bool sock = true;
	while (len > 0) {
		/* send() on a socket, so a closed peer is EPIPE and not a SIGPIPE; write() on a pipe. */
		ssize_t n = sock ? send(fd, b, len, MSG_NOSIGNAL) : write(fd, b, len);
		if (n < 0 && sock && errno == ENOTSOCK) {
			sock = false;
			continue;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t mig_read_full(int fd, void *p, size_t len)
{
	uint8_t *b = p;
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, b + got, len - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static int fd_write(void *ctx, const void *p, size_t len)
{
	return mig_write_full((int)(intptr_t)ctx, p, len);
}

static ssize_t fd_read(void *ctx, void *p, size_t len)
{
	return mig_read_full((int)(intptr_t)ctx, p, len);
}

struct mig_io mig_fd_io(int fd)
{
	return (struct mig_io){ .write = fd_write, .read = fd_read, .ctx = (void *)(intptr_t)fd };
}

const char *mig_io_why(const struct mig_io *io, int rc)
{
	const char *why = io->why ? io->why(io->ctx) : NULL;
	return why && *why ? why : strerror(-rc);
}
