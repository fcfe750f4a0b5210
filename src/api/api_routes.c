#include "api/api_routes.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api_balloon.h"
#include "api/api_metrics.h"
#include "config/config_json.h"
#include "lib/log.h"
#include "lib/util.h"
#include "memory/ksm.h"
#include "state/clone_identity.h"
#include "state/snapshot.h"
#include "vm/vm.h"

#define JSON_TYPE "application/json"

void api_ctx_init(struct api_ctx *ctx, struct vm *vm)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->vm = vm;
	api_shutdown_init(&ctx->shutdown, vm);
	api_migrate_init(&ctx->migrate);
}

void api_ctx_destroy(struct api_ctx *ctx)
{
	api_migrate_destroy(&ctx->migrate);
	api_shutdown_destroy(&ctx->shutdown);
}

static void reply_json(struct api_reply *r, unsigned int status, json_t *obj)
{
	r->status = status;
	r->content_type = JSON_TYPE;
	r->body = obj ? json_dumps(obj, JSON_INDENT(2) | JSON_REAL_PRECISION(12)) : NULL;
	json_decref(obj);
	if (!r->body) {
		r->status = 500;
		r->body = strdup("{\"error\": \"vmon ran out of memory building the reply\"}");
	}
	if (r->body) {
		/* A trailing newline keeps `curl` output readable on a terminal. */
		size_t n = strlen(r->body);
		char *b = realloc(r->body, n + 2);
		if (b) {
			b[n] = '\n';
			b[n + 1] = 0;
			r->body = b;
			n++;
		}
		r->len = n;
	}
}

