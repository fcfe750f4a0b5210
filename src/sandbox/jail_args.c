/* The `vmon jail` command line and the rewriting of the `vmon run` options it wraps. */
#include "sandbox/jail.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/util.h"

static int fail(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static bool valid_id(const char *id)
{
	size_t n = strlen(id);
	return n > 0 && n <= JAIL_MAX_ID &&
	       strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == n;
}

/* A number, or a user (group) name known to this host; root is refused. */
static int parse_owner(const char *arg, bool group, unsigned int *out, char *err, size_t len)
{
	const char *what = group ? "--gid" : "--uid";
	if (*arg && strspn(arg, "0123456789") == strlen(arg)) {
		errno = 0;
		unsigned long v = strtoul(arg, NULL, 10);
		if (errno || v >= (unsigned long)UINT_MAX)
			return fail(err, len, "%s %s is out of range", what, arg);
		*out = (unsigned int)v;
	} else if (group) {
		struct group *gr = *arg ? getgrnam(arg) : NULL;
		if (!gr)
			return fail(err, len, "--gid %s: no such group on this host: give a group name or number", arg);
		*out = gr->gr_gid;
	} else {
		struct passwd *pw = *arg ? getpwnam(arg) : NULL;
		if (!pw)
			return fail(err, len, "--uid %s: no such user on this host: give a user name or number", arg);
		*out = pw->pw_uid;
	}
	if (*out == 0)
		return fail(err, len, "%s %s would leave the VM with root's rights inside the jail: give an unprivileged %s",
			    what, arg, group ? "group" : "user");
	return 0;
}

static int parse_cgroup(struct jail_spec *s, const char *arg, char *err, size_t len)
{
	const char *eq = strchr(arg, '=');
	size_t klen = eq ? (size_t)(eq - arg) : 0;
	if (!eq || klen == 0 || !eq[1])
		return fail(err, len, "--cgroup takes KEY=VALUE, such as memory.max=512M, not '%s'", arg);
	/* The key names a file in the cgroup directory: a dotted name, never a path. */
	if (strspn(arg, "abcdefghijklmnopqrstuvwxyz0123456789_.") != klen || !memchr(arg, '.', klen) || arg[0] == '.')
		return fail(err, len, "--cgroup %s: the key must be a cgroup file name such as cpu.max or "
				      "memory.limit_in_bytes", arg);
	if (strchr(eq + 1, '\n'))
		return fail(err, len, "--cgroup %.*s: the value must be one line", (int)klen, arg);
	if (s->ncgroups >= JAIL_MAX_CGROUPS)
		return fail(err, len, "--cgroup is given more than %d times", JAIL_MAX_CGROUPS);
	struct jail_cgroup *c = &s->cgroups[s->ncgroups++];
	c->key = strndup(arg, klen);
	c->value = strdup(eq + 1);
	return 0;
}

bool jail_path_inside(const char *path)
{
	if (path[0] != '/' || !path[1])
		return false;
	for (const char *p = path; (p = strstr(p, "..")); p += 2)
		if ((p == path || p[-1] == '/') && (p[2] == '/' || !p[2]))
			return false;
	return true;
}

/* A file the VM reads: resolved on the host, given the in-jail name "/" + its file name. */
static int add_file(struct jail_spec *s, const char *opt, const char *path, bool writable, char **inside,
		    char *err, size_t len)
{
	char real[PATH_MAX];
	struct stat st;
	if (!realpath(path, real) || stat(real, &st) < 0)
		return fail(err, len, "%s %s: %s", opt, path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(err, len, "%s %s is not a regular file: vmon jail links only files into the jail", opt, path);
	const char *name = strrchr(real, '/') + 1;
	for (unsigned int i = 0; i < s->nfiles; i++) {
		if (strcmp(s->files[i].inside + 1, name))
			continue;
		if (strcmp(s->files[i].host, real))
			return fail(err, len, "%s %s has the same file name as %s: the jail holds both under /%s; "
					      "rename one", opt, path, s->files[i].host, name);
		s->files[i].writable |= writable;
		*inside = s->files[i].inside;
		return 0;
	}
	if (s->nfiles >= JAIL_MAX_FILES)
		return fail(err, len, "too many files for the jail (at most %d)", JAIL_MAX_FILES);
	struct jail_file *f = &s->files[s->nfiles++];
	f->host = strdup(real);
	if (asprintf(&f->inside, "/%s", name) < 0)
		f->inside = NULL;
	f->writable = writable;
	*inside = f->inside;
	return f->host && f->inside ? 0 : -ENOMEM;
}

/* A path vmon run creates: it must stay in the jail and sit in a directory of its own. */
static int add_output(struct jail_spec *s, const char *opt, const char *path, char *err, size_t len)
{
	if (!jail_path_inside(path))
		return fail(err, len, "%s %s is not a path inside the jail: give an absolute path without '..', "
				      "such as /run/%s", opt, path, strcmp(opt, "--log-file") ? "vm.sock" : "vmon.log");
	if (strrchr(path, '/') == path)
		return fail(err, len, "%s %s: the jail's root directory is not writable by the VM: use a "
				      "directory such as /run%s", opt, path, path);
	if (s->noutputs >= JAIL_MAX_OUTPUTS)
		return fail(err, len, "too many socket and log paths for the jail");
	s->outputs[s->noutputs++] = strdup(path);
	return 0;
}

/* The PATH in "key=PATH" among comma-separated options ("cid=3,uds=/run/v.sock"), or NULL. */
static const char *option_path(const char *value, const char *key)
{
	size_t klen = strlen(key);
	for (const char *p = value; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
		if (!strncmp(p, key, klen) && p[klen] == '=')
			return p + klen + 1;
	return NULL;
}

static bool has_flag(const char *opts, const char *flag)
{
	size_t n = strlen(flag);
	for (const char *p = opts; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
		if (!strncmp(p, flag, n) && (p[n] == ',' || !p[n]))
			return true;
	return false;
}

/* Rewrites one `vmon run` option with a value; *out receives the value to pass (malloc'ed). */
static int rewrite_option(struct jail_spec *s, const char *name, const char *value, char **out, char *err,
			  size_t len)
{
	char opt[64];
	snprintf(opt, sizeof(opt), "--%s", name);
	char *inside;
	int rc = 0;
	*out = NULL;
	if (!strcmp(name, "kernel") || !strcmp(name, "initrd")) {
		rc = add_file(s, opt, value, false, &inside, err, len);
		if (rc == 0)
			*out = strdup(inside);
		for (unsigned int i = 0; rc == 0 && name[0] == 'k' && i < s->nfiles; i++)
			if (s->files[i].inside == inside)
				s->kernel = &s->files[i];
	} else if (!strcmp(name, "disk")) {
		const char *comma = strchr(value, ',');
		char *path = comma ? strndup(value, (size_t)(comma - value)) : strdup(value);
		if (!path)
			return -ENOMEM;
		rc = add_file(s, opt, path, !(comma && has_flag(comma + 1, "readonly")), &inside, err, len);
		free(path);
		if (rc == 0 && asprintf(out, "%s%s", inside, comma ? comma : "") < 0)
			*out = NULL;
	} else if (!strcmp(name, "config")) {
		return fail(err, len, "--config is not supported under vmon jail: give the VM's options on the command "
				      "line, so that the jailer sees every file the VM uses");
	} else {
		const char *path = NULL;
		if (!strcmp(name, "api-sock") || !strcmp(name, "log-file"))
			path = value;
		else if (!strcmp(name, "console2"))
			path = option_path(value, "socket") ? option_path(value, "socket") : option_path(value, "file");
		else if (!strcmp(name, "vsock"))
			path = option_path(value, "uds");
		if (path) {
			char *p = strndup(path, strcspn(path, ","));
			rc = p ? add_output(s, opt, p, err, len) : -ENOMEM;
			free(p);
		}
		if (rc == 0 && !strcmp(name, "api-sock"))
			s->api_sock = strdup(value);
		if (rc == 0 && !strcmp(name, "name"))
			s->vm_name = strdup(value);
		if (rc == 0 && !strcmp(name, "cpus"))
			s->cpus = (unsigned int)strtoul(value, NULL, 10);
		if (rc == 0 && !strcmp(name, "memory")) {
			/* The size before any ",merge=on" or ",hugepages=on". */
			uint64_t m = 0;
			char *size = strndup(value, strcspn(value, ","));
			if (size)
				parse_size(size, &m);
			free(size);
			s->memory = m;
		}
		if (rc == 0)
			*out = strdup(value);
	}
	if (rc == 0 && !*out)
		rc = -ENOMEM;
	return rc;
}

/* `vmon run` options, by full name; getopt's abbreviations would slip past the rewriting. */
static const char *const run_value_opts[] = {
	"kernel", "initrd", "cmdline", "cpus", "memory", "host-workarounds", "log-level", "log-file", "api-sock",
	"name", "config", "net", "disk", "console2", "vsock", "seccomp", NULL,
};
static const char *const run_flag_opts[] = { "no-rng", "help", NULL };

static bool in_list(const char *const *list, const char *name, size_t n)
{
	for (; *list; list++)
		if (strlen(*list) == n && !strncmp(*list, name, n))
			return true;
	return false;
}

static int parse_run(struct jail_spec *s, int argc, char **argv, char *err, size_t len)
{
	if (argc < 1 || strcmp(argv[0], "run"))
		return fail(err, len, "vmon jail runs `vmon run`: end the jail's options with -- run <vmon run options>");
	s->run_argv = calloc((size_t)argc + 2, sizeof(char *));
	if (!s->run_argv)
		return -ENOMEM;
	s->run_argv[s->run_argc++] = strdup("vmon");
	s->run_argv[s->run_argc++] = strdup("run");
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (strncmp(arg, "--", 2) || !arg[2]) {
			if (!strcmp(arg, "-h")) {
				s->run_argv[s->run_argc++] = strdup(arg);
				continue;
			}
			return fail(err, len, "unexpected argument '%s' after -- run (see vmon run --help)", arg);
		}
		const char *name = arg + 2, *eq = strchr(name, '=');
		size_t n = eq ? (size_t)(eq - name) : strlen(name);
		if (in_list(run_flag_opts, name, n) && !eq) {
			s->run_argv[s->run_argc++] = strdup(arg);
			continue;
		}
		if (!in_list(run_value_opts, name, n))
			return fail(err, len, "unknown vmon run option '%s' (vmon jail needs full option names; see vmon "
					      "run --help)", arg);
		const char *value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
		if (!value)
			return fail(err, len, "option '%s' needs a value (see vmon run --help)", arg);
		char key[32], *rewritten;
		snprintf(key, sizeof(key), "%.*s", (int)n, name);
		int rc = rewrite_option(s, key, value, &rewritten, err, len);
		if (rc)
			return rc;
		/* Always the --name=value form: one argv slot per option. */
		if (asprintf(&s->run_argv[s->run_argc], "--%s=%s", key, rewritten) < 0)
			s->run_argv[s->run_argc] = NULL;
		free(rewritten);
		if (!s->run_argv[s->run_argc++])
			return -ENOMEM;
	}
	return 0;
}

int jail_parse(int argc, char **argv, struct jail_spec *s, char *err, size_t len)
{
	memset(s, 0, sizeof(*s));
	s->cpus = 1;
	bool have_id = false, have_uid = false, have_gid = false;
	int i = 1;
	for (; i < argc && strcmp(argv[i], "--"); i++) {
		const char *opt = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
		static const char *const known[] = { "--id", "--uid", "--gid", "--base", "--netns", "--cgroup", NULL };
		bool ok = false;
		for (const char *const *k = known; *k; k++)
			ok |= !strcmp(opt, *k);
		if (!ok)
			return fail(err, len, "unknown option '%s' (see vmon jail --help)", opt);
		if (!value || !strcmp(value, "--"))
			return fail(err, len, "option '%s' needs a value (see vmon jail --help)", opt);
		i++;
		int rc = 0;
		if (!strcmp(opt, "--id")) {
			if (!valid_id(value))
				return fail(err, len, "--id '%s': a jail id is 1 to %d letters, digits, '-' or '_'", value,
					    JAIL_MAX_ID);
			snprintf(s->id, sizeof(s->id), "%s", value);
			have_id = true;
		} else if (!strcmp(opt, "--uid")) {
			rc = parse_owner(value, false, &s->uid, err, len);
			have_uid = true;
		} else if (!strcmp(opt, "--gid")) {
			rc = parse_owner(value, true, &s->gid, err, len);
			have_gid = true;
		} else if (!strcmp(opt, "--base")) {
			if (value[0] != '/')
				return fail(err, len, "--base %s: give an absolute directory", value);
			free(s->base);
			s->base = strdup(value);
		} else if (!strcmp(opt, "--netns")) {
			free(s->netns);
			s->netns = strdup(value);
		} else {
			rc = parse_cgroup(s, value, err, len);
		}
		if (rc)
			return rc;
	}
	if (!have_id || !have_uid || !have_gid)
		return fail(err, len, "vmon jail needs --id, --uid and --gid (see vmon jail --help)");
	if (!s->base && !(s->base = strdup(JAIL_DEFAULT_BASE)))
		return -ENOMEM;
	if (i >= argc)
		return fail(err, len, "vmon jail runs `vmon run`: end the jail's options with -- run <vmon run options>");
	int rc = parse_run(s, argc - i - 1, argv + i + 1, err, len);
	if (rc == 0 && !s->kernel)
		rc = fail(err, len, "the VM needs --kernel PATH after -- run");
	return rc;
}

void jail_spec_free(struct jail_spec *s)
{
	for (unsigned int i = 0; i < s->ncgroups; i++) {
		free(s->cgroups[i].key);
		free(s->cgroups[i].value);
	}
	for (unsigned int i = 0; i < s->nfiles; i++) {
		free(s->files[i].host);
		free(s->files[i].inside);
	}
	for (unsigned int i = 0; i < s->noutputs; i++)
		free(s->outputs[i]);
	for (int i = 0; s->run_argv && i < s->run_argc; i++)
		free(s->run_argv[i]);
	free(s->run_argv);
	free(s->base);
	free(s->netns);
	free(s->vm_name);
	free(s->api_sock);
	memset(s, 0, sizeof(*s));
}

int jail_root_path(const struct jail_spec *s, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s/root", s->base, s->id);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}
