/*
 * Unix stream sockets vmon listens on or dials (the control API, the second console's socket,
 * vsock's listening socket and the ports it dials): non-blocking, close-on-exec, owner-only.
 */
#ifndef VMON_LIB_UNIX_SOCKET_H
#define VMON_LIB_UNIX_SOCKET_H

/*
 * Listens on path. A socket file there that nobody listens on (what a killed vmon leaves
 * behind) is replaced; a live socket or any other file is an error. what names the option in
 * the logged message ("--api-sock", "--console2 socket", "--vsock uds"). Returns the fd or a
 * negative errno.
 */
int unix_socket_listen(const char *path, const char *what);

/* Connects to path without blocking. Returns the fd or a negative errno (not logged). */
int unix_socket_connect(const char *path);

/* Accepts one client as a non-blocking fd, or returns a negative errno (-EAGAIN: none waiting). */
int unix_socket_accept(int listen_fd);

#endif
