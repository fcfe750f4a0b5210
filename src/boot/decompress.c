#include "boot/decompress.h"

#include <errno.h>
#include <limits.h>
#include <lz4.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "lib/log.h"
#include "lib/util.h"

/* The kernel's lz4 "legacy" frame: this magic, then blocks of (le32 compressed size, data). */
#define LZ4_LEGACY_MAGIC 0x184C2102u
#define LZ4_LEGACY_BLOCK_MAX (8 * MiB)

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

enum payload_format payload_detect(const uint8_t *d, size_t len)
{
	if (len >= 2 && d[0] == 0x1f && d[1] == 0x8b)
		return PAYLOAD_GZIP;
	if (len >= 6 && memcmp(d, "\xfd" "7zXZ\0", 6) == 0)
		return PAYLOAD_XZ;
	if (len >= 3 && memcmp(d, "\x5d\0\0", 3) == 0)
		return PAYLOAD_LZMA;
	if (len >= 4 && le32(d) == LZ4_LEGACY_MAGIC)
		return PAYLOAD_LZ4;
	if (len >= 4 && memcmp(d, "\x28\xb5\x2f\xfd", 4) == 0)
		return PAYLOAD_ZSTD;
	if (len >= 3 && memcmp(d, "BZh", 3) == 0)
		return PAYLOAD_BZIP2;
	if (len >= 4 && memcmp(d, "\x89LZO", 4) == 0)
		return PAYLOAD_LZO;
	return PAYLOAD_UNKNOWN;
}

const char *payload_format_name(enum payload_format f)
{
	switch (f) {
	case PAYLOAD_GZIP: return "gzip";
	case PAYLOAD_XZ: return "xz";
	case PAYLOAD_LZMA: return "lzma";
	case PAYLOAD_LZ4: return "lz4";
	case PAYLOAD_ZSTD: return "zstd";
	case PAYLOAD_BZIP2: return "bzip2";
	case PAYLOAD_LZO: return "lzo";
	case PAYLOAD_UNKNOWN: break;
	}
	return "unknown";
}

bool payload_format_supported(enum payload_format f)
{
	return f == PAYLOAD_GZIP || f == PAYLOAD_XZ || f == PAYLOAD_LZMA || f == PAYLOAD_LZ4 ||
	       f == PAYLOAD_ZSTD;
}

/* What the lzma and xz decoders may allocate: twice the largest preset's 64 MiB dictionary, and its tables. */
#define PAYLOAD_MAX_LZMA_MEMORY (128 * MiB + 16 * MiB)
/* The most the size trailer may claim per input byte before it is ignored. */
#define PAYLOAD_MAX_RATIO 32

/* Output that grows on demand up to PAYLOAD_MAX_DECOMPRESSED. */
struct outbuf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

static int outbuf_init(struct outbuf *b, size_t cap)
{
	b->len = 0;
	b->cap = cap;
	b->data = malloc(cap);
	return b->data ? 0 : -ENOMEM;
}

