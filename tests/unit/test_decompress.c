/* Payload format detection and host-side decompression of every format the kernel build produces. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <lz4.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "boot/decompress.h"
#include "lib/util.h"

/* Compressible but not trivial data: words from a small alphabet. */
static uint8_t *make_data(size_t len)
{
	uint8_t *d = malloc(len);
	uint32_t x = 12345;
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		d[i] = (x >> 16) % 7 ? (uint8_t)('a' + (x >> 20) % 16) : ' ';
	}
	return d;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Compresses like the kernel build does, including the appended le32 uncompressed size. */
static uint8_t *compress_payload(enum payload_format f, const uint8_t *in, size_t len, size_t *out_len)
{
	size_t cap = len + len / 2 + 64 * KiB + 8 * (len / (8 * MiB) + 1);
	uint8_t *out = malloc(cap);
	size_t n = 0;
	switch (f) {
	case PAYLOAD_GZIP: {
		z_stream zs;
		memset(&zs, 0, sizeof(zs));
		assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
		zs.next_in = (Bytef *)in;
		zs.avail_in = (uInt)len;
		zs.next_out = out;
		zs.avail_out = (uInt)cap;
		assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
		n = zs.total_out;
		deflateEnd(&zs);
		*out_len = n; /* gzip's own trailer already ends with the size */
		return out;
	}
	case PAYLOAD_XZ: {
		/* As scripts/xz_wrap.sh: the x86 BCJ filter in front of LZMA2, CRC32 check. */
		lzma_options_lzma opt;
		lzma_lzma_preset(&opt, 1);
		lzma_filter filters[] = { { LZMA_FILTER_X86, NULL }, { LZMA_FILTER_LZMA2, &opt },
					  { LZMA_VLI_UNKNOWN, NULL } };
		assert_int_equal(lzma_stream_buffer_encode(filters, LZMA_CHECK_CRC32, NULL, in, len, out, &n, cap),
				 LZMA_OK);
		break;
	}
	case PAYLOAD_LZMA: {
		lzma_options_lzma opt;
		lzma_lzma_preset(&opt, 1);
		lzma_stream s = LZMA_STREAM_INIT;
		assert_int_equal(lzma_alone_encoder(&s, &opt), LZMA_OK);
		s.next_in = in;
		s.avail_in = len;
		s.next_out = out;
		s.avail_out = cap;
		assert_int_equal(lzma_code(&s, LZMA_FINISH), LZMA_STREAM_END);
		n = s.total_out;
		lzma_end(&s);
		break;
	}
	case PAYLOAD_LZ4: { /* legacy frame: magic, then (le32 size, block) per 8 MiB */
		put_le32(out, 0x184C2102u);
		n = 4;
		for (size_t pos = 0; pos < len; pos += 8 * MiB) {
			int chunk = (int)MIN(len - pos, 8 * MiB);
			int c = LZ4_compress_default((const char *)in + pos, (char *)out + n + 4, chunk,
						     (int)(cap - n - 8));
			assert_true(c > 0);
			put_le32(out + n, (uint32_t)c);
			n += 4 + (size_t)c;
		}
		break;
	}
	case PAYLOAD_ZSTD: {
		/* Like a pipe into zstd: no content size in the frame header, a checksum at its end. */
		ZSTD_CCtx *c = ZSTD_createCCtx();
		ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 3);
		ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0);
		ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
		n = ZSTD_compress2(c, out, cap, in, len);
		assert_false(ZSTD_isError(n));
		ZSTD_freeCCtx(c);
		break;
	}
	default:
		fail();
	}
	put_le32(out + n, (uint32_t)len);
	*out_len = n + 4;
	return out;
}

static const enum payload_format supported[] = { PAYLOAD_GZIP, PAYLOAD_XZ, PAYLOAD_LZMA, PAYLOAD_LZ4,
						  PAYLOAD_ZSTD };

