/*
 * The HTTP client of `vmon ctl`, `vmon ps` and the tests: one request to a server on a Unix
 * socket, through libcurl. The peer is not trusted: the whole exchange has a deadline, the reply
 * a size limit, and text from it is escaped before it reaches a terminal.
 */
#ifndef VMON_API_HTTP_CLIENT_H
#define VMON_API_HTTP_CLIENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#define HTTP_CLIENT_MAX_RESPONSE (16 * 1024 * 1024)

struct http_response {
	int status;
	char *body; /* malloc'ed, NUL-terminated; free() it */
	size_t len;
};

/*
 * Sends method path (with body, which may be NULL) to the server at the Unix socket sock and
 * reads the reply. Returns 0, or a negative errno: -ENOENT / -ECONNREFUSED when nothing
 * listens there (a path that is not a socket gives -ECONNREFUSED too), -EACCES, -ETIMEDOUT
 * when the whole exchange took longer than timeout_ms, -EFBIG for a reply body larger than
 * HTTP_CLIENT_MAX_RESPONSE (announced or sent), -EPROTO for a reply that is not HTTP or ends
 * early.
 */
int http_unix_request(const char *sock, const char *method, const char *path, const char *body,
		      int timeout_ms, struct http_response *resp);

/*
 * GET path from the API on the Unix socket sock: the parsed JSON body of a 200 reply, or NULL
 * (no answer, another status, not JSON). json_decref() it.
 */
json_t *http_unix_get_json(const char *sock, const char *path, int timeout_ms);

/*
 * Writes len bytes a peer sent to f with every control character (C0, DEL, C1, and bytes that
 * are not UTF-8) written as \xNN, so a terminal shows them instead of obeying them. Newlines
 * and tabs pass when keep_lines is set.
 */
void http_write_escaped(FILE *f, const char *s, size_t len, int keep_lines);

#endif
