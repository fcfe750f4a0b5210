/*
 * libFuzzer target: virtio-console transmit and receive queues with a file backend
 * (/dev/null), driven by a fuzzed guest (see fuzz_virtio.h).
 * Build and run: make fuzz && build/fuzz/fuzz_virtio_console tests/fuzz/corpus_virtio_console
 */
#include "fuzz_virtio.h"
#include "config/config_sockets.h"
#include "virtio/virtio_console.h"

static struct fuzz_virtio v;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	struct virtio_console *con;
	fv_init(&v, 2);
	fuzz_check(virtio_console_create(&v.deps, VIRTIO_CONSOLE_FILE, "/dev/null", CONSOLE2_DEFAULT_MAX_SIZE, &con) == 0,
		 "virtio_console_create");
	fv_attach(&v);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fv_run(&v, data, size);
	return 0;
}