/* Makes at least min_free bytes available after len; -EFBIG past the size limit. */
static int outbuf_reserve(struct outbuf *b, size_t min_free)
{
	if (b->cap - b->len >= min_free)
		return 0;
	if (b->len + min_free > PAYLOAD_MAX_DECOMPRESSED)
		return -EFBIG;
	size_t cap = b->cap;
	while (cap - b->len < min_free)
		cap = cap * 2;
	cap = MIN(cap, (size_t)PAYLOAD_MAX_DECOMPRESSED);
	uint8_t *p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

/*
 * The trailer gives the decompressed size, but it is just four bytes anyone could have
 * written: a value outside what is plausible for this input only makes a guess instead.
 */
static size_t initial_capacity(const uint8_t *in, size_t in_len)
{
	size_t guess = MIN(MAX(in_len * 4, (size_t)MiB), (size_t)PAYLOAD_MAX_DECOMPRESSED);
	if (in_len < 8)
		return guess;
	uint64_t hint = le32(in + in_len - 4);
	/*
	 * Kernels compress about 3 to 8 times; a claim far beyond that would have a few bytes of
	 * input reserve up to a GiB. Growing on demand costs a few copies for the odd real outlier.
	 */
	if (hint < in_len / 2 || hint > PAYLOAD_MAX_DECOMPRESSED || hint / PAYLOAD_MAX_RATIO > in_len)
		return guess;
	/* Slack so that a stream ending exactly at the hint never looks like a full buffer. */
	return (size_t)MIN(hint + 64 * KiB, PAYLOAD_MAX_DECOMPRESSED);
}

static int too_big(const char *fmt, char *err, size_t errlen)
{
	snprintf(err, errlen, "the %s payload decompresses to more than %llu MiB, which is not a plausible kernel",
		 fmt, PAYLOAD_MAX_DECOMPRESSED / MiB);
	return -EFBIG;
}

static int corrupt(const char *fmt, const char *why, char *err, size_t errlen)
{
	snprintf(err, errlen, "the %s payload is corrupt (%s)", fmt, why);
	return -EBADMSG;
}

static int reserve_or_fail(struct outbuf *b, size_t min_free, const char *fmt, char *err, size_t errlen)
{
	int rc = outbuf_reserve(b, min_free);
	if (rc == -EFBIG)
		return too_big(fmt, err, errlen);
	if (rc < 0)
		snprintf(err, errlen, "out of host memory while decompressing the %s payload", fmt);
	return rc;
}

static int inflate_gzip(const uint8_t *in, size_t in_len, struct outbuf *b, char *err, size_t errlen)
{
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
		snprintf(err, errlen, "zlib could not be initialised");
		return -ENOMEM;
	}
	size_t consumed = 0;
	int rc = 0;
	for (;;) {
		if ((rc = reserve_or_fail(b, 64 * KiB, "gzip", err, errlen)) < 0)
			break;
		uInt in_chunk = (uInt)MIN(in_len - consumed, (size_t)UINT_MAX);
		uInt out_chunk = (uInt)MIN(b->cap - b->len, (size_t)UINT_MAX);
		zs.next_in = (Bytef *)(in + consumed);
		zs.avail_in = in_chunk;
		zs.next_out = b->data + b->len;
		zs.avail_out = out_chunk;
		int zrc = inflate(&zs, Z_NO_FLUSH);
		consumed += in_chunk - zs.avail_in;
		b->len += out_chunk - zs.avail_out;
		if (zrc == Z_STREAM_END)
			break;
		bool more_input = zs.avail_in == 0 && consumed < in_len; /* inputs beyond 4 GiB */
		if (zrc == Z_OK || (zrc == Z_BUF_ERROR && (zs.avail_out == 0 || more_input)))
			continue;
		if (zrc == Z_BUF_ERROR && consumed == in_len) {
			rc = corrupt("gzip", "it ends in the middle of the compressed stream", err, errlen);
			break;
		}
		rc = corrupt("gzip", zs.msg ? zs.msg : "zlib error", err, errlen);
		break;
	}
	inflateEnd(&zs);
	return rc;
}

static const char *lzma_reason(lzma_ret r)
{
	switch (r) {
	case LZMA_FORMAT_ERROR: return "unrecognised header";
	case LZMA_OPTIONS_ERROR: return "unsupported compression options";
	case LZMA_DATA_ERROR: return "compressed data is corrupt";
	case LZMA_BUF_ERROR: return "it ends in the middle of the compressed stream";
	case LZMA_MEM_ERROR: return "out of host memory";
	case LZMA_MEMLIMIT_ERROR: return "its header asks for a dictionary larger than any kernel compressor uses";
	case LZMA_UNSUPPORTED_CHECK: return "unsupported integrity check";
	default: return "liblzma error";
	}
}

static int unxz(bool alone, const uint8_t *in, size_t in_len, struct outbuf *b, char *err, size_t errlen)
{
	const char *fmt = alone ? "lzma" : "xz";
	lzma_stream s = LZMA_STREAM_INIT;
	/*
	 * The largest presets (lzma -9, xz -9, the kernel's xz_wrap.sh) use a 64 MiB dictionary; a
	 * header asking for more is damaged, and would have a few bytes of input allocate a GiB.
	 */
	uint64_t memlimit = PAYLOAD_MAX_LZMA_MEMORY;
	lzma_ret r = alone ? lzma_alone_decoder(&s, memlimit) : lzma_stream_decoder(&s, memlimit, 0);
	if (r != LZMA_OK) {
		snprintf(err, errlen, "liblzma could not be initialised");
		return -ENOMEM;
	}
	s.next_in = in;
	s.avail_in = in_len;
	int rc = 0;
	for (;;) {
		if ((rc = reserve_or_fail(b, 64 * KiB, fmt, err, errlen)) < 0)
			break;
		size_t out_chunk = b->cap - b->len;
		s.next_out = b->data + b->len;
		s.avail_out = out_chunk;
		/* With all input given, FINISH lets the decoder report truncation instead of waiting. */
		r = lzma_code(&s, s.avail_in ? LZMA_RUN : LZMA_FINISH);
		b->len += out_chunk - s.avail_out;
		if (r == LZMA_STREAM_END)
			break;
		if (r == LZMA_OK)
			continue;
		rc = corrupt(fmt, lzma_reason(r), err, errlen);
		break;
	}
	lzma_end(&s);
	return rc;
}

