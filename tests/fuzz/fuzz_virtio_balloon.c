/*
 * libFuzzer target: virtio-balloon's queues (PFN arrays, statistics, free page reports), driven
 * by a fuzzed guest (see fuzz_virtio.h). Guest RAM is a memfd as in vmon, so every discard the
 * guest asks for really happens.
 * Build and run: make fuzz && build/fuzz/fuzz_virtio_balloon tests/fuzz/corpus_virtio_balloon
 */
#include "fuzz_virtio.h"
#include "virtio/virtio_balloon.h"

static struct fuzz_virtio v;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	struct virtio_balloon *b;
	struct balloon_config cfg;
	config_balloon_defaults(&cfg);
	cfg.enabled = true;
	fv_init(&v, 4);
	free(v.ram);
	fuzz_check(guest_mem_init(&v.mem, FV_RAM) == 0, "memfd guest RAM");
	v.ram = v.mem.regions[0].host;
	fuzz_check(virtio_balloon_create(&v.deps, &cfg, &b) == 0, "virtio_balloon_create");
	fuzz_check(virtio_balloon_set_target(b, FV_RAM / 2) == 0, "target");
	fv_attach(&v);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fv_run(&v, data, size);
	return 0;
}
