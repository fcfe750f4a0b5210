#include "vm/registry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config_json.h"
#include "config/config_memory.h"
#include "config/config_sockets.h"
#include "lib/log.h"

/* Writes the directory's path; *shared: it is the fallback in /tmp, where anyone can create it first. */
static int runtime_dir(char *buf, size_t len, bool *shared)
{
	const char *env = getenv("VMON_RUNTIME_DIR");
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;
	*shared = false;
	if (env && *env)
		n = snprintf(buf, len, "%s", env);
	else if (xdg && *xdg)
		n = snprintf(buf, len, "%s/vmon", xdg);
	else if (geteuid() == 0)
		n = snprintf(buf, len, "/run/vmon");
	else {
		n = snprintf(buf, len, "/tmp/vmon-%u", (unsigned int)geteuid());
		*shared = true;
	}
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int registry_dir(char *buf, size_t len)
{
	bool shared;
	return runtime_dir(buf, len, &shared);
}

int registry_check_dir(const char *dir, bool private_dir)
{
	struct stat st;
	/* A private directory must be the directory itself: a symlink could point anywhere. */
	if ((private_dir ? lstat(dir, &st) : stat(dir, &st)) < 0) {
		int rc = -errno;
		if (rc != -ENOENT)
			log_error("registry", "cannot use the runtime directory %s: %s", dir, strerror(-rc));
		return rc;
	}
	if (!S_ISDIR(st.st_mode)) {
		log_error("registry", "the runtime directory %s is not a directory%s: set VMON_RUNTIME_DIR to a directory",
			  dir, S_ISLNK(st.st_mode) ? " (a symlink)" : "");
		return -ENOTDIR;
	}
	if (private_dir && (st.st_uid != geteuid() || (st.st_mode & 077))) {
		log_error("registry", "the runtime directory %s %s, so another user could read or plant entries in it: "
				      "set VMON_RUNTIME_DIR to a private directory, or remove it so that vmon recreates it private",
			  dir, st.st_uid != geteuid() ? "belongs to another user" : "is open to group or others");
		return -EPERM;
	}
	return 0;
}

/* mkdir -p, the last component private to the user. */
static int make_dir(const char *path)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* The directory, created when create is set, and checked; the reason for a refusal is logged. */
static int open_dir(char *dir, size_t len, bool create)
{
	bool shared;
	int rc = runtime_dir(dir, len, &shared);
	if (rc == 0 && create)
		rc = make_dir(dir);
	if (rc && rc != -EEXIST && rc != -ENOTDIR) { /* a file in the way: the check names it */
		log_error("registry", "cannot create the runtime directory %s (%s): set VMON_RUNTIME_DIR to a writable "
				      "directory", dir, strerror(-rc));
		return rc;
	}
	return registry_check_dir(dir, shared);
}

unsigned long long registry_proc_start(int pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	/* The command name may hold spaces and parentheses: fields restart after the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	p++;
	/* starttime is field 22; the first field after ')' is field 3. */
	for (int field = 3; field < 22 && p; field++) {
		p = strchr(p + 1, ' ');
	}
	return p ? strtoull(p + 1, NULL, 10) : 0;
}

bool registry_process_alive(int pid, unsigned long long proc_start)
{
	if (pid <= 0)
		return false;
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return false;
	/* The pid may have been reused by an unrelated process since the entry was written. */
	unsigned long long now = registry_proc_start(pid);
	return !(proc_start && now && now != proc_start);
}

int registry_register(const struct vm_config *cfg, char *path, size_t len)
{
	char dir[PATH_MAX];
	if (len)
		path[0] = 0;
	int rc = open_dir(dir, sizeof(dir), true);
	if (rc) {
		log_warn("registry", "`vmon ps` will not list this VM");
		return rc;
	}
	int pid = (int)getpid();
	char tmp[PATH_MAX + 16];
	if (snprintf(path, len, "%s/%d.json", dir, pid) >= (int)len) {
		path[0] = 0; /* nothing for registry_unregister to remove */
		return -ENAMETOOLONG;
	}
	/* A fresh, unguessable name (mkstemp: O_EXCL, 0600), hidden from registry_list until renamed. */
	snprintf(tmp, sizeof(tmp), "%s/.%d.XXXXXX", dir, pid);

	json_t *o = json_object();
	json_t *c = config_json_dump(cfg);
	if (!o || !c) {
		json_decref(o);
		json_decref(c);
		path[0] = 0;
		return -ENOMEM;
	}
	json_object_set_new(o, "pid", json_integer(pid));
	json_object_set_new(o, "proc_start", json_integer((json_int_t)registry_proc_start(pid)));
	json_object_set_new(o, "started_at", json_integer((json_int_t)time(NULL)));
	json_object_set_new(o, "config", c);
	/* Written whole and renamed into place, so a reader never sees half an entry. */
	int fd = mkostemp(tmp, O_CLOEXEC);
	rc = fd < 0 ? -errno : 0;
	if (rc == 0) {
		errno = 0;
		if (json_dumpfd(o, fd, JSON_INDENT(2)) < 0 || fsync(fd) < 0)
			rc = errno ? -errno : -EIO;
		close(fd);
		if (rc == 0 && rename(tmp, path) < 0)
			rc = -errno;
		if (rc)
			unlink(tmp);
	}
	json_decref(o);
	if (rc) {
		log_warn("registry", "cannot write %s: %s; `vmon ps` will not list this VM", path, strerror(-rc));
		path[0] = 0;
	}
	return rc;
}

void registry_unregister(const char *path)
{
	if (path && *path && unlink(path) < 0 && errno != ENOENT)
		log_warn("registry", "cannot remove %s: %s", path, strerror(errno));
}

static void copy_str(char *dst, size_t cap, const json_t *v)
{
	const char *s = json_is_string(v) ? json_string_value(v) : "";
	snprintf(dst, cap, "%s", s);
}

static int read_entry(const char *path, struct registry_entry *e)
{
	json_error_t jerr;
	json_t *o = json_load_file(path, 0, &jerr);
	if (!o)
		return -EINVAL;
	int rc = -EINVAL;
	json_t *pid = json_object_get(o, "pid");
	json_t *cfg = json_object_get(o, "config");
	if (json_is_integer(pid) && json_integer_value(pid) > 0 && json_integer_value(pid) <= INT_MAX &&
	    json_is_object(cfg)) {
		memset(e, 0, sizeof(*e));
		e->pid = (int)json_integer_value(pid);
		json_t *ps = json_object_get(o, "proc_start");
		unsigned long long proc_start = json_is_integer(ps) ? (unsigned long long)json_integer_value(ps) : 0;
		e->stale = !registry_process_alive(e->pid, proc_start);
		json_t *st = json_object_get(o, "started_at");
		e->started_at = json_is_integer(st) ? (long long)json_integer_value(st) : 0;
		json_t *cpus = json_object_get(cfg, "cpus");
		e->cpus = json_is_integer(cpus) ? (unsigned int)json_integer_value(cpus) : 0;
		json_t *mem = json_object_get(cfg, "memory");
		e->memory = config_memory_size_of_json(mem);
		copy_str(e->name, sizeof(e->name), json_object_get(cfg, "name"));
		copy_str(e->api_sock, sizeof(e->api_sock), json_object_get(cfg, "api_sock"));
		copy_str(e->kernel, sizeof(e->kernel), json_object_get(cfg, "kernel"));
		const char *vsock = json_string_value(json_object_get(cfg, "vsock"));
		struct vsock_spec vs;
		char err[256];
		if (vsock && config_vsock_parse(vsock, &vs, err, sizeof(err)) == 0)
			e->vsock_cid = vs.cid;
		snprintf(e->path, sizeof(e->path), "%s", path);
		rc = 0;
	}
	json_decref(o);
	return rc;
}

static int by_pid(const void *a, const void *b)
{
	const struct registry_entry *x = a, *y = b;
	return (x->pid > y->pid) - (x->pid < y->pid);
}

int registry_list(struct registry_entry **out)
{
	*out = NULL;
	char dir[PATH_MAX];
	int rc = open_dir(dir, sizeof(dir), false);
	if (rc == -ENOENT)
		return 0; /* no directory: no VMs */
	if (rc)
		return rc;
	DIR *d = opendir(dir);
	if (!d) {
		rc = -errno;
		log_error("registry", "cannot read the runtime directory %s: %s", dir, strerror(-rc));
		return rc;
	}
	struct registry_entry *list = NULL;
	int n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len < 6 || strcmp(de->d_name + len - 5, ".json"))
			continue;
		if (n == cap) {
			int ncap = cap ? cap * 2 : 8;
			struct registry_entry *nl = realloc(list, (size_t)ncap * sizeof(*nl));
			if (!nl) {
				closedir(d);
				free(list);
				return -ENOMEM;
			}
			list = nl;
			cap = ncap;
		}
		char path[PATH_MAX];
		if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path))
			continue;
		if (read_entry(path, &list[n]) == 0)
			n++;
	}
	closedir(d);
	if (n == 0) {
		free(list);
		return 0;
	}
	qsort(list, (size_t)n, sizeof(*list), by_pid);
	*out = list;
	return n;
}
