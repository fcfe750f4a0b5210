#include "config/config_memory.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config/config_json.h"
#include "lib/util.h"

#define SPEC_MAX 256
#define USAGE "--memory SIZE[,merge=on|off][,hugepages=on|off]"

/* The settings after the size ("merge=on,hugepages=off", modified in place); a sentence in msg on error. */
static int parse_settings(char *list, bool *merge, bool *hugepages, char *msg, size_t msglen)
{
	char *save = NULL;
	for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		const char *val = eq ? eq + 1 : "";
		if (eq)
			*eq = 0;
		bool *flag = !strcmp(tok, "merge") ? merge : !strcmp(tok, "hugepages") ? hugepages : NULL;
		if (!flag) {
			snprintf(msg, msglen, "unknown setting '%.32s'; use " USAGE, tok);
			return -EINVAL;
		}
		if (strcmp(val, "on") && strcmp(val, "off")) {
			snprintf(msg, msglen, "%s takes on or off, not '%.32s'", tok, val);
			return -EINVAL;
		}
		*flag = !strcmp(val, "on");
	}
	return 0;
}

/* What one --memory value or "memory" key says. */
struct memory_spec {
	uint64_t size;
	bool merge, hugepages;
};

/* Sets cfg from m; returns rc, so that a parse's result is passed on in one line. */
static int put_spec(struct vm_config *cfg, const struct memory_spec *m, int rc)
{
	if (rc)
		return rc;
	cfg->memory = m->size;
	cfg->memory_merge = m->merge;
	cfg->memory_hugepages = m->hugepages;
	return 0;
}

/* "SIZE[,settings]" into *m; which prefixes messages ("--memory", "key \"memory\""). */
static int parse_spec(const char *spec, const char *which, struct memory_spec *m, char *err, size_t errlen)
{
	if (strlen(spec) >= SPEC_MAX) {
		snprintf(err, errlen, "%s: the value is too long; use " USAGE, which);
		return -EINVAL;
	}
	char buf[SPEC_MAX];
	snprintf(buf, sizeof(buf), "%s", spec);
	char *comma = strchr(buf, ',');
	if (comma)
		*comma = 0;
	if (parse_size(buf, &m->size)) {
		snprintf(err, errlen, "%s: '%.32s' is not a size: give e.g. 256M or 2G, then any of merge=on, hugepages=on",
			 which, buf);
		return -EINVAL;
	}
	char msg[200];
	if (comma && parse_settings(comma + 1, &m->merge, &m->hugepages, msg, sizeof(msg))) {
		snprintf(err, errlen, "%s: %s", which, msg);
		return -EINVAL;
	}
	return 0;
}

int config_memory_parse(const char *spec, struct vm_config *cfg, char *err, size_t errlen)
{
	struct memory_spec m = { .merge = cfg->memory_merge, .hugepages = cfg->memory_hugepages };
	return put_spec(cfg, &m, parse_spec(spec, "--memory", &m, err, errlen));
}

static int size_from_json(const json_t *v, const char *key, uint64_t *size, char *err, size_t errlen)
{
	if (json_is_integer(v)) {
		json_int_t n = json_integer_value(v);
		if (n <= 0) {
			snprintf(err, errlen, "key \"%s\": %lld bytes is impossible, expected a size such as \"256M\" or a "
					      "positive number of bytes", key, (long long)n);
			return -EINVAL;
		}
		*size = (uint64_t)n;
		return 0;
	}
	if (json_is_string(v) && !parse_size(json_string_value(v), size))
		return 0;
	if (json_is_string(v))
		snprintf(err, errlen, "key \"%s\": \"%.64s\" is not a size, expected e.g. \"256M\" or \"2G\"", key,
			 json_string_value(v));
	else
		snprintf(err, errlen, "key \"%s\": expected a size such as \"256M\" or a number of bytes, got %s", key,
			 config_json_type_phrase(v));
	return -EINVAL;
}

static int memory_object(const json_t *v, const char *key, struct memory_spec *m, char *err, size_t errlen)
{
	const char *k;
	json_t *val;
	bool have_size = false;
	json_object_foreach((json_t *)v, k, val) {
		bool *flag = !strcmp(k, "merge") ? &m->merge : !strcmp(k, "hugepages") ? &m->hugepages : NULL;
		char sub[80];
		snprintf(sub, sizeof(sub), "%s\".\"%s", key, k);
		if (!strcmp(k, "size")) {
			if (size_from_json(val, sub, &m->size, err, errlen))
				return -EINVAL;
			have_size = true;
		} else if (flag && json_is_boolean(val)) {
			*flag = json_is_true(val);
		} else if (flag) {
			snprintf(err, errlen, "key \"%s\": expected true or false, got %s", sub, config_json_type_phrase(val));
			return -EINVAL;
		} else {
			snprintf(err, errlen, "unknown key \"%.64s\" in \"%s\": the keys are size, merge, hugepages", k, key);
			return -EINVAL;
		}
	}
	if (!have_size) {
		snprintf(err, errlen, "key \"%s\": the object needs \"size\", e.g. {\"size\": \"1G\", \"hugepages\": true}",
			 key);
		return -EINVAL;
	}
	return 0;
}

int config_memory_from_json(struct vm_config *cfg, const char *key, const json_t *v, char *err, size_t errlen)
{
	struct memory_spec m = { 0 };
	int rc;
	if (json_is_object(v)) {
		rc = memory_object(v, key, &m, err, errlen);
	} else if (json_is_string(v) && strchr(json_string_value(v), ',')) {
		char which[80];
		snprintf(which, sizeof(which), "key \"%s\"", key);
		rc = parse_spec(json_string_value(v), which, &m, err, errlen);
	} else if (json_is_integer(v) || json_is_string(v)) {
		rc = size_from_json(v, key, &m.size, err, errlen);
	} else {
		snprintf(err, errlen,
			 "key \"%s\": expected a size such as \"256M\", a number of bytes or an object such as "
			 "{\"size\": \"1G\", \"hugepages\": true}, got %s",
			 key, config_json_type_phrase(v));
		rc = -EINVAL;
	}
	return put_spec(cfg, &m, rc);
}

json_t *config_memory_to_json(const struct vm_config *cfg)
{
	if (!cfg->memory_merge && !cfg->memory_hugepages)
		return json_integer((json_int_t)cfg->memory);
	return json_pack("{s:I, s:b, s:b}", "size", (json_int_t)cfg->memory, "merge", cfg->memory_merge, "hugepages",
			 cfg->memory_hugepages);
}

uint64_t config_memory_size_of_json(const json_t *v)
{
	if (json_is_object(v))
		v = json_object_get(v, "size");
	return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

int config_memory_validate(const struct vm_config *cfg, char *err, size_t errlen)
{
	if (cfg->memory_merge && cfg->memory_hugepages) {
		snprintf(err, errlen, "--memory (\"memory\"): merge=on and hugepages=on cannot be combined: the host's KSM "
				      "never merges hugetlbfs pages; choose one");
		return -EINVAL;
	}
	return 0;
}
