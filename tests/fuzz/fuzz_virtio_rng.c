/*
 * libFuzzer target: virtio-rng request handling, driven by a fuzzed guest (see fuzz_virtio.h).
 * Build and run: make fuzz && build/fuzz/fuzz_virtio_rng tests/fuzz/corpus_virtio_rng
 */
#include "fuzz_virtio.h"
#include "virtio/virtio_rng.h"

static struct fuzz_virtio v;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	struct virtio_rng *rng;
	fv_init(&v, 1);
	fuzz_check(virtio_rng_create(&v.deps, &rng) == 0, "virtio_rng_create");
	fv_attach(&v);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fv_run(&v, data, size);
	return 0;
}