static void test_detects_each_magic(void **state)
{
	(void)state;
	static const struct {
		const char *bytes;
		size_t len;
		enum payload_format f;
	} cases[] = {
		{ "\x1f\x8b\x08\x00", 4, PAYLOAD_GZIP },   { "\xfd" "7zXZ\0\0", 7, PAYLOAD_XZ },
		{ "\x5d\0\0\x80\0", 5, PAYLOAD_LZMA },     { "\x02\x21\x4c\x18", 4, PAYLOAD_LZ4 },
		{ "\x28\xb5\x2f\xfd", 4, PAYLOAD_ZSTD },   { "BZh91AY&SY", 10, PAYLOAD_BZIP2 },
		{ "\x89LZO\0\r\n", 7, PAYLOAD_LZO },       { "\x7f" "ELF", 4, PAYLOAD_UNKNOWN },
		{ "\x1f", 1, PAYLOAD_UNKNOWN },            { "\xfd" "7zX", 4, PAYLOAD_UNKNOWN },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		assert_int_equal(payload_detect((const uint8_t *)cases[i].bytes, cases[i].len), cases[i].f);
	assert_string_equal(payload_format_name(PAYLOAD_LZ4), "lz4");
	assert_false(payload_format_supported(PAYLOAD_BZIP2));
	assert_false(payload_format_supported(PAYLOAD_LZO));
	assert_false(payload_format_supported(PAYLOAD_UNKNOWN));
}

/* Overrides for the appended size; HINT_COMPRESSED_SIZE stands for a plausible but wrong one. */
#define HINT_COMPRESSED_SIZE 1u

static void roundtrip(enum payload_format f, size_t len, uint32_t trailer_override)
{
	uint8_t *data = make_data(len);
	size_t clen;
	uint8_t *c = compress_payload(f, data, len, &clen);
	assert_int_equal(payload_detect(c, clen), f);
	if (trailer_override)
		put_le32(c + clen - 4, trailer_override == HINT_COMPRESSED_SIZE ? (uint32_t)clen : trailer_override);
	uint8_t *out = NULL;
	size_t out_len = 0;
	char err[256] = "";
	int rc = payload_decompress(f, c, clen, &out, &out_len, err, sizeof(err));
	if (rc != 0)
		fail_msg("%s: %s", payload_format_name(f), err);
	assert_int_equal(out_len, len);
	assert_memory_equal(out, data, len);
	free(out);
	free(c);
	free(data);
}

static void test_roundtrip_every_format(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(supported); i++)
		roundtrip(supported[i], 2 * MiB + 123, 0);
}

static void test_lz4_several_blocks(void **state)
{
	(void)state;
	roundtrip(PAYLOAD_LZ4, 19 * MiB + 5, 0);
}

static void test_size_trailer_is_only_a_hint(void **state)
{
	(void)state;
	/*
	 * Too small, absurdly large, and plausible but wrong: the output grows as needed. gzip is
	 * left out: its trailer is the stream's own length check, so zlib refuses a wrong one.
	 */
	for (size_t i = 1; i < ARRAY_SIZE(supported); i++) {
		roundtrip(supported[i], 1 * MiB, 16);
		roundtrip(supported[i], 1 * MiB, 0xffffffffu);
		roundtrip(supported[i], 1 * MiB, HINT_COMPRESSED_SIZE);
	}
}

static void expect_corrupt(enum payload_format f, const uint8_t *c, size_t clen)
{
	uint8_t *out = (uint8_t *)"untouched";
	size_t out_len = 7;
	char err[256] = "";
	assert_int_equal(payload_decompress(f, c, clen, &out, &out_len, err, sizeof(err)), -EBADMSG);
	char want[64];
	snprintf(want, sizeof(want), "the %s payload is corrupt", payload_format_name(f));
	if (!strstr(err, want))
		fail_msg("%s: got \"%s\"", payload_format_name(f), err);
	assert_string_equal((char *)out, "untouched");
	assert_int_equal(out_len, 7);
}

static void test_truncated_payload_is_an_error(void **state)
{
	(void)state;
	uint8_t *data = make_data(1 * MiB);
	for (size_t i = 0; i < ARRAY_SIZE(supported); i++) {
		size_t clen;
		uint8_t *c = compress_payload(supported[i], data, 1 * MiB, &clen);
		expect_corrupt(supported[i], c, clen / 2);
		free(c);
	}
	free(data);
}