static int unlz4_legacy(const uint8_t *in, size_t in_len, struct outbuf *b, char *err, size_t errlen)
{
	size_t pos = 4; /* past the magic */
	unsigned blocks = 0;
	while (pos < in_len) {
		size_t left = in_len - pos;
		if (left < 4)
			return corrupt("lz4", "it ends in the middle of a block header", err, errlen);
		uint32_t csize = le32(in + pos);
		if (csize == LZ4_LEGACY_MAGIC) { /* concatenated frames */
			pos += 4;
			continue;
		}
		/* The last four bytes of a kernel payload are the appended size, not a block. */
		if (left == 4 && blocks > 0)
			break;
		pos += 4;
		if (csize == 0 || csize > (uint32_t)LZ4_compressBound((int)LZ4_LEGACY_BLOCK_MAX))
			return corrupt("lz4", "a block has an impossible size", err, errlen);
		if (csize > in_len - pos)
			return corrupt("lz4", "it ends in the middle of a block", err, errlen);
		int rc = reserve_or_fail(b, LZ4_LEGACY_BLOCK_MAX, "lz4", err, errlen);
		if (rc < 0)
			return rc;
		int n = LZ4_decompress_safe((const char *)in + pos, (char *)b->data + b->len, (int)csize,
					    (int)LZ4_LEGACY_BLOCK_MAX);
		if (n < 0)
			return corrupt("lz4", "a block does not decode", err, errlen);
		b->len += (size_t)n;
		pos += csize;
		blocks++;
	}
	if (blocks == 0)
		return corrupt("lz4", "it holds no data", err, errlen);
	return 0;
}

static int unzstd(const uint8_t *in, size_t in_len, struct outbuf *b, char *err, size_t errlen)
{
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	if (!dctx) {
		snprintf(err, errlen, "libzstd could not be initialised");
		return -ENOMEM;
	}
	/*
	 * The kernel compresses with --ultra -22 (a 128 MiB window, libzstd's default limit); allow
	 * up to the output limit, as a larger window is never needed.
	 */
	ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, 30);
	ZSTD_inBuffer zin = { in, in_len, 0 };
	int rc = 0;
	for (;;) {
		if ((rc = reserve_or_fail(b, 64 * KiB, "zstd", err, errlen)) < 0)
			break;
		ZSTD_outBuffer zout = { b->data + b->len, b->cap - b->len, 0 };
		size_t r = ZSTD_decompressStream(dctx, &zout, &zin);
		b->len += zout.pos;
		if (ZSTD_isError(r)) {
			rc = corrupt("zstd", ZSTD_getErrorName(r), err, errlen);
			break;
		}
		if (r == 0) /* frame complete; what follows is the appended size */
			break;
		if (zin.pos == zin.size && zout.pos < zout.size) {
			rc = corrupt("zstd", "it ends in the middle of the compressed stream", err, errlen);
			break;
		}
	}
	ZSTD_freeDCtx(dctx);
	return rc;
}

int payload_decompress(enum payload_format f, const uint8_t *in, size_t in_len, uint8_t **out,
		       size_t *out_len, char *err, size_t errlen)
{
	if (!payload_format_supported(f)) {
		snprintf(err, errlen, "vmon cannot decompress %s payloads", payload_format_name(f));
		return -ENOTSUP;
	}
	struct outbuf b;
	if (outbuf_init(&b, initial_capacity(in, in_len)) < 0) {
		snprintf(err, errlen, "out of host memory while decompressing the %s payload",
			 payload_format_name(f));
		return -ENOMEM;
	}
	int rc;
	switch (f) {
	case PAYLOAD_GZIP: rc = inflate_gzip(in, in_len, &b, err, errlen); break;
	case PAYLOAD_XZ: rc = unxz(false, in, in_len, &b, err, errlen); break;
	case PAYLOAD_LZMA: rc = unxz(true, in, in_len, &b, err, errlen); break;
	case PAYLOAD_LZ4: rc = unlz4_legacy(in, in_len, &b, err, errlen); break;
	case PAYLOAD_ZSTD: rc = unzstd(in, in_len, &b, err, errlen); break;
	default: rc = -ENOTSUP; break;
	}
	if (rc == 0 && b.len == 0)
		rc = corrupt(payload_format_name(f), "it decompresses to nothing", err, errlen);
	if (rc < 0) {
		free(b.data);
		return rc;
	}
	if (in_len >= 4 && le32(in + in_len - 4) != (uint32_t)b.len)
		log_debug("boot", "%s payload decompressed to %zu bytes, its trailer says %u",
			  payload_format_name(f), b.len, le32(in + in_len - 4));
	*out = b.data;
	*out_len = b.len;
	return 0;
}
