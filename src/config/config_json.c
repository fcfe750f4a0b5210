#include "config/config_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_disk.h"
#include "config/config_memory.h"
#include "lib/log.h"
#include "lib/user_file.h"
#include "lib/util.h"

const char *config_json_type_phrase(const json_t *v)
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

static int wrong_type(const char *key, const char *expected, const json_t *v, char *err, size_t errlen)
{
	snprintf(err, errlen, "key \"%s\": expected %s, got %s", key, expected, config_json_type_phrase(v));
	return -EINVAL;
}

static int set_string(char **field, const char *key, const json_t *v, bool allow_empty, char *err,
		      size_t errlen)
{
	if (json_is_null(v)) { /* null unsets, as config_json_dump writes it */
		free(*field);
		*field = NULL;
		return 0;
	}
	if (!json_is_string(v))
		return wrong_type(key, "a string", v, err, errlen);
	const char *s = json_string_value(v);
	if (!allow_empty && !*s) {
		snprintf(err, errlen, "key \"%s\": expected a non-empty string", key);
		return -EINVAL;
	}
	if (strlen(s) != json_string_length(v)) {
		snprintf(err, errlen, "key \"%s\": the string contains a NUL character", key);
		return -EINVAL;
	}
	char *copy = strdup(s);
	if (!copy)
		return -ENOMEM;
	free(*field);
	*field = copy;
	return 0;
}

/* Every double of magnitude 2^53 or more is a whole number; below, the cast is exact. */
static bool is_whole(double x)
{
	return x >= 9007199254740992.0 || x <= -9007199254740992.0 || (double)(long long)x == x;
}

static int set_cpus(struct vm_config *cfg, const char *key, const json_t *v, char *err, size_t errlen)
{
	/* JSON has one number type: 1e300 is a whole number, just far out of range. */
	if (json_is_real(v) && is_whole(json_real_value(v))) {
		double n = json_real_value(v);
		if (n < 1 || n > CONFIG_MAX_CPUS) {
			snprintf(err, errlen, "key \"%s\": %g is out of range, expected a number from 1 to %d", key,
				 n, CONFIG_MAX_CPUS);
			return -EINVAL;
		}
		cfg->cpus = (unsigned int)n;
		return 0;
	}
	if (!json_is_integer(v))
		return wrong_type(key, "a whole number of vCPUs (1 to 254)", v, err, errlen);
	json_int_t n = json_integer_value(v);
	if (n < 1 || n > CONFIG_MAX_CPUS) {
		snprintf(err, errlen, "key \"%s\": %lld is out of range, expected a number from 1 to %d", key,
			 (long long)n, CONFIG_MAX_CPUS);
		return -EINVAL;
	}
	cfg->cpus = (unsigned int)n;
	return 0;
}

static int set_workarounds(struct vm_config *cfg, const char *key, const json_t *v, char *err, size_t errlen)
{
	if (!json_is_string(v))
		return wrong_type(key, "\"auto\", \"on\" or \"off\"", v, err, errlen);
	int w = config_parse_workarounds(json_string_value(v));
	if (w < 0) {
		snprintf(err, errlen, "key \"%s\": \"%s\" is not allowed, expected \"auto\", \"on\" or \"off\"", key,
			 json_string_value(v));
		return -EINVAL;
	}
	cfg->workarounds = (enum host_workarounds)w;
	return 0;
}

static int set_seccomp(struct vm_config *cfg, const char *key, const json_t *v, char *err, size_t errlen)
{
	if (!json_is_string(v))
		return wrong_type(key, "\"on\", \"log\" or \"off\"", v, err, errlen);
	int m = config_parse_seccomp(json_string_value(v));
	if (m < 0) {
		snprintf(err, errlen, "key \"%s\": \"%s\" is not allowed, expected \"on\", \"log\" or \"off\"", key,
			 json_string_value(v));
		return -EINVAL;
	}
	cfg->seccomp = (enum seccomp_mode)m;
	return 0;
}

static int set_log_level(struct vm_config *cfg, const char *key, const json_t *v, char *err, size_t errlen)
{
	if (!json_is_string(v))
		return wrong_type(key, "\"error\", \"warn\", \"info\" or \"debug\"", v, err, errlen);
	if (log_parse_level(json_string_value(v)) < 0) {
		snprintf(err, errlen, "key \"%s\": \"%s\" is not a log level, expected \"error\", \"warn\", "
				      "\"info\" or \"debug\"", key, json_string_value(v));
		return -EINVAL;
	}
	return set_string(&cfg->log_level, key, v, false, err, errlen);
}

