#include "api/api_server.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/api_routes.h"
#include "lib/log.h"
#include "lib/unix_socket.h"
#include "lib/util.h"
#include "sandbox/sandbox.h"

struct api_server {
	struct MHD_Daemon *daemon;
	char *path;
	struct api_ctx ctx;
	_Atomic int in_flight; /* requests begun and not yet completed */
};

/* One request's state across the access handler's calls. */
struct request {
	char *body;
	size_t len;
	bool too_big;
};

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	size_t n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = 0;
	log_debug("api", "libmicrohttpd: %s", msg);
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, struct api_reply *r)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(r->len, r->body ? r->body : (char *)"", r->body ? MHD_RESPMEM_MUST_FREE
												  : MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		free(r->body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type ? r->content_type : "text/plain");
	if (r->allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
	enum MHD_Result ret = MHD_queue_response(conn, r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
	struct api_server *s = cls;
	(void)version;
	struct request *req = *con_cls;
	if (!req) {
		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		*con_cls = req;
		atomic_fetch_add(&s->in_flight, 1);
		return MHD_YES;
	}
	if (*upload_size) {
		size_t n = *upload_size;
		*upload_size = 0;
		if (req->too_big || req->len + n > API_MAX_BODY) {
			/* Keep reading (and dropping) so the client gets a 413, not a reset connection. */
			req->too_big = true;
			return MHD_YES;
		}
		char *b = realloc(req->body, req->len + n + 1);
		if (!b)
			return MHD_NO;
		memcpy(b + req->len, upload_data, n);
		req->len += n;
		b[req->len] = 0;
		req->body = b;
		return MHD_YES;
	}
	struct api_reply r;
	api_handle(&s->ctx, method, url, req->body, req->len, req->too_big, &r);
	return send_reply(conn, &r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct api_server *s = cls;
	(void)conn;
	(void)toe;
	struct request *req = *con_cls;
	if (!req)
		return;
	free(req->body);
	free(req);
	*con_cls = NULL;
	atomic_fetch_sub(&s->in_flight, 1);
}

struct daemon_start {
	struct api_server *s;
	int fd;
};

/* libmicrohttpd's threads are started from here, so that they inherit the API's filter. */
static void *start_daemon(void *arg)
{
	struct daemon_start *ds = arg;
	sandbox_enter(SANDBOX_API);
	ds->s->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
						 MHD_USE_ERROR_LOG | MHD_USE_ITC,
					 0, NULL, NULL, on_request, ds->s, MHD_OPTION_LISTEN_SOCKET, ds->fd,
					 MHD_OPTION_CONNECTION_LIMIT, (unsigned int)API_CONNECTION_LIMIT,
					 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)API_CONNECTION_TIMEOUT_S,
					 MHD_OPTION_NOTIFY_COMPLETED, on_completed, ds->s, MHD_OPTION_EXTERNAL_LOGGER,
					 mhd_logger, ds->s, MHD_OPTION_END);
	return NULL;
}

int api_server_start(struct api_server **out, const char *path, struct vm *vm)
{
	*out = NULL;
	struct api_server *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->path = strdup(path);
	if (!s->path) {
		free(s);
		return -ENOMEM;
	}
	api_ctx_init(&s->ctx, vm);
	int fd = unix_socket_listen(path, "--api-sock");
	if (fd < 0) {
		api_ctx_destroy(&s->ctx);
		free(s->path);
		free(s);
		return fd;
	}
	struct daemon_start ds = { s, fd };
	pthread_t starter;
	if (pthread_create(&starter, NULL, start_daemon, &ds) == 0)
		pthread_join(starter, NULL);
	if (!s->daemon) {
		log_error("api", "cannot start the API server on %s (libmicrohttpd failed; run with --log-level debug "
				 "for its reason)", path);
		close(fd);
		unlink(path);
		api_ctx_destroy(&s->ctx);
		free(s->path);
		free(s);
		return -EIO;
	}
	log_info("api", "serving the API on %s", path);
	*out = s;
	return 0;
}

void api_server_stop(struct api_server *s)
{
	if (!s)
		return;
	/* Stop accepting, then give replies in flight (a PUT /vm/stop's, typically) a moment to go out. */
	MHD_socket lfd = MHD_quiesce_daemon(s->daemon);
	uint64_t deadline = monotonic_ns() + 1000000000ULL;
	while (atomic_load(&s->in_flight) > 0 && monotonic_ns() < deadline) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	MHD_stop_daemon(s->daemon);
	if (lfd != MHD_INVALID_SOCKET)
		close(lfd);
	api_ctx_destroy(&s->ctx);
	if (unlink(s->path) < 0 && errno != ENOENT)
		log_warn("api", "cannot remove the API socket %s: %s", s->path, strerror(errno));
	free(s->path);
	free(s);
}
