/*
 * The host side of virtio-vsock on Unix sockets, as Firecracker users know it
 * (--vsock cid=N,uds=PATH):
 *   host -> guest: a host program connects to PATH and writes "CONNECT <port>\n"; the muxer
 *                  hands the connection to the device, which opens a connection to the guest's
 *                  port and, once the guest accepts, writes "OK <host port>\n" to the program.
 *   guest -> host: the guest connects to CID 2 port P; the device dials the Unix socket
 *                  "PATH_P" (vsock_unix_dial), which a host program listens on.
 * This file owns the listening socket and the clients that have not sent their request line
 * yet (at most VSOCK_UNIX_MAX_PENDING; the oldest is dropped for a new one). Loop thread only.
 */
#ifndef VMON_BACKENDS_VSOCK_UNIX_H
#define VMON_BACKENDS_VSOCK_UNIX_H

#include <stddef.h>
#include <stdint.h>

#include "backends/event_loop.h"

#define VSOCK_UNIX_MAX_PENDING 16
#define VSOCK_UNIX_LINE_MAX 32 /* "CONNECT 4294967295\n" and some slack */

struct vsock_unix;

/* A host client asked for guest port `port`; the callee owns fd (non-blocking) from now on. */
typedef void (*vsock_unix_connect_fn)(void *opaque, int fd, uint32_t port);

/* Listens on uds_path. Returns 0 or a negative errno (logged, naming --vsock). */
int vsock_unix_create(struct event_loop *loop, const char *uds_path, vsock_unix_connect_fn fn, void *opaque,
		      struct vsock_unix **out);
/* Closes the listening socket (removing its file) and the pending clients. Loop stopped or on it. */
void vsock_unix_destroy(struct vsock_unix *u);

/* Connects to "<uds_path>_<port>". Returns a non-blocking fd or a negative errno. */
int vsock_unix_dial(const struct vsock_unix *u, uint32_t port);

/*
 * Parses a request line (without its '\n'): "CONNECT <port>", port a decimal number that fits
 * in 32 bits. Returns 0 and *port, or -EINVAL.
 */
int vsock_unix_parse_connect(const char *line, size_t len, uint32_t *port);

#endif
