/*
 * libFuzzer target: the bzImage loader (setup header checks, payload location, the payload's
 * decompression into guest RAM). Make seeds with tests/fuzz/make-seeds.py.
 * Build and run: make fuzz && build/fuzz/fuzz_bzimage tests/fuzz/corpus_bzimage
 */
#include "boot/bzimage.h"
#include "fuzz_kernel_loaders.h"

static struct guest_mem mem;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_guest_ram(&mem);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *img = fuzz_copy(data, size);
	struct kernel_image k;
	char err[512];
	memset(&k, 0, sizeof(k));
	if (bzimage_has_header(img, size) && bzimage_load(&mem, img, size, "fuzz.bzImage", &k, err, sizeof(err)) == 0)
		fuzz_check_loaded(&k);
	free(img);
	return 0;
}
