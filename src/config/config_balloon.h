/*
 * The --balloon option ("balloon" in the JSON config): the virtio memory balloon with free page
 * reporting (virtio/virtio_balloon.h).
 *
 *   --balloon                       the device with the defaults below
 *   --balloon=deflate_on_oom=on|off,free_page_reporting=on|off,stats_interval=SECONDS
 *   "balloon": true | false | { "deflate_on_oom": true, "free_page_reporting": true, "stats_interval": 5 }
 *
 * The value only comes after '=' (never as the next argument), so `--balloon --disk x` does not
 * take "--disk" as its value.
 */
#ifndef VMON_CONFIG_CONFIG_BALLOON_H
#define VMON_CONFIG_CONFIG_BALLOON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BALLOON_DEFAULT_STATS_INTERVAL_S 5
#define BALLOON_MAX_STATS_INTERVAL_S 3600

struct balloon_config {
	bool enabled;
	bool deflate_on_oom;      /* the guest may take pages back rather than OOM-kill (default on) */
	bool free_page_reporting; /* the guest reports free pages, vmon discards them (default on) */
	uint32_t stats_interval_s; /* how often the guest's statistics are asked for; 0: never (default 5) */
};

/* The defaults with enabled = false. */
void config_balloon_defaults(struct balloon_config *b);

/*
 * Parses a --balloon value (NULL or "" for the bare option) into *b and enables it.
 * On error: one sentence in err, -EINVAL, *b unchanged.
 */
int config_balloon_parse(const char *spec, struct balloon_config *b, char *err, size_t errlen);

/* "balloon" from JSON (a boolean or an object); -EINVAL with a sentence naming the key. */
int config_balloon_from_json(struct balloon_config *b, const char *key, const json_t *v, char *err, size_t errlen);
/* JSON false when disabled, else the object (new reference; NULL only on allocation failure). */
json_t *config_balloon_to_json(const struct balloon_config *b);

#endif
