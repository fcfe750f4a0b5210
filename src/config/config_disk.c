#include "config/config_disk.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SPEC_MAX 4096 /* longer than any sensible --disk value */

void config_disk_free(struct disk_config *d)
{
	free(d->path);
	free(d->serial);
	*d = (struct disk_config){ 0 };
}

static bool serial_ok(const char *s)
{
	if (strlen(s) > CONFIG_MAX_DISK_SERIAL)
		return false;
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e)
			return false;
	return true;
}

static int parse_format(const char *s, enum disk_format *out)
{
	if (!strcmp(s, "raw"))
		*out = DISK_FORMAT_RAW;
	else if (!strcmp(s, "qcow2"))
		*out = DISK_FORMAT_QCOW2;
	else
		return -EINVAL;
	return 0;
}

const char *config_disk_format_name(enum disk_format f)
{
	return f == DISK_FORMAT_RAW ? "raw" : f == DISK_FORMAT_QCOW2 ? "qcow2" : NULL;
}

int config_disk_parse(const char *spec, struct disk_config *out, char *err, size_t errlen)
{
	*out = (struct disk_config){ 0 };
	if (!spec || !*spec || *spec == ',') {
		snprintf(err, errlen, "--disk needs an image path: --disk PATH[,readonly][,serial=ID][,format=raw|qcow2]");
		return -EINVAL;
	}
	if (strlen(spec) >= SPEC_MAX) {
		snprintf(err, errlen, "--disk: the value is too long");
		return -EINVAL;
	}
	char buf[SPEC_MAX];
	snprintf(buf, sizeof(buf), "%s", spec);
	char *save = NULL;
	char *tok = strtok_r(buf, ",", &save);
	out->path = strdup(tok);
	if (!out->path)
		return -ENOMEM;
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (!strcmp(tok, "readonly")) {
			out->readonly = true;
		} else if (!strncmp(tok, "serial=", 7)) {
			if (!*(tok + 7) || !serial_ok(tok + 7)) {
				snprintf(err, errlen, "--disk ...,serial=%.64s: give 1 to %d printable ASCII characters",
					 tok + 7, CONFIG_MAX_DISK_SERIAL);
				config_disk_free(out);
				return -EINVAL;
			}
			free(out->serial);
			if (!(out->serial = strdup(tok + 7))) {
				config_disk_free(out);
				return -ENOMEM;
			}
		} else if (!strncmp(tok, "format=", 7)) {
			if (parse_format(tok + 7, &out->format)) {
				snprintf(err, errlen, "--disk ...,format=%.64s: the formats are raw and qcow2 (leave it out "
						      "to detect it)", tok + 7);
				config_disk_free(out);
				return -EINVAL;
			}
		} else {
			snprintf(err, errlen, "--disk ...,%.64s: unknown setting; the settings are readonly, serial=ID and "
					      "format=raw|qcow2", tok);
			config_disk_free(out);
			return -EINVAL;
		}
	}
	return 0;
}

/* Two names for one file (a relative and an absolute path, a symbolic link) are caught too. */
static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	if (!strcmp(a, b))
		return true;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int config_disks_validate(const struct vm_config *cfg, char *err, size_t errlen)
{
	if (cfg->ndisks > CONFIG_MAX_DISKS) {
		snprintf(err, errlen, "--disk (\"disks\") is given %u times: vmon supports at most %d disks", cfg->ndisks,
			 CONFIG_MAX_DISKS);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < cfg->ndisks; i++) {
		const struct disk_config *d = &cfg->disks[i];
		if (!d->path || !*d->path) {
			snprintf(err, errlen, "--disk (\"disks\") number %u has no path: give the image file", i + 1);
			return -EINVAL;
		}
		if (d->serial && !serial_ok(d->serial)) {
			snprintf(err, errlen, "--disk %s: the serial must be at most %d printable ASCII characters", d->path,
				 CONFIG_MAX_DISK_SERIAL);
			return -EINVAL;
		}
		for (unsigned int j = 0; j < i; j++)
			if (same_file(cfg->disks[j].path, d->path)) {
				if (!strcmp(cfg->disks[j].path, d->path))
					snprintf(err, errlen, "--disk %s is given twice: a VM can attach an image only once",
						 d->path);
				else
					snprintf(err, errlen, "--disk %s and --disk %s are the same file given twice: a VM "
							      "can attach an image only once", cfg->disks[j].path, d->path);
				return -EINVAL;
			}
	}
	return 0;
}

