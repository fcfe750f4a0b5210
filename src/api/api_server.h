/*
 * The control API's HTTP/1.1 server on a Unix socket (libmicrohttpd, one thread per connection
 * so a slow request such as a pause never holds up another client). Routes are in api_routes.c.
 * A request must arrive whole within API_REQUEST_DEADLINE_S and a client process may hold only
 * API_CONNECTIONS_PER_PEER connections (api_conn_guard.c), so slow or greedy clients hold only
 * their own connections; a state-changing request whose client closed its connection before it
 * ran is not carried out. vCPUs never wait for the server.
 */
#ifndef VMON_API_API_SERVER_H
#define VMON_API_API_SERVER_H

struct vm;
struct api_server;

#define API_CONNECTION_LIMIT 64
#define API_CONNECTION_TIMEOUT_S 10 /* of silence on an idle keep-alive connection */
#define API_REQUEST_DEADLINE_S 5    /* to send one whole request, headers and body */
#define API_CONNECTIONS_PER_PEER 16
#define API_OVER_LIMIT_GRACE_MS 1000 /* for a connection over its process's share to read its 429 */

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
