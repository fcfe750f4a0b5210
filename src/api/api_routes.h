/*
 * The control API's routes, independent of the HTTP server so they can be tested on their own:
 * a request (method, path, body) goes in, a reply (status, content type, body) comes out. Every
 * error reply is a JSON object {"error": "one sentence naming the problem"}. Handlers only call
 * the VM's thread-safe control functions (vm_pause, vm_resume, vm_request_stop) and read
 * atomics, so concurrent requests cannot corrupt the VM and never block a vCPU.
 */
#ifndef VMON_API_API_ROUTES_H
#define VMON_API_API_ROUTES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api_migrate.h"
#include "api/api_shutdown.h"

struct vm;

#define API_MAX_BODY (64 * 1024)            /* larger request bodies get 413 */
#define API_DEFAULT_SHUTDOWN_TIMEOUT_S 30   /* PUT /vm/shutdown without "timeout_s" */
#define API_MAX_SHUTDOWN_TIMEOUT_S 3600

struct api_ctx {
	struct vm *vm;
	struct api_shutdown shutdown;
	struct api_migrate migrate;
	_Atomic uint64_t requests;
	_Atomic uint64_t client_errors; /* 4xx replies */
};

struct api_reply {
	unsigned int status;
	const char *content_type;
	const char *allow; /* the Allow header of a 405 reply, else NULL */
	char *body;        /* malloc'ed; the caller frees it */
	size_t len;
};

void api_ctx_init(struct api_ctx *ctx, struct vm *vm);
/* Joins the shutdown watchdog; call before vm_destroy(). */
void api_ctx_destroy(struct api_ctx *ctx);

/*
 * Handles one request. body may be NULL when len is 0; body_too_big says the server dropped a
 * body larger than API_MAX_BODY. Always fills reply (status 500 with a short body if even that
 * cannot be allocated).
 */
void api_handle(struct api_ctx *ctx, const char *method, const char *path, const char *body, size_t len,
		bool body_too_big, struct api_reply *reply);

#endif
