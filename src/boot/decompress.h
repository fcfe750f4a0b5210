/*
 * Decompression of bzImage payloads on the host, so that the guest does not have to run the
 * kernel's own decompressor (slow when guest code at CPL0 is emulated).
 */
#ifndef VMON_BOOT_DECOMPRESS_H
#define VMON_BOOT_DECOMPRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum payload_format {
	PAYLOAD_UNKNOWN = 0,
	PAYLOAD_GZIP,
	PAYLOAD_XZ,
	PAYLOAD_LZMA,
	PAYLOAD_LZ4,
	PAYLOAD_ZSTD,
	PAYLOAD_BZIP2,
	PAYLOAD_LZO,
};

/* Largest decompressed payload accepted; a bigger claim is treated as corruption. */
#define PAYLOAD_MAX_DECOMPRESSED (1ULL << 30)

/* Identifies a compressed payload by its magic bytes. */
enum payload_format payload_detect(const uint8_t *data, size_t len);

/* "gzip", "xz", ..., "unknown". */
const char *payload_format_name(enum payload_format f);

/* True for the formats payload_decompress() handles (gzip, xz, lzma, lz4, zstd). */
bool payload_format_supported(enum payload_format f);

/*
 * Decompresses a whole payload into a malloc'ed buffer. The kernel build appends the
 * uncompressed size as le32 to the payload; it is used only to size the first buffer. Returns 0,
 * or a negative errno with one sentence in err saying what is wrong with the data
 * (-EBADMSG for corrupt data, -EFBIG above PAYLOAD_MAX_DECOMPRESSED, -ENOTSUP for formats
 * not handled here, -ENOMEM).
 */
int payload_decompress(enum payload_format f, const uint8_t *in, size_t in_len, uint8_t **out,
		       size_t *out_len, char *err, size_t errlen);

#endif
