#include "config/config_sockets.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/util.h"

static int bad(char *err, size_t errlen, const char *msg, const char *spec)
{
	snprintf(err, errlen, msg, spec);
	return -EINVAL;
}

/* Takes a trailing ",max_size=SIZE" off a file= path (the path itself may hold commas). */
static int split_max_size(char *path, uint64_t *max_size, char *err, size_t errlen)
{
	*max_size = CONSOLE2_DEFAULT_MAX_SIZE;
	char *opt = strstr(path, ",max_size=");
	for (char *next = opt; next; next = strstr(next + 1, ",max_size="))
		opt = next;
	if (!opt)
		return 0;
	const char *val = opt + strlen(",max_size=");
	if (parse_size(val, max_size) || *max_size == 0) {
		snprintf(err, errlen, "--console2 (\"console2\") max_size=%.40s is not a size: give bytes with an "
				      "optional K, M or G suffix, at least 1 (e.g. max_size=64M)", val);
		return -EINVAL;
	}
	*opt = 0;
	return 0;
}

static int path_error(const struct console2_spec *cs, size_t max, char *err, size_t errlen)
{
	snprintf(err, errlen, "--console2 (\"console2\") needs a path of 1 to %zu bytes after '%s': use a shorter path",
		 max - 1, cs->is_file ? "file=" : "socket=");
	return -EINVAL;
}

int config_console2_parse(const char *spec, struct console2_spec *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	const char *path;
	if (!strncmp(spec, "socket=", 7)) {
		path = spec + 7;
	} else if (!strncmp(spec, "file=", 5)) {
		path = spec + 5;
		out->is_file = true;
	} else {
		return bad(err, errlen, "--console2 (\"console2\") '%.200s' is not understood: give socket=PATH (a Unix "
					"socket vmon listens on) or file=PATH[,max_size=SIZE] (the guest's output is "
					"appended to PATH)",
			   spec);
	}
	size_t max = out->is_file ? sizeof(out->path) : CONFIG_MAX_SOCK_PATH;
	if (strlen(path) >= max) {
		return path_error(out, max, err, errlen);
	}
	strcpy(out->path, path);
	if (out->is_file && split_max_size(out->path, &out->max_size, err, errlen))
		return -EINVAL;
	if (!out->path[0]) {
		snprintf(err, errlen, "--console2 (\"console2\") '%s' has an empty path: give %sPATH", spec,
			 out->is_file ? "file=" : "socket=");
		return -EINVAL;
	}
	return 0;
}

static int parse_cid(const char *s, size_t len, uint32_t *cid)
{
	if (len == 0 || len > 10)
		return -EINVAL;
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v < 3 || v > 0xfffffffeull)
		return -EINVAL;
	*cid = (uint32_t)v;
	return 0;
}

int config_vsock_parse(const char *spec, struct vsock_spec *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	bool have_cid = false, have_uds = false;
	const char *p = spec;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len > 4 && !strncmp(p, "cid=", 4)) {
			if (parse_cid(p + 4, len - 4, &out->cid)) {
				snprintf(err, errlen, "--vsock (\"vsock\") cid=%.*s is not a guest CID: give a number from 3 "
						      "to 4294967294 (0-2 are reserved)", (int)MIN(len - 4, 20), p + 4);
				return -EINVAL;
			}
			have_cid = true;
		} else if (len > 4 && !strncmp(p, "uds=", 4)) {
			if (len - 4 > CONFIG_MAX_VSOCK_UDS) {
				snprintf(err, errlen, "--vsock (\"vsock\") uds= path is longer than %d bytes (with \"_<port>\" "
						      "added it must fit a Unix socket address): use a shorter path",
					 CONFIG_MAX_VSOCK_UDS);
				return -EINVAL;
			}
			memcpy(out->uds, p + 4, len - 4);
			out->uds[len - 4] = 0;
			have_uds = true;
		} else {
			snprintf(err, errlen, "--vsock (\"vsock\") '%.200s': unknown or empty part '%.*s'; the form is "
					      "cid=N,uds=PATH", spec, (int)MIN(len, 40), p);
			return -EINVAL;
		}
		p += len + (comma ? 1 : 0);
	}
	if (!have_cid || !have_uds)
		return bad(err, errlen, "--vsock (\"vsock\") '%.200s' needs both parts: cid=N,uds=PATH (e.g. "
					"cid=3,uds=/tmp/vm.vsock)", spec);
	return 0;
}
