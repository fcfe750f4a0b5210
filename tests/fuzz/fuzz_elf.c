/*
 * libFuzzer target: the ELF kernel loader (headers, program headers, segments into guest RAM).
 * Build and run: make fuzz && build/fuzz/fuzz_elf tests/fuzz/corpus_elf
 */
#include "boot/elf_loader.h"
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
	if (elf_has_magic(img, size) && elf_load(&mem, img, size, "fuzz.elf", &k, err, sizeof(err)) == 0)
		fuzz_check_loaded(&k);
	free(img);
	return 0;
}