/* "net": an array of --net values (strings); it replaces the whole list. */
static int set_nets(struct vm_config *cfg, const char *key, const json_t *v, char *err, size_t errlen)
{
	if (!json_is_array(v))
		return wrong_type(key, "an array of --net values such as [\"user\"]", v, err, errlen);
	if (json_array_size(v) > CONFIG_MAX_NICS) {
		snprintf(err, errlen, "key \"%s\": %zu network cards, at most %d are supported", key,
			 json_array_size(v), CONFIG_MAX_NICS);
		return -EINVAL;
	}
	char *nets[CONFIG_MAX_NICS] = { 0 };
	size_t i;
	json_t *item;
	int rc = 0;
	json_array_foreach(v, i, item) {
		if (!json_is_string(item) || !*json_string_value(item)) {
			rc = wrong_type(key, "an array of non-empty strings such as [\"user,hostfwd=tcp:8080-:80\"]", item,
					err, errlen);
			break;
		}
		if ((rc = set_string(&nets[i], key, item, false, err, errlen)))
			break;
	}
	if (rc) {
		for (size_t j = 0; j < CONFIG_MAX_NICS; j++)
			free(nets[j]);
		return rc;
	}
	for (unsigned int j = 0; j < cfg->nnets; j++)
		free(cfg->nets[j]);
	memcpy(cfg->nets, nets, sizeof(nets));
	cfg->nnets = (unsigned int)json_array_size(v);
	return 0;
}

static int set_bool(bool *field, const char *key, const json_t *v, char *err, size_t errlen)
{
	if (!json_is_boolean(v))
		return wrong_type(key, "true or false", v, err, errlen);
	*field = json_is_true(v);
	return 0;
}

enum key_kind { KEY_PATH, KEY_TEXT, KEY_BOOL, KEY_CPUS, KEY_MEMORY, KEY_WORKAROUNDS, KEY_LOG_LEVEL, KEY_NET, KEY_DISKS, KEY_SECCOMP, KEY_BALLOON };

static const struct config_key {
	const char *name;
	enum key_kind kind;
	size_t offset; /* of the char * field (KEY_PATH, KEY_TEXT) or the bool field (KEY_BOOL) */
} config_keys[] = {
	{ "kernel", KEY_PATH, offsetof(struct vm_config, kernel_path) },
	{ "initrd", KEY_PATH, offsetof(struct vm_config, initrd_path) },
	{ "cmdline", KEY_TEXT, offsetof(struct vm_config, cmdline) },
	{ "cpus", KEY_CPUS, 0 },
	{ "memory", KEY_MEMORY, 0 },
	{ "host_workarounds", KEY_WORKAROUNDS, 0 },
	{ "log_level", KEY_LOG_LEVEL, 0 },
	{ "log_file", KEY_PATH, offsetof(struct vm_config, log_file) },
	{ "api_sock", KEY_PATH, offsetof(struct vm_config, api_sock) },
	{ "name", KEY_PATH, offsetof(struct vm_config, name) },
	{ "net", KEY_NET, 0 },
	{ "disks", KEY_DISKS, 0 },
	{ "console2", KEY_PATH, offsetof(struct vm_config, console2) },
	{ "vsock", KEY_PATH, offsetof(struct vm_config, vsock) },
	{ "rng", KEY_BOOL, offsetof(struct vm_config, rng) },
	{ "seccomp", KEY_SECCOMP, 0 },
	{ "landlock", KEY_BOOL, offsetof(struct vm_config, landlock) },
	{ "snapshot_dir", KEY_PATH, offsetof(struct vm_config, snapshot_dir) },
	{ "balloon", KEY_BALLOON, 0 },
};

static int apply_key(struct vm_config *cfg, const struct config_key *k, const json_t *v, char *err, size_t errlen)
{
	switch (k->kind) {
	case KEY_PATH:
	case KEY_TEXT:
		return set_string((char **)((char *)cfg + k->offset), k->name, v, k->kind == KEY_TEXT, err, errlen);
	case KEY_BOOL: return set_bool((bool *)((char *)cfg + k->offset), k->name, v, err, errlen);
	case KEY_CPUS: return set_cpus(cfg, k->name, v, err, errlen);
	case KEY_MEMORY: return config_memory_from_json(cfg, k->name, v, err, errlen);
	case KEY_WORKAROUNDS: return set_workarounds(cfg, k->name, v, err, errlen);
	case KEY_LOG_LEVEL: return set_log_level(cfg, k->name, v, err, errlen);
	case KEY_NET: return set_nets(cfg, k->name, v, err, errlen);
	case KEY_DISKS: return config_disks_from_json(cfg, k->name, v, err, errlen);
	case KEY_SECCOMP: return set_seccomp(cfg, k->name, v, err, errlen);
	case KEY_BALLOON: return config_balloon_from_json(&cfg->balloon, k->name, v, err, errlen);
	}
	return -EINVAL;
}