static void reply_error(struct api_reply *r, unsigned int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void reply_error(struct api_reply *r, unsigned int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reply_json(r, status, json_pack("{s:s}", "error", msg));
}

static const char *json_type_phrase(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "a whole number";
	case JSON_REAL: return "a fractional number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "something else";
}

/*
 * Parses a request body that must be a JSON object whose keys are all in allowed (NULL-ended).
 * An empty body is an empty object when empty_ok. On error replies and returns NULL.
 */
static json_t *parse_body(struct api_reply *r, const char *route, const char *body, size_t len, bool empty_ok,
			  const char *const *allowed, const char *example)
{
	size_t i = 0;
	while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
		i++;
	if (i == len) {
		if (empty_ok)
			return json_object();
		reply_error(r, 400, "%s needs a JSON body, e.g. %s", route, example);
		return NULL;
	}
	json_error_t jerr;
	json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (!o) {
		reply_error(r, 400, "malformed JSON in the body of %s at line %d column %d: %s; send e.g. %s", route,
			    jerr.line, jerr.column, jerr.text, example);
		return NULL;
	}
	if (!json_is_object(o)) {
		reply_error(r, 400, "the body of %s must be a JSON object such as %s, not %s", route, example,
			    json_type_phrase(o));
		json_decref(o);
		return NULL;
	}
	const char *key;
	json_t *v;
	json_object_foreach(o, key, v) {
		bool known = false;
		for (const char *const *a = allowed; *a && !known; a++)
			known = !strcmp(key, *a);
		if (!known) {
			char list[128] = "";
			size_t used = 0;
			for (const char *const *a = allowed; *a && used < sizeof(list); a++)
				used += (size_t)snprintf(list + used, sizeof(list) - used, "%s\"%s\"", a == allowed ? "" : ", ", *a);
			if (allowed[0])
				reply_error(r, 400, "unknown key \"%.64s\" in the body of %s: it takes only %s", key, route, list);
			else
				reply_error(r, 400, "unknown key \"%.64s\" in the body of %s: it takes no keys (send {} or nothing)",
					    key, route);
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

static enum vm_state vm_state_now(struct vm *vm) { return (enum vm_state)atomic_load(&vm->state); }

/* What the guest sees of who it is: every card's MAC, the vsock CID, the generation ID (null: none). */
static json_t *identity_json(struct vm *vm)
{
	struct vm_identity id;
	vm_identity_read(vm, &id);
	json_t *macs = json_array();
	for (unsigned int i = 0; i < id.nmacs; i++) {
		char mac[18];
		clone_mac_format(id.macs[i], mac);
		json_array_append_new(macs, json_string(mac));
	}
	char genid[VMGENID_STR_LEN];
	vmgenid_format(id.genid, genid);
	return json_pack("{s:o, s:o, s:o}", "macs", macs, "vsock_cid",
			 id.has_cid ? json_integer(id.cid) : json_null(), "generation_id",
			 id.has_genid ? json_string(genid) : json_null());
}

/* How guest RAM is backed and, with merge=on, what the host's KSM shares of it. */
static void add_memory_info(json_t *o, const struct guest_mem *mem)
{
	json_object_set_new(o, "memory_backing", json_string(guest_mem_backing_name(mem)));
	json_object_set_new(o, "memory_page_bytes", json_integer((json_int_t)guest_mem_page_size(mem)));
	struct ksm_stats k;
	if (!mem->mergeable || ksm_read_stats(&k))
		return;
	json_t *ksm = json_pack("{s:I}", "merging_pages", (json_int_t)k.merging_pages);
	if (ksm && k.have_stat) {
		json_object_set_new(ksm, "zero_pages", json_integer((json_int_t)k.zero_pages));
		json_object_set_new(ksm, "profit_bytes", json_integer((json_int_t)k.profit_bytes));
		json_object_set_new(ksm, "rmap_items", json_integer((json_int_t)k.rmap_items));
	}
	if (ksm)
		json_object_set_new(o, "ksm", ksm);
}

static void get_vm(struct api_ctx *ctx, struct api_reply *r)
{
	struct vm *vm = ctx->vm;
	enum vm_state st = vm_state_now(vm);
	json_t *cfg = vm->cfg ? config_json_dump(vm->cfg) : json_object();
	/* Milliseconds are plenty, and keep the number short. */
	double uptime = vm->started_ns ? (double)((monotonic_ns() - vm->started_ns) / 1000000) / 1e3 : 0.0;
	enum vm_stop_reason why = (enum vm_stop_reason)atomic_load(&vm->stop_reason);
	json_t *o = json_pack("{s:s, s:f, s:I, s:I, s:i, s:o*}", "state", vm_state_name(st), "uptime_s", uptime,
			      "vcpus", (json_int_t)vm->ncpus, "memory_bytes",
			      (json_int_t)(vm->cfg ? vm->cfg->memory : 0), "pid", (int)getpid(), "config", cfg);
	if (o && why != VM_STOP_NONE)
		json_object_set_new(o, "stop_reason", json_string(vm_stop_reason_name(why)));
	if (o) {
		add_memory_info(o, &vm->mem);
		json_object_set_new(o, "identity", identity_json(vm));
	}
	reply_json(r, 200, o);
}

static void state_reply(struct api_reply *r, struct vm *vm)
{
	reply_json(r, 200, json_pack("{s:s}", "state", vm_state_name(vm_state_now(vm))));
}

static void put_state(struct api_ctx *ctx, const char *body, size_t len, struct api_reply *r)
{
	static const char *const keys[] = { "state", NULL };
	static const char example[] = "{\"state\": \"paused\"} or {\"state\": \"running\"}";
	json_t *o = parse_body(r, "PUT /vm/state", body, len, false, keys, example);
	if (!o)
		return;
	json_t *v = json_object_get(o, "state");
	const char *want = json_string_value(v);
	if (!v) {
		reply_error(r, 400, "the body of PUT /vm/state needs the key \"state\": send %s", example);
	} else if (!want) {
		reply_error(r, 400, "\"state\" must be a string, \"paused\" or \"running\", not %s", json_type_phrase(v));
	} else if (strcmp(want, "paused") && strcmp(want, "running")) {
		reply_error(r, 400, "\"state\" must be \"paused\" or \"running\", not \"%.64s\"", want);
	} else {
		struct vm *vm = ctx->vm;
		bool pause = !strcmp(want, "paused");
		if (!pause && api_migrate_switching(&ctx->migrate)) {
			reply_error(r, 409, "the VM is paused for a migration's switch: it runs on the destination next, "
					    "or here again by itself if the switch fails (DELETE /vm/migration cancels it)");
			json_decref(o);
			return;
		}
		int rc = pause ? vm_pause(vm) : vm_resume(vm);
		enum vm_state now = vm_state_now(vm);
		if (rc == 0 || rc == -EALREADY) {
			/* Already in the wanted state (perhaps by a concurrent request) counts as success. */
			if (rc == 0)
				log_info("api", "VM %s", pause ? "paused" : "resumed");
			state_reply(r, vm);
		} else if (rc == -ETIMEDOUT) {
			reply_error(r, 503, "pause timed out: a vCPU did not stop within the time limit; the VM keeps "
					    "running, try again");
		} else if (now == VM_STOPPED) {
			reply_error(r, 409, "the VM has stopped: it can no longer be %s", pause ? "paused" : "resumed");
		} else {
			reply_error(r, 409, "the VM is %s and cannot be %s now; try again once it is running",
				    vm_state_name(now), pause ? "paused" : "resumed");
		}
	}
	json_decref(o);
}

static void put_shutdown(struct api_ctx *ctx, const char *body, size_t len, struct api_reply *r)
{
	static const char *const keys[] = { "timeout_s", NULL };
	json_t *o = parse_body(r, "PUT /vm/shutdown", body, len, true, keys, "{\"timeout_s\": 30}");
	if (!o)
		return;
	unsigned int timeout = API_DEFAULT_SHUTDOWN_TIMEOUT_S;
	json_t *t = json_object_get(o, "timeout_s");
	if (t && !json_is_integer(t)) {
		reply_error(r, 400, "\"timeout_s\" must be a whole number of seconds (0 to %d), not %s",
			    API_MAX_SHUTDOWN_TIMEOUT_S, json_type_phrase(t));
		goto out;
	}
	if (t) {
		json_int_t n = json_integer_value(t);
		if (n < 0 || n > API_MAX_SHUTDOWN_TIMEOUT_S) {
			reply_error(r, 400, "\"timeout_s\" %lld is out of range: give 0 to %d seconds", (long long)n,
				    API_MAX_SHUTDOWN_TIMEOUT_S);
			goto out;
		}
		timeout = (unsigned int)n;
	}
	enum api_shutdown_result res = api_shutdown_start(&ctx->shutdown, timeout);
	const char *msg = NULL;
	switch (res) {
	case API_SHUTDOWN_SENT:
		msg = "Ctrl-Alt-Del sent to the guest; the VM stops when the guest shuts down, or when the timeout "
		      "expires";
		break;
	case API_SHUTDOWN_NO_KEYBOARD:
		msg = "the guest's keyboard is off, so Ctrl-Alt-Del could not be sent; the VM stops when the timeout "
		      "expires";
		break;
	case API_SHUTDOWN_ALREADY:
		msg = "a shutdown is already under way; its timeout is unchanged";
		break;
	default:
		break;
	}
	if (msg) {
		reply_json(r, 202, json_pack("{s:s, s:s, s:I}", "state", vm_state_name(vm_state_now(ctx->vm)), "message",
					     msg, "timeout_s", (json_int_t)ctx->shutdown.timeout_s));
		goto out;
	}
	switch (res) {
	case API_SHUTDOWN_NOT_RUNNING:
		reply_error(r, 409, "the VM is %s, not running: there is nothing to shut down",
			    vm_state_name(vm_state_now(ctx->vm)));
		break;
	case API_SHUTDOWN_FAILED:
		reply_error(r, 500, "vmon could not start the shutdown (no thread); use PUT /vm/stop");
		break;
	default:
		break;
	}
out:
	json_decref(o);
}

static void put_stop(struct api_ctx *ctx, const char *body, size_t len, struct api_reply *r)
{
	static const char *const keys[] = { NULL };
	json_t *o = parse_body(r, "PUT /vm/stop", body, len, true, keys, "{}");
	if (!o)
		return;
	json_decref(o);
	if (vm_state_now(ctx->vm) != VM_STOPPED)
		log_info("api", "stopping the VM (PUT /vm/stop)");
	/* Safe in any state, paused included: parked vCPUs wake up and leave. */
	vm_request_stop(ctx->vm, VM_STOP_SIGNAL, "stopped through the API (PUT /vm/stop)");
	state_reply(r, ctx->vm);
}

static void put_snapshot(struct api_ctx *ctx, const char *body, size_t len, struct api_reply *r)
{
	static const char *const keys[] = { "dir", "keep_running", "disks", NULL };
	static const char example[] = "{\"dir\": \"/path/to/snapshot\", \"keep_running\": true, \"disks\": \"overlay\"}";
	json_t *o = parse_body(r, "PUT /vm/snapshot", body, len, false, keys, example);
	if (!o)
		return;
	json_t *d = json_object_get(o, "dir");
	json_t *k = json_object_get(o, "keep_running");
	json_t *dk = json_object_get(o, "disks");
	enum snapshot_disks disks = SNAPSHOT_DISKS_AUTO;
	if (!d || !json_is_string(d) || !*json_string_value(d)) {
		reply_error(r, 400, "PUT /vm/snapshot needs \"dir\", the directory to write, as a non-empty string: send %s",
			    example);
	} else if (k && !json_is_boolean(k)) {
		reply_error(r, 400, "\"keep_running\" must be true or false, not %s", json_type_phrase(k));
	} else if (dk && (!json_is_string(dk) || !strcmp(json_string_value(dk), "auto") ||
			  snapshot_disks_parse(json_string_value(dk), &disks))) {
		reply_error(r, 400, "\"disks\" must be \"overlay\" or \"none\"");
	} else {
		char err[512];
		uint64_t t0 = monotonic_ns();
		int rc = vmon_snapshot_save(ctx->vm, json_string_value(d), k ? json_is_true(k) : true, disks, err,
					    sizeof(err));
		if (rc == 0) {
			log_info("api", "snapshot written to %s", json_string_value(d));
			reply_json(r, 200, json_pack("{s:s, s:s, s:f}", "state", vm_state_name(vm_state_now(ctx->vm)), "dir",
						     json_string_value(d), "took_s",
						     (double)((monotonic_ns() - t0) / 1000000) / 1e3));
		} else if (rc == -EBUSY || rc == -EAGAIN) {
			reply_error(r, 409, "%s", err);
		} else if (rc == -ETIMEDOUT) {
			reply_error(r, 503, "%s", err);
		} else {
			log_error("api", "snapshot to %s failed: %s", json_string_value(d), err);
			reply_error(r, 500, "%s", err);
		}
	}
	json_decref(o);
}

static void get_metrics(struct api_ctx *ctx, struct api_reply *r)
{
	size_t len = 0;
	char *text = api_metrics_render(ctx->vm, &len);
	if (!text) {
		reply_error(r, 500, "vmon ran out of memory rendering the metrics");
		return;
	}
	r->status = 200;
	r->content_type = API_METRICS_CONTENT_TYPE;
	r->body = text;
	r->len = len;
}

enum route_id { ROUTE_INDEX, ROUTE_VM, ROUTE_STATE, ROUTE_SHUTDOWN, ROUTE_STOP, ROUTE_METRICS, ROUTE_SNAPSHOT, ROUTE_BALLOON, ROUTE_MIGRATE };

static const struct route {
	const char *path;
	const char *method;
	enum route_id id;
	const char *what;
} routes[] = {
	{ "/", "GET", ROUTE_INDEX, "this list" },
	{ "/vm", "GET", ROUTE_VM, "state, configuration, uptime, vCPUs, memory, identity" },
	{ "/vm/state", "PUT", ROUTE_STATE, "{\"state\": \"paused\"|\"running\"}: pause or resume" },
	{ "/vm/shutdown", "PUT", ROUTE_SHUTDOWN, "Ctrl-Alt-Del, then a hard stop after timeout_s" },
	{ "/vm/stop", "PUT", ROUTE_STOP, "stop the VM now" },
	{ "/metrics", "GET", ROUTE_METRICS, "Prometheus metrics" },
	{ "/vm/snapshot", "PUT", ROUTE_SNAPSHOT, "{\"dir\": PATH, \"keep_running\": true}: write a snapshot" },
	{ "/balloon", "GET", ROUTE_BALLOON, "the balloon: target, actual, the guest's memory statistics" },
	{ "/balloon", "PUT", ROUTE_BALLOON, "{\"target_mib\": N}: leave the guest N MiB of RAM" },
	{ "/vm/migrate", "PUT", ROUTE_MIGRATE, "{\"destination\": \"tcp:HOST:PORT\"}: live-migrate the VM there" },
	{ "/vm/migration", "GET", ROUTE_MIGRATE, "the running migration's progress, or the last one's outcome" },
	{ "/vm/migration", "DELETE", ROUTE_MIGRATE, "cancel the running migration; the guest keeps running here" },
};

static void get_index(struct api_reply *r)
{
	json_t *list = json_array();
	for (size_t i = 0; i < ARRAY_SIZE(routes); i++)
		json_array_append_new(list, json_pack("{s:s, s:s, s:s}", "method", routes[i].method, "path",
						      routes[i].path, "description", routes[i].what));
	reply_json(r, 200, json_pack("{s:o}", "routes", list));
}

static void route_list(char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = 0;
	for (size_t i = 1; i < ARRAY_SIZE(routes) && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s %s", i > 1 ? ", " : "", routes[i].method,
					 routes[i].path);
}

void api_handle(struct api_ctx *ctx, const char *method, const char *path, const char *body, size_t len,
		bool body_too_big, struct api_reply *r)
{
	memset(r, 0, sizeof(*r));
	atomic_fetch_add(&ctx->requests, 1);
	const struct route *rt = NULL;
	bool path_known = false;
	for (size_t i = 0; i < ARRAY_SIZE(routes) && !rt; i++) {
		if (strcmp(path, routes[i].path))
			continue;
		path_known = true;
		if (!strcmp(method, routes[i].method) || (!strcmp(method, "HEAD") && !strcmp(routes[i].method, "GET")))
			rt = &routes[i];
		else
			r->allow = routes[i].method;
	}
	if (!rt) {
		char list[256];
		route_list(list, sizeof(list));
		if (path_known)
			reply_error(r, 405, "%.16s is not allowed on %.128s: use %s", method, path, r->allow);
		else
			reply_error(r, 404, "no such route: %.16s %.128s; the routes are %s", method, path, list);
	} else if (body_too_big) {
		reply_error(r, 413, "the request body is larger than %d bytes; send a smaller JSON object", API_MAX_BODY);
	} else {
		switch (rt->id) {
		case ROUTE_INDEX: get_index(r); break;
		case ROUTE_VM: get_vm(ctx, r); break;
		case ROUTE_STATE: put_state(ctx, body, len, r); break;
		case ROUTE_SHUTDOWN: put_shutdown(ctx, body, len, r); break;
		case ROUTE_STOP: put_stop(ctx, body, len, r); break;
		case ROUTE_METRICS: get_metrics(ctx, r); break;
		case ROUTE_SNAPSHOT: put_snapshot(ctx, body, len, r); break;
		case ROUTE_MIGRATE: { json_t *o; unsigned int st = api_migrate_handle(&ctx->migrate, ctx->vm, method, body, len, &o); reply_json(r, st, o); break; }
		case ROUTE_BALLOON: { json_t *o; unsigned int st = api_balloon_handle(ctx->vm, method, body, len, &o); reply_json(r, st, o); break; }
		}
	}
	if (r->status >= 400 && r->status < 500)
		atomic_fetch_add(&ctx->client_errors, 1);
	if (r->status >= 400)
		log_debug("api", "%s %s -> %u", method, path, r->status);
}
