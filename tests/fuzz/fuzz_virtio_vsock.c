/*
 * libFuzzer target: virtio-vsock packets from a fuzzed guest (see fuzz_virtio.h). A host
 * program listens on port 1024 ("UDS_1024"), so a guest's REQUEST gets a real connection and
 * its RW packets real data; the harness accepts and closes those connections after each input.
 * Build and run: make fuzz && build/fuzz/fuzz_virtio_vsock tests/fuzz/corpus_virtio_vsock
 */
#include <stdio.h>
#include <unistd.h>

#include "fuzz_virtio.h"
#include "lib/unix_socket.h"
#include "virtio/virtio_vsock.h"

static struct fuzz_virtio v;
static int listener = -1;
static char uds[64], port_path[80];

static void remove_sockets(void)
{
	unlink(uds);
	unlink(port_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	snprintf(uds, sizeof(uds), "/tmp/vmon-fuzz-vsock.%d", (int)getpid());
	snprintf(port_path, sizeof(port_path), "%s_1024", uds);
	struct virtio_vsock *vs;
	fv_init(&v, 3);
	fuzz_check(virtio_vsock_create(&v.deps, 3, uds, &vs) == 0, "virtio_vsock_create");
	listener = unix_socket_listen(port_path, "fuzz vsock port");
	fuzz_check(listener >= 0, "listening on port 1024");
	atexit(remove_sockets);
	fv_attach(&v);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fv_run(&v, data, size);
	int fd;
	while ((fd = unix_socket_accept(listener)) >= 0)
		close(fd);
	fv_settle(&v);
	return 0;
}