static int disk_from_json(struct disk_config *d, const char *key, size_t index, const json_t *o, char *err,
			  size_t errlen)
{
	if (!json_is_object(o)) {
		snprintf(err, errlen, "key \"%s\": item %zu must be an object {\"path\": ..., \"readonly\": ..., "
				      "\"serial\": ...}", key, index);
		return -EINVAL;
	}
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)o, k, v) {
		if (!strcmp(k, "path")) {
			if (!json_is_string(v) || !json_string_length(v) ||
			    strlen(json_string_value(v)) != json_string_length(v)) {
				snprintf(err, errlen, "key \"%s\": item %zu: \"path\" must be a non-empty string", key, index);
				return -EINVAL;
			}
			free(d->path);
			if (!(d->path = strdup(json_string_value(v))))
				return -ENOMEM;
		} else if (!strcmp(k, "readonly")) {
			if (!json_is_boolean(v)) {
				snprintf(err, errlen, "key \"%s\": item %zu: \"readonly\" must be true or false", key, index);
				return -EINVAL;
			}
			d->readonly = json_is_true(v);
		} else if (!strcmp(k, "format")) {
			if (json_is_null(v)) {
				d->format = DISK_FORMAT_AUTO;
				continue;
			}
			if (!json_is_string(v) || parse_format(json_string_value(v), &d->format)) {
				snprintf(err, errlen, "key \"%s\": item %zu: \"format\" must be \"raw\" or \"qcow2\"", key,
					 index);
				return -EINVAL;
			}
		} else if (!strcmp(k, "serial")) {
			if (json_is_null(v)) {
				free(d->serial);
				d->serial = NULL;
				continue;
			}
			if (!json_is_string(v) || !serial_ok(json_string_value(v)) ||
			    strlen(json_string_value(v)) != json_string_length(v)) {
				snprintf(err, errlen, "key \"%s\": item %zu: \"serial\" must be a string of at most %d "
						      "printable ASCII characters", key, index, CONFIG_MAX_DISK_SERIAL);
				return -EINVAL;
			}
			free(d->serial);
			if (!(d->serial = strdup(json_string_value(v))))
				return -ENOMEM;
		} else {
			snprintf(err, errlen, "key \"%s\": item %zu: unknown key \"%.64s\"; the keys are path, readonly, "
					      "serial and format", key, index, k);
			return -EINVAL;
		}
	}
	if (!d->path) {
		snprintf(err, errlen, "key \"%s\": item %zu has no \"path\"", key, index);
		return -EINVAL;
	}
	return 0;
}

int config_disks_from_json(struct vm_config *cfg, const char *key, const json_t *v, char *err, size_t errlen)
{
	if (!json_is_array(v)) {
		snprintf(err, errlen, "key \"%s\": expected an array of disks [{\"path\": ...}, ...]", key);
		return -EINVAL;
	}
	if (json_array_size(v) > CONFIG_MAX_DISKS) {
		snprintf(err, errlen, "key \"%s\": %zu disks, vmon supports at most %d", key, json_array_size(v),
			 CONFIG_MAX_DISKS);
		return -EINVAL;
	}
	struct disk_config disks[CONFIG_MAX_DISKS] = { 0 };
	size_t n = json_array_size(v);
	for (size_t i = 0; i < n; i++) {
		int rc = disk_from_json(&disks[i], key, i, json_array_get(v, i), err, errlen);
		if (rc) {
			for (size_t j = 0; j <= i; j++)
				config_disk_free(&disks[j]);
			return rc;
		}
	}
	for (unsigned int i = 0; i < cfg->ndisks && i < CONFIG_MAX_DISKS; i++)
		config_disk_free(&cfg->disks[i]);
	memcpy(cfg->disks, disks, sizeof(disks));
	cfg->ndisks = (unsigned int)n;
	return 0;
}

json_t *config_disks_to_json(const struct vm_config *cfg)
{
	json_t *a = json_array();
	for (unsigned int i = 0; a && i < cfg->ndisks && i < CONFIG_MAX_DISKS; i++) {
		const struct disk_config *d = &cfg->disks[i];
		json_t *o = json_pack("{s:s?, s:b, s:s?, s:s*}", "path", d->path, "readonly", d->readonly, "serial",
				      d->serial, "format", config_disk_format_name(d->format));
		if (!o || json_array_append_new(a, o)) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}
