/*
 * virtio-console as the guest's second console (its /dev/hvc0), port 0 only (no MULTIPORT).
 *
 * Host side, chosen by --console2:
 *   socket=PATH  vmon listens on the Unix socket PATH; one client at a time (a second one is
 *                closed at once); bytes flow both ways. Without a client the guest's output is
 *                discarded, as on a terminal nobody watches.
 *   file=PATH    the guest's output is appended to PATH (created 0600), which never grows past
 *                max_size bytes (the rest is dropped and counted); the guest reads nothing.
 *
 * Flow control, no unbounded buffering: guest output is written straight from the transmit
 * buffer; when a slow client's socket is full, the buffer is held (the guest waits) until the
 * socket drains; a file is written by a thread of its own (console_file.h) while the device
 * holds the buffer, so a slow disk makes the guest wait, never the event loop. Client input is read straight into the guest's receive buffers, and only
 * while the guest has some: otherwise vmon stops reading and the client's writes block.
 */
#ifndef VMON_VIRTIO_VIRTIO_CONSOLE_H
#define VMON_VIRTIO_VIRTIO_CONSOLE_H

#include <stdint.h>

#include "virtio/virtio_pci.h"

enum virtio_console_backend {
	VIRTIO_CONSOLE_SOCKET,
	VIRTIO_CONSOLE_FILE,
};

struct virtio_console;

struct virtio_console_stats {
	uint64_t tx_bytes;      /* guest output delivered to the client or file */
	uint64_t rx_bytes;      /* client input delivered to the guest */
	uint64_t dropped_bytes; /* guest output discarded (no client, the client went away, the file is full) */
	uint64_t errors;        /* malformed buffers from the guest, write errors on the file */
};

/*
 * Creates the device on deps->pci and opens its host side (listening socket or output file;
 * max_size is the file's size limit, unused for a socket). Returns 0 or a negative errno
 * (logged as one sentence naming --console2).
 */
int virtio_console_create(const struct virtio_pci_deps *deps, enum virtio_console_backend backend, const char *path,
			  uint64_t max_size, struct virtio_console **out);
/* Unplugs the device, closes the host side (and removes the socket file). Loop stopped. */
void virtio_console_destroy(struct virtio_console *con);

void virtio_console_get_stats(const struct virtio_console *con, struct virtio_console_stats *st);

#endif
