/*
 * The JSON view of the VM configuration model (struct vm_config): `vmon run --config FILE`
 * reads it, the API's GET /vm and the runtime registry write it. Keys are the long command-line
 * options with '_' for '-' (--host-workarounds is "host_workarounds"); see docs/usage.md.
 * Parsing is strict: unknown keys, wrong types and impossible values are errors that name the key
 * and say what was expected.
 */
#ifndef VMON_CONFIG_CONFIG_JSON_H
#define VMON_CONFIG_CONFIG_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "config/config.h"

/*
 * Sets every field present in the JSON object obj; fields it does not mention keep their value.
 * On error writes one sentence into err (naming the key) and returns -EINVAL; cfg may then be
 * partly updated, so callers throw it away.
 */
int config_json_apply(struct vm_config *cfg, const json_t *obj, char *err, size_t errlen);

/* Parses text (a JSON object) and applies it; what names the source in messages (a file name). */
int config_json_apply_text(struct vm_config *cfg, const char *text, const char *what, char *err,
			   size_t errlen);

/* Reads a config file and applies it. -ENOENT/-EACCES/... if it cannot be read, -EINVAL if invalid. */
int config_json_load_file(struct vm_config *cfg, const char *path, char *err, size_t errlen);

/* "an object", "a string", ...: the kind of JSON value v is, for messages. */
const char *config_json_type_phrase(const json_t *v);

/* The configuration as a JSON object (new reference; NULL only on allocation failure). */
json_t *config_json_dump(const struct vm_config *cfg);

#endif
