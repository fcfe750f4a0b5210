/*
 * The jail's cgroups: vmon/ID under each cgroup v1 controller that has the key's file (this host
 * mounts them at /sys/fs/cgroup/<controller>), else in the cgroup v2 hierarchy (at
 * /sys/fs/cgroup/unified on hybrid hosts, /sys/fs/cgroup on v2-only ones).
 */
#include "sandbox/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CGROUP_ROOT "/sys/fs/cgroup"

static int write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t n = strlen(value);
	int rc = write(fd, value, n) == (ssize_t)n ? 0 : -errno;
	close(fd);
	return rc;
}

static bool exists(const char *dir, const char *file)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
		return false;
	return access(path, F_OK) == 0;
}

static int make_dir(const char *path)
{
	return mkdir(path, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

/* The v2 hierarchy's root, or NULL when the host has none. */
static const char *v2_root(void)
{
	if (exists(CGROUP_ROOT "/unified", "cgroup.controllers"))
		return CGROUP_ROOT "/unified";
	return exists(CGROUP_ROOT, "cgroup.controllers") ? CGROUP_ROOT : NULL;
}

/* The jail's directory for one key, created; path gets it. 0 or -errno, reason printed. */
static int cgroup_dir(const struct jail_spec *s, const char *key, char *path, size_t len)
{
	char ctrl[64], dir[128];
	snprintf(ctrl, sizeof(ctrl), "%.*s", (int)strcspn(key, "."), key);
	snprintf(dir, sizeof(dir), CGROUP_ROOT "/%s", ctrl);
	if (exists(dir, "tasks")) { /* a v1 controller; a wrong key fails when the limit is written */
		snprintf(path, len, "%s/vmon", dir);
		int rc = make_dir(path);
		snprintf(path, len, "%s/vmon/%s", dir, s->id);
		return rc ? rc : make_dir(path);
	}
	const char *v2 = v2_root();
	char controllers[PATH_MAX];
	snprintf(controllers, sizeof(controllers), "%s/cgroup.controllers", v2 ? v2 : "");
	FILE *f = v2 ? fopen(controllers, "re") : NULL;
	char line[512] = "";
	if (f) {
		if (!fgets(line, sizeof(line), f))
			line[0] = 0;
		fclose(f);
	}
	char padded[sizeof(line) + 2], want[sizeof(ctrl) + 2];
	snprintf(padded, sizeof(padded), " %.*s ", (int)strcspn(line, "\n"), line);
	snprintf(want, sizeof(want), " %s ", ctrl);
	if (!strstr(padded, want)) {
		fprintf(stderr, "vmon: jail: --cgroup %s: this host has no cgroup controller '%s' with that file "
				"(neither in %s/%s nor in the cgroup v2 hierarchy)\n", key, ctrl, CGROUP_ROOT, ctrl);
		return -ENOENT;
	}
	char enable[80];
	snprintf(enable, sizeof(enable), "+%s", ctrl);
	snprintf(path, len, "%s/cgroup.subtree_control", v2);
	int rc = write_file(path, enable);
	snprintf(path, len, "%s/vmon", v2);
	if (rc == 0)
		rc = make_dir(path);
	snprintf(path, len, "%s/vmon/cgroup.subtree_control", v2);
	if (rc == 0)
		rc = write_file(path, enable);
	snprintf(path, len, "%s/vmon/%s", v2, s->id);
	if (rc == 0)
		rc = make_dir(path);
	if (rc)
		fprintf(stderr, "vmon: jail: cannot set up the cgroup v2 controller %s for %s: %s\n", ctrl, path,
			strerror(-rc));
	return rc;
}

int jail_cgroups_create(const struct jail_spec *s, struct jail_cgroups *cg)
{
	memset(cg, 0, sizeof(*cg));
	for (unsigned int i = 0; i < s->ncgroups; i++) {
		char dir[PATH_MAX], file[PATH_MAX + 64];
		int rc = cgroup_dir(s, s->cgroups[i].key, dir, sizeof(dir));
		if (rc)
			return rc;
		bool known = false;
		for (unsigned int j = 0; j < cg->ndirs; j++)
			known |= !strcmp(cg->dirs[j], dir);
		if (!known && !(cg->dirs[cg->ndirs++] = strdup(dir)))
			return -ENOMEM;
		snprintf(file, sizeof(file), "%s/%s", dir, s->cgroups[i].key);
		if ((rc = write_file(file, s->cgroups[i].value))) {
			fprintf(stderr, "vmon: jail: --cgroup %s=%s: cannot write %s: %s\n", s->cgroups[i].key,
				s->cgroups[i].value, file, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

int jail_cgroups_add(const struct jail_cgroups *cg, pid_t pid)
{
	char value[32];
	snprintf(value, sizeof(value), "%d", (int)pid);
	for (unsigned int i = 0; i < cg->ndirs; i++) {
		char file[PATH_MAX + 16];
		snprintf(file, sizeof(file), "%s/cgroup.procs", cg->dirs[i]);
		int rc = write_file(file, value);
		if (rc) {
			fprintf(stderr, "vmon: jail: cannot move the VM into the cgroup %s: %s\n", cg->dirs[i], strerror(-rc));
			return rc;
		}
	}
	return 0;
}

void jail_cgroups_remove(struct jail_cgroups *cg)
{
	for (unsigned int i = 0; i < cg->ndirs; i++) {
		if (rmdir(cg->dirs[i]) < 0 && errno != ENOENT)
			fprintf(stderr, "vmon: jail: cannot remove the cgroup %s: %s\n", cg->dirs[i], strerror(errno));
		free(cg->dirs[i]);
	}
	memset(cg, 0, sizeof(*cg));
}
