/*
 * The control API's HTTP/1.1 server on a Unix socket (libmicrohttpd, one thread per connection
 * so a slow request such as a pause never holds up another client). Routes are in api_routes.c.
 * Clients that stall are dropped after a timeout; vCPUs never wait for the server.
 */
#ifndef VMON_API_API_SERVER_H
#define VMON_API_API_SERVER_H

struct vm;
struct api_server;

#define API_CONNECTION_LIMIT 32
#define API_CONNECTION_TIMEOUT_S 10

/*
 * Creates the socket at path (mode 0600; a stale socket left by a dead vmon is replaced, a live
 * one or any other file is an error) and starts serving. 0 or a negative errno; the reason is
 * logged.
 */
int api_server_start(struct api_server **out, const char *path, struct vm *vm);

/*
 * Stops accepting, lets replies in flight finish (up to a second), stops the server threads and
 * the shutdown watchdog, removes the socket. NULL is ignored. Call before vm_destroy().
 */
void api_server_stop(struct api_server *s);

#endif
