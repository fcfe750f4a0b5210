/*
 * libFuzzer target: the kernel payload decompressors (gzip, xz, lzma, lz4, zstd, and the
 * formats vmon recognises but refuses). Input: [0] the format to try, or 0 for what
 * payload_detect() says; then the compressed bytes.
 * Build and run: make fuzz && build/fuzz/fuzz_decompress tests/fuzz/corpus_decompress
 */
#include "boot/decompress.h"
#include "fuzz_kernel_loaders.h"

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
	uint8_t *in = fuzz_copy(data + 1, size - 1);
	enum payload_format f = data[0] % 8 ? (enum payload_format)(data[0] % 8) : payload_detect(in, size - 1);
	fuzz_check(payload_format_name(f) != NULL, "format name");
	uint8_t *out = NULL;
	size_t out_len = 0;
	char err[512];
	if (payload_decompress(f, in, size - 1, &out, &out_len, err, sizeof(err)) == 0) {
		fuzz_check(out_len <= PAYLOAD_MAX_DECOMPRESSED, "output larger than the limit");
		if (out_len)
			fuzz_check(out[out_len - 1] == out[out_len - 1], "output readable");
	}
	free(out);
	free(in);
	return 0;
}
