/*
 * libFuzzer target: virtio-blk request parsing and I/O on a 1 MiB scratch image, driven by a
 * fuzzed guest (see fuzz_virtio.h).
 * Build and run: make fuzz && build/fuzz/fuzz_virtio_blk tests/fuzz/corpus_virtio_blk
 */
#include <unistd.h>

#include "fuzz_virtio.h"
#include "virtio/virtio_blk.h"

#define IMAGE_BYTES (1 << 20)

static struct fuzz_virtio v;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	char path[] = "/tmp/vmon-fuzz-blk.XXXXXX";
	int fd = mkstemp(path);
	fuzz_check(fd >= 0 && ftruncate(fd, IMAGE_BYTES) == 0, "scratch image");
	close(fd);
	struct virtio_blk *blk;
	fv_init(&v, 1);
	v.settle_ms = 1;
	fuzz_check(virtio_blk_create(&v.deps, path, DISK_FORMAT_RAW, false, "fuzz", &blk) == 0, "virtio_blk_create");
	unlink(path); /* the device holds it open */
	fv_attach(&v);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fv_run(&v, data, size);
	return 0;
}
