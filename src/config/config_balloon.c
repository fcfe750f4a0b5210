#include "config/config_balloon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPEC_MAX 256
#define USAGE "--balloon[=deflate_on_oom=on|off,free_page_reporting=on|off,stats_interval=SECONDS]"

void config_balloon_defaults(struct balloon_config *b)
{
	*b = (struct balloon_config){
		.enabled = false,
		.deflate_on_oom = true,
		.free_page_reporting = true,
		.stats_interval_s = BALLOON_DEFAULT_STATS_INTERVAL_S,
	};
}

static int parse_on_off(const char *v, bool *out)
{
	if (!strcmp(v, "on"))
		*out = true;
	else if (!strcmp(v, "off"))
		*out = false;
	else
		return -EINVAL;
	return 0;
}

static int parse_interval(const char *v, uint32_t *out)
{
	char *end;
	if (*v < '0' || *v > '9')
		return -EINVAL;
	unsigned long n = strtoul(v, &end, 10);
	if (*end || n > BALLOON_MAX_STATS_INTERVAL_S)
		return -EINVAL;
	*out = (uint32_t)n;
	return 0;
}

int config_balloon_parse(const char *spec, struct balloon_config *b, char *err, size_t errlen)
{
	struct balloon_config nb = *b;
	if (!nb.enabled)
		config_balloon_defaults(&nb);
	nb.enabled = true;
	if (spec && strlen(spec) >= SPEC_MAX) {
		snprintf(err, errlen, "--balloon: the value is too long; use " USAGE);
		return -EINVAL;
	}
	char buf[SPEC_MAX];
	snprintf(buf, sizeof(buf), "%s", spec ? spec : "");
	char *save = NULL;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		const char *val = eq ? eq + 1 : "";
		if (eq)
			*eq = 0;
		int rc;
		if (!strcmp(tok, "deflate_on_oom"))
			rc = parse_on_off(val, &nb.deflate_on_oom);
		else if (!strcmp(tok, "free_page_reporting"))
			rc = parse_on_off(val, &nb.free_page_reporting);
		else if (!strcmp(tok, "stats_interval"))
			rc = parse_interval(val, &nb.stats_interval_s);
		else {
			snprintf(err, errlen, "--balloon: unknown setting '%.32s'; use " USAGE, tok);
			return -EINVAL;
		}
		if (rc) {
			snprintf(err, errlen, "--balloon: %s takes %s, not '%.32s'", tok,
				 strcmp(tok, "stats_interval") ? "on or off" : "a whole number of seconds 0-3600 (0: no statistics)",
				 val);
			return -EINVAL;
		}
	}
	*b = nb;
	return 0;
}

int config_balloon_from_json(struct balloon_config *b, const char *key, const json_t *v, char *err, size_t errlen)
{
	struct balloon_config nb;
	config_balloon_defaults(&nb);
	if (json_is_boolean(v)) {
		nb.enabled = json_is_true(v);
		*b = nb;
		return 0;
	}
	if (!json_is_object(v)) {
		snprintf(err, errlen, "\"%s\" must be true, false or an object such as {\"free_page_reporting\": true}", key);
		return -EINVAL;
	}
	nb.enabled = true;
	const char *k;
	json_t *val;
	json_object_foreach((json_t *)v, k, val) {
		bool *flag = !strcmp(k, "deflate_on_oom") ? &nb.deflate_on_oom
			     : !strcmp(k, "free_page_reporting") ? &nb.free_page_reporting
								  : NULL;
		if (flag && json_is_boolean(val)) {
			*flag = json_is_true(val);
		} else if (flag) {
			snprintf(err, errlen, "\"%s\".\"%s\" must be true or false", key, k);
			return -EINVAL;
		} else if (!strcmp(k, "stats_interval")) {
			if (!json_is_integer(val) || json_integer_value(val) < 0 ||
			    json_integer_value(val) > BALLOON_MAX_STATS_INTERVAL_S) {
				snprintf(err, errlen, "\"%s\".\"stats_interval\" must be a whole number of seconds 0-%d", key,
					 BALLOON_MAX_STATS_INTERVAL_S);
				return -EINVAL;
			}
			nb.stats_interval_s = (uint32_t)json_integer_value(val);
		} else {
			snprintf(err, errlen,
				 "unknown key \"%.64s\" in \"%s\": the keys are deflate_on_oom, free_page_reporting, stats_interval",
				 k, key);
			return -EINVAL;
		}
	}
	*b = nb;
	return 0;
}

json_t *config_balloon_to_json(const struct balloon_config *b)
{
	if (!b->enabled)
		return json_false();
	return json_pack("{s:b, s:b, s:I}", "deflate_on_oom", b->deflate_on_oom, "free_page_reporting",
			 b->free_page_reporting, "stats_interval", (json_int_t)b->stats_interval_s);
}