static void test_corrupted_payload_is_an_error(void **state)
{
	(void)state;
	uint8_t *data = make_data(1 * MiB);
	for (size_t i = 0; i < ARRAY_SIZE(supported); i++) {
		size_t clen;
		uint8_t *c = compress_payload(supported[i], data, 1 * MiB, &clen);
		if (supported[i] == PAYLOAD_LZ4 || supported[i] == PAYLOAD_LZMA) {
			/* No checksum in these formats: break the structure instead of the data. */
			size_t hdr = supported[i] == PAYLOAD_LZ4 ? 4 : 13;
			memset(c + hdr, 0xff, 64);
		} else {
			for (size_t j = clen / 3; j < clen / 3 + 64; j++)
				c[j] ^= 0x5a;
		}
		expect_corrupt(supported[i], c, clen);
		free(c);
	}
	free(data);
}

static void test_lzma_header_asking_for_a_huge_dictionary_is_refused(void **state)
{
	(void)state;
	uint8_t *data = make_data(64 * KiB);
	size_t clen;
	uint8_t *c = compress_payload(PAYLOAD_LZMA, data, 64 * KiB, &clen);
	/* .lzma header: properties byte, then the dictionary size (here 928 MiB, as a fuzzer found). */
	put_le32(c + 1, 0x3a000000u);
	expect_corrupt(PAYLOAD_LZMA, c, clen);
	uint8_t *out = NULL;
	size_t out_len = 0;
	char err[256] = "";
	payload_decompress(PAYLOAD_LZMA, c, clen, &out, &out_len, err, sizeof(err));
	assert_non_null(strstr(err, "dictionary larger than any kernel compressor uses"));
	/* A 64 MiB dictionary, what lzma -9 writes, is accepted. */
	free(c);
	c = compress_payload(PAYLOAD_LZMA, data, 64 * KiB, &clen);
	put_le32(c + 1, 64u << 20);
	assert_int_equal(payload_decompress(PAYLOAD_LZMA, c, clen, &out, &out_len, err, sizeof(err)), 0);
	assert_int_equal(out_len, 64 * KiB);
	assert_memory_equal(out, data, out_len);
	free(out);
	free(c);
	free(data);
}

static void test_unsupported_format(void **state)
{
	(void)state;
	static const uint8_t bz[] = "BZh91AY&SY....";
	uint8_t *out;
	size_t out_len;
	char err[256] = "";
	assert_int_equal(payload_decompress(PAYLOAD_BZIP2, bz, sizeof(bz), &out, &out_len, err, sizeof(err)),
			 -ENOTSUP);
	assert_non_null(strstr(err, "bzip2"));
}

static void test_output_above_limit_refused(void **state)
{
	(void)state;
	/* 129 lz4 blocks of 8 MiB of zeros: a few MiB that would expand past 1 GiB. */
	uint8_t *zeros = calloc(1, 8 * MiB);
	char *block = malloc(LZ4_compressBound(8 * MiB));
	int blen = LZ4_compress_default((const char *)zeros, block, 8 * MiB, LZ4_compressBound(8 * MiB));
	assert_true(blen > 0);
	size_t nblocks = PAYLOAD_MAX_DECOMPRESSED / (8 * MiB) + 1;
	size_t clen = 4 + nblocks * (4 + (size_t)blen) + 4;
	uint8_t *c = malloc(clen), *p = c;
	put_le32(p, 0x184C2102u);
	p += 4;
	for (size_t i = 0; i < nblocks; i++) {
		put_le32(p, (uint32_t)blen);
		memcpy(p + 4, block, (size_t)blen);
		p += 4 + blen;
	}
	put_le32(p, (uint32_t)(nblocks * 8 * MiB));
	uint8_t *out;
	size_t out_len;
	char err[256] = "";
	assert_int_equal(payload_decompress(PAYLOAD_LZ4, c, clen, &out, &out_len, err, sizeof(err)), -EFBIG);
	assert_non_null(strstr(err, "more than 1024 MiB"));
	free(c);
	free(block);
	free(zeros);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_detects_each_magic),
		cmocka_unit_test(test_roundtrip_every_format),
		cmocka_unit_test(test_lz4_several_blocks),
		cmocka_unit_test(test_size_trailer_is_only_a_hint),
		cmocka_unit_test(test_truncated_payload_is_an_error),
		cmocka_unit_test(test_corrupted_payload_is_an_error),
		cmocka_unit_test(test_lzma_header_asking_for_a_huge_dictionary_is_refused),
		cmocka_unit_test(test_unsupported_format),
		cmocka_unit_test(test_output_above_limit_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
