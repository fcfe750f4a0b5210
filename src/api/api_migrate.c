#include "api/api_migrate.h"
#include "api/api_json.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vm/vm.h"

#define EXAMPLE "{\"destination\": \"tcp:192.0.2.10:4444\", \"max_downtime_ms\": 300}"
#define KEYS "\"destination\", \"max_downtime_ms\", \"postcopy\", \"bandwidth_mbps\""

const char *api_migrate_vmon_version = "unknown";

static void describe_real(struct api_migrate *m, struct vm *vm, struct migrate_source_vm *out)
{
	migrate_vm_describe(vm, api_migrate_vmon_version, &m->vm_ctx, out);
}

void api_migrate_init(struct api_migrate *m)
{
	memset(m, 0, sizeof(*m));
	pthread_mutex_init(&m->lock, NULL);
	m->describe = describe_real;
	m->start = migrate_source_start;
}

void api_migrate_destroy(struct api_migrate *m)
{
	if (m->src)
		migrate_source_cancel(m->src);
	migrate_source_free(m->src);
	m->src = NULL;
	pthread_mutex_destroy(&m->lock);
}

bool api_migrate_switching(struct api_migrate *m)
{
	pthread_mutex_lock(&m->lock);
	struct migrate_progress pr = { .state = MIGRATE_NONE };
	if (m->src)
		migrate_source_progress(m->src, &pr);
	pthread_mutex_unlock(&m->lock);
	return pr.state == MIGRATE_STOPPED || pr.state == MIGRATE_POSTCOPY;
}

json_t *api_migrate_progress_json(const struct migrate_progress *p)
{
	return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s}", "state",
			 migrate_state_name(p->state), "destination", p->destination, "round", (json_int_t)p->round,
			 "bytes_sent", (json_int_t)p->bytes_sent, "pages_remaining", (json_int_t)p->pages_remaining,
			 "dirty_pages_per_s", (json_int_t)p->dirty_rate_pps, "bandwidth_bytes_per_s",
			 (json_int_t)p->bandwidth_bps, "expected_downtime_ms", (json_int_t)p->expected_downtime_ms,
			 "throttle_pct", (json_int_t)p->throttle_pct, "downtime_ms", (json_int_t)p->downtime_ms,
			 "total_ms", (json_int_t)p->total_ms, "reason", p->reason);
}

/* A whole number of at most max from key, or a 400 in *out. */
static bool get_uint(json_t *o, const char *key, uint32_t max, uint32_t *v, unsigned int *st, json_t **out)
{
	json_t *j = json_object_get(o, key);
	if (!j)
		return true;
	if (!json_is_integer(j) || json_integer_value(j) < 0 || json_integer_value(j) > max) {
		*st = api_json_error(out, 400, "PUT /vm/migrate: \"%s\" must be a whole number from 0 to %u", key, max);
		return false;
	}
	*v = (uint32_t)json_integer_value(j);
	return true;
}

static unsigned int put_migrate(struct api_migrate *m, struct vm *vm, const char *body, size_t len, json_t **out)
{
	json_error_t jerr;
	json_t *o = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o || !json_is_object(o)) {
		json_decref(o);
		return api_json_error(out, 400, "PUT /vm/migrate needs a JSON object as its body, e.g. %s", EXAMPLE);
	}
	unsigned int st = 0;
	const char *key;
	json_t *val;
	json_object_foreach(o, key, val) {
		if (strcmp(key, "destination") && strcmp(key, "max_downtime_ms") && strcmp(key, "postcopy") &&
		    strcmp(key, "bandwidth_mbps")) {
			st = api_json_error(out, 400, "unknown key \"%.64s\" in the body of PUT /vm/migrate: it takes only %s", key,
				   KEYS);
			break;
		}
	}
	struct migrate_params p = { .max_downtime_ms = 300 };
	json_t *d = json_object_get(o, "destination");
	json_t *pc = json_object_get(o, "postcopy");
	if (!st && (!json_is_string(d) || !*json_string_value(d)))
		st = api_json_error(out, 400, "PUT /vm/migrate needs \"destination\", where vmon receive listens, as a string: "
				     "send e.g. %s", EXAMPLE);
	else if (!st && strlen(json_string_value(d)) >= sizeof(p.destination))
		st = api_json_error(out, 400, "PUT /vm/migrate: \"destination\" is longer than %zu characters",
			   sizeof(p.destination) - 1);
	else if (!st && pc && !json_is_boolean(pc))
		st = api_json_error(out, 400, "PUT /vm/migrate: \"postcopy\" must be true or false");
	if (!st && get_uint(o, "max_downtime_ms", 600000, &p.max_downtime_ms, &st, out) &&
	    get_uint(o, "bandwidth_mbps", 1000000, &p.bandwidth_mbps, &st, out) && p.max_downtime_ms == 0)
		st = api_json_error(out, 400, "PUT /vm/migrate: \"max_downtime_ms\" must be at least 1");
	if (st) {
		json_decref(o);
		return st;
	}
	snprintf(p.destination, sizeof(p.destination), "%s", json_string_value(d));
	p.postcopy = pc && json_is_true(pc);
	json_decref(o);

	pthread_mutex_lock(&m->lock);
	if (m->src && migrate_source_running(m->src)) {
		pthread_mutex_unlock(&m->lock);
		return api_json_error(out, 409, "a migration is already running (GET /vm/migration shows it); cancel it with "
				       "DELETE /vm/migration first");
	}
	enum vm_state state = (enum vm_state)atomic_load(&vm->state);
	if (state != VM_RUNNING && state != VM_PAUSED) {
		pthread_mutex_unlock(&m->lock);
		return api_json_error(out, 409, "the VM is %s: only a running or paused VM can be migrated", vm_state_name(state));
	}
	migrate_source_free(m->src);
	m->src = NULL;
	struct migrate_source_vm svm;
	m->describe(m, vm, &svm);
	char err[600] = "";
	int rc = m->start(&m->src, &p, &svm, err, sizeof(err));
	if (rc) {
		pthread_mutex_unlock(&m->lock);
		return api_json_error(out, rc == -EINVAL ? 400 : 500, "%s", err);
	}
	struct migrate_progress pr;
	migrate_source_progress(m->src, &pr);
	pthread_mutex_unlock(&m->lock);
	*out = api_migrate_progress_json(&pr);
	return 202;
}

unsigned int api_migrate_handle(struct api_migrate *m, struct vm *vm, const char *method, const char *body, size_t len,
				json_t **out)
{
	if (!strcmp(method, "PUT"))
		return put_migrate(m, vm, body, len, out);
	pthread_mutex_lock(&m->lock);
	struct migrate_progress pr;
	memset(&pr, 0, sizeof(pr));
	if (m->src)
		migrate_source_progress(m->src, &pr);
	unsigned int st = 200;
	if (!strcmp(method, "DELETE")) {
		if (!m->src || !migrate_source_running(m->src))
			st = api_json_error(out, 409, "no migration is running; start one with PUT /vm/migrate");
		else
			migrate_source_cancel(m->src);
	}
	pthread_mutex_unlock(&m->lock);
	if (st == 200)
		*out = api_migrate_progress_json(&pr);
	return st;
}
