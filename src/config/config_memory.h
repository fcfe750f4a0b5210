/*
 * The --memory option ("memory" in the JSON config): the guest's RAM size and how the host backs
 * it (memory/guest_mem.h).
 *
 *   --memory SIZE[,merge=on|off][,hugepages=on|off]
 *   "memory": 268435456 | "256M" | "256M,merge=on" | {"size": "256M", "merge": true, "hugepages": false}
 *
 * merge=on makes RAM private anonymous memory marked MADV_MERGEABLE, so the host's KSM may share
 * identical pages between VMs; hugepages=on backs it with 2 MiB hugetlbfs pages. Both are off by
 * default (docs/usage.md says why) and cannot be combined: KSM never merges hugetlbfs pages.
 */
#ifndef VMON_CONFIG_CONFIG_MEMORY_H
#define VMON_CONFIG_CONFIG_MEMORY_H

#include <jansson.h>
#include <stddef.h>

#include "config/config.h"

/*
 * Parses a --memory value into cfg: the size, then settings that change only what they name (a
 * later --memory 2G keeps the config file's merge=on). On error: one sentence in err, -EINVAL,
 * cfg unchanged.
 */
int config_memory_parse(const char *spec, struct vm_config *cfg, char *err, size_t errlen);

/* "memory" from JSON: a number of bytes, a --memory value, or an object; it sets all three. */
int config_memory_from_json(struct vm_config *cfg, const char *key, const json_t *v, char *err, size_t errlen);
/* The size alone as a number while both settings are off (as older vmon wrote it), else the object. */
json_t *config_memory_to_json(const struct vm_config *cfg);
/* The size from what config_memory_to_json wrote (a number or the object); 0 if neither. */
uint64_t config_memory_size_of_json(const json_t *v);

/* Settings that cannot go together; -EINVAL with the reason in err. */
int config_memory_validate(const struct vm_config *cfg, char *err, size_t errlen);

#endif
