#include "api/api_server.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
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

#include "api/api_conn_guard.h"
#include "api/api_routes.h"
#include "lib/log.h"
#include "lib/unix_socket.h"
#include "lib/util.h"
#include "sandbox/sandbox.h"

struct api_server {
	struct MHD_Daemon *daemon;
	char *path;
	struct api_ctx ctx;
	struct api_conn_guard *guard;
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

static enum MHD_Result send_reply(struct MHD_Connection *conn, struct api_reply *r, bool close_after)
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
	if (close_after)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	enum MHD_Result ret = MHD_queue_response(conn, r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static struct api_conn *conn_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *i = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return i ? i->socket_context : NULL;
}

static int conn_fd(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *i = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	return i ? i->connect_fd : -1;
}

static bool is_read_only(const char *method) { return !strcmp(method, "GET") || !strcmp(method, "HEAD"); }

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	struct api_server *s = cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		struct api_conn *c;
		api_conn_opened(s->guard, conn_fd(conn), &c);
		*socket_context = c;
	} else {
		api_conn_closed(s->guard, *socket_context);
		*socket_context = NULL;
	}
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
		struct api_conn *c = conn_of(conn);
		if (api_conn_over_limit(c)) {
			char msg[160];
			snprintf(msg, sizeof(msg),
				 "process %d already holds %d connections to this API, the most one process may "
				 "hold at once; close some and retry",
				 (int)api_conn_peer_pid(c), API_CONNECTIONS_PER_PEER);
			struct api_reply r = { .status = 429, .content_type = "application/json" };
			json_t *o = json_pack("{s:s}", "error", msg);
			r.body = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
			json_decref(o);
			r.len = r.body ? strlen(r.body) : 0;
			return send_reply(conn, &r, true);
		}
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
	if (!api_conn_request_received(s->guard, conn_of(conn)))
		return MHD_NO; /* cut by its deadline: the client was told nothing, so nothing is done */
	if (!is_read_only(method) && api_conn_peer_gone(conn_fd(conn))) {
		/* Its client gave up waiting: carrying it out now would surprise whoever retries. */
		log_warn("api", "%s %s not carried out: its client closed the connection before it could run", method,
			 url);
		return MHD_NO;
	}
	struct api_reply r;
	api_handle(&s->ctx, method, url, req->body, req->len, req->too_big, &r);
	return send_reply(conn, &r, false);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct api_server *s = cls;
	(void)toe;
	struct request *req = *con_cls;
	if (!req)
		return;
	api_conn_request_done(s->guard, conn_of(conn));
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
					 MHD_OPTION_NOTIFY_COMPLETED, on_completed, ds->s, MHD_OPTION_NOTIFY_CONNECTION,
					 on_connection, ds->s, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, ds->s,
					 MHD_OPTION_END);
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
	static const struct api_conn_limits limits = {
		.deadline_ms = API_REQUEST_DEADLINE_S * 1000,
		.per_peer = API_CONNECTIONS_PER_PEER,
		.over_limit_ms = API_OVER_LIMIT_GRACE_MS,
	};
	int rc = api_conn_guard_start(&s->guard, &limits);
	if (rc) {
		log_error("api", "cannot start the API server's connection watchdog: %s", strerror(-rc));
		free(s->path);
		free(s);
		return rc;
	}
	api_ctx_init(&s->ctx, vm);
	int fd = unix_socket_listen(path, "--api-sock");
	if (fd < 0) {
		api_conn_guard_stop(s->guard);
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
		api_conn_guard_stop(s->guard);
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
	api_conn_guard_stop(s->guard);
	if (lfd != MHD_INVALID_SOCKET)
		close(lfd);
	api_ctx_destroy(&s->ctx);
	if (unlink(s->path) < 0 && errno != ENOENT)
		log_warn("api", "cannot remove the API socket %s: %s", s->path, strerror(errno));
	free(s->path);
	free(s);
}
