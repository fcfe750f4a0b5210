/*
 * A small HTTP/1.1 client over a Unix socket, enough for `vmon ctl`, `vmon ps` and the tests:
 * one request per connection, a Content-Length or read-to-close body, a deadline for the whole
 * exchange.
 */
#ifndef VMON_API_HTTP_CLIENT_H
#define VMON_API_HTTP_CLIENT_H

#include <stddef.h>

#define HTTP_CLIENT_MAX_RESPONSE (16 * 1024 * 1024)

struct http_response {
	int status;
	char *body; /* malloc'ed, NUL-terminated; free() it */
	size_t len;
};

/*
 * Sends method path (with body, which may be NULL) to the server at the Unix socket sock and
 * reads the reply. Returns 0, or a negative errno: -ENOENT / -ECONNREFUSED when nothing
 * listens there, -ETIMEDOUT past timeout_ms, -EPROTO for a reply that is not HTTP.
 */
int http_unix_request(const char *sock, const char *method, const char *path, const char *body,
		      int timeout_ms, struct http_response *resp);

#endif