static void known_keys(char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = 0;
	for (size_t i = 0; i < ARRAY_SIZE(config_keys) && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", config_keys[i].name);
}

int config_json_apply(struct vm_config *cfg, const json_t *obj, char *err, size_t errlen)
{
	if (!json_is_object(obj)) {
		snprintf(err, errlen, "expected a JSON object ({\"kernel\": ..., ...}), got %s", config_json_type_phrase(obj));
		return -EINVAL;
	}
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)obj, key, v) {
		const struct config_key *k = NULL;
		for (size_t i = 0; i < ARRAY_SIZE(config_keys) && !k; i++)
			if (!strcmp(key, config_keys[i].name))
				k = &config_keys[i];
		if (!k) {
			char keys[256];
			known_keys(keys, sizeof(keys));
			snprintf(err, errlen, "unknown key \"%.64s\": the keys are %s", key, keys);
			return -EINVAL;
		}
		int rc = apply_key(cfg, k, v, err, errlen);
		if (rc)
			return rc;
	}
	return 0;
}

int config_json_apply_text(struct vm_config *cfg, const char *text, const char *what, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root = json_loads(text, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (!root) {
		snprintf(err, errlen, "%s is not valid JSON: line %d column %d: %s", what, jerr.line, jerr.column,
			 jerr.text);
		return -EINVAL;
	}
	char inner[400];
	int rc = config_json_apply(cfg, root, inner, sizeof(inner));
	if (rc)
		snprintf(err, errlen, "%s: %s", what, inner);
	json_decref(root);
	return rc;
}

/* Config files are small; a bigger one is a mistake (e.g. --config pointing at a kernel). */
#define CONFIG_FILE_MAX (1024 * 1024)

int config_json_load_file(struct vm_config *cfg, const char *path, char *err, size_t errlen)
{
	uint8_t *data;
	size_t len;
	int rc = read_file(path, CONFIG_FILE_MAX, &data, &len);
	if (rc == -EFBIG) {
		snprintf(err, errlen, "config file %s is not a JSON text file (larger than 1 MiB)", path);
		return -EINVAL;
	}
	if (rc == -EINVAL)
		return not_regular_file_error(path, "config file", err, errlen);
	if (rc) {
		snprintf(err, errlen, "cannot read config file %s: %s", path, strerror(-rc));
		return rc;
	}
	if (memchr(data, 0, len)) {
		snprintf(err, errlen, "config file %s is not a JSON text file (binary)", path);
		free(data);
		return -EINVAL;
	}
	char *text = malloc(len + 1);
	if (!text) {
		free(data);
		return -ENOMEM;
	}
	memcpy(text, data, len);
	text[len] = 0;
	free(data);
	char what[300];
	snprintf(what, sizeof(what), "config file %s", path);
	rc = config_json_apply_text(cfg, text, what, err, errlen);
	free(text);
	return rc;
}

static int put_string(json_t *obj, const char *key, const char *s)
{
	return json_object_set_new(obj, key, s ? json_string(s) : json_null());
}

json_t *config_json_dump(const struct vm_config *cfg)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	int rc = put_string(o, "kernel", cfg->kernel_path);
	rc |= put_string(o, "initrd", cfg->initrd_path);
	rc |= put_string(o, "cmdline", cfg->cmdline);
	rc |= json_object_set_new(o, "cpus", json_integer(cfg->cpus));
	json_t *memory = config_memory_to_json(cfg);
	rc |= memory ? json_object_set_new(o, "memory", memory) : -1;
	rc |= put_string(o, "host_workarounds", config_workarounds_name(cfg->workarounds));
	rc |= put_string(o, "log_level", cfg->log_level ? cfg->log_level : "info");
	rc |= put_string(o, "log_file", cfg->log_file);
	rc |= put_string(o, "api_sock", cfg->api_sock);
	rc |= put_string(o, "name", cfg->name);
	json_t *nets = json_array();
	for (unsigned int i = 0; nets && i < cfg->nnets && i < CONFIG_MAX_NICS; i++)
		rc |= json_array_append_new(nets, json_string(cfg->nets[i]));
	rc |= nets ? json_object_set_new(o, "net", nets) : -1;
	json_t *disks = config_disks_to_json(cfg);
	rc |= disks ? json_object_set_new(o, "disks", disks) : -1;
	rc |= put_string(o, "console2", cfg->console2);
	rc |= put_string(o, "vsock", cfg->vsock);
	rc |= json_object_set_new(o, "rng", json_boolean(cfg->rng));
	json_t *balloon = config_balloon_to_json(&cfg->balloon);
	rc |= balloon ? json_object_set_new(o, "balloon", balloon) : -1;
	if (rc) {
		json_decref(o);
		return NULL;
	}
	return o;
}
