/* The jail's directory on the host, and the mounts made in it from inside the jail. */
#include "sandbox/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* The dynamic loader and vmon's libraries, shared read-only with the jail (vmon is not static). */
static const char *const lib_dirs[] = { "/lib", "/lib64", "/usr/lib", "/usr/lib64", NULL };

/* Device nodes the VM may open, created when the host has them; mode for the jail's user. */
static const struct {
	const char *path;
	mode_t mode;
} devices[] = {
	{ "/dev/kvm", 0660 },
	{ "/dev/net/tun", 0660 },
	{ "/dev/urandom", 0666 },
};

static int report(const char *what, const char *path, int rc)
{
	fprintf(stderr, "vmon: jail: %s %s: %s\n", what, path, strerror(-rc));
	return rc;
}

/* mkdir -p of an in-jail path; the directories it creates belong to uid:gid (or root when uid is 0). */
static int make_dirs(const char *root, const char *inside, uid_t uid, gid_t gid, mode_t mode)
{
	char path[PATH_MAX];
	size_t rlen = strlen(root);
	if (snprintf(path, sizeof(path), "%s%s", root, inside) >= (int)sizeof(path))
		return report("cannot create", inside, -ENAMETOOLONG);
	for (char *p = path + rlen + 1; ; p++) {
		if (*p && *p != '/')
			continue;
		char c = *p;
		*p = 0;
		if (mkdir(path, mode) == 0) {
			if (uid && chown(path, uid, gid) < 0)
				return report("cannot give the jail's user", path, -errno);
		} else if (errno != EEXIST) {
			return report("cannot create", path, -errno);
		}
		if (!c)
			return 0;
		*p = c;
	}
}

static int copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -errno;
	int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (out < 0) {
		int rc = -errno;
		close(in);
		return rc;
	}
	int rc = 0;
	ssize_t n;
	while ((n = sendfile(out, in, NULL, 1 << 30)) > 0)
		;
	if (n < 0)
		rc = -errno;
	close(in);
	if (close(out) < 0 && !rc)
		rc = -errno;
	return rc;
}

/* Hard link when the jail is on the file's file system, else a copy. */
static int place_file(const struct jail_spec *s, const struct jail_file *f, const char *root)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s%s", root, f->inside) >= (int)sizeof(path))
		return report("cannot place", f->host, -ENAMETOOLONG);
	int rc = link(f->host, path) < 0 ? -errno : 0;
	if (rc == -EXDEV)
		rc = copy_file(f->host, path);
	if (rc)
		return report("cannot link or copy into the jail", f->host, rc);
	/* The VM writes a writable disk as uid; a hard link shares the owner with the host file. */
	if (f->writable && chown(path, s->uid, s->gid) < 0)
		return report("cannot give the jail's user", path, -errno);
	return 0;
}

static int make_device(const char *root, const char *dev, mode_t mode, uid_t uid, gid_t gid)
{
	struct stat st;
	if (stat(dev, &st) < 0 || !S_ISCHR(st.st_mode))
		return 0; /* not on this host: the VM reports it if it needs the device */
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s%s", root, dev);
	const char *slash = strrchr(dev, '/');
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - dev), dev);
	int rc = make_dirs(root, dir, 0, 0, 0755);
	if (rc)
		return rc;
	if (mknod(path, S_IFCHR | mode, st.st_rdev) < 0)
		return report("cannot create the device node", path, -errno);
	if (chown(path, uid, gid) < 0 || chmod(path, mode) < 0) /* chmod: mknod's mode went through the umask */
		return report("cannot give the jail's user", path, -errno);
	return 0;
}

/* The library directories as on the host: a symlink copied as a symlink, a directory as a mount point. */
static int make_lib_points(const char *root)
{
	for (const char *const *d = lib_dirs; *d; d++) {
		struct stat st;
		if (lstat(*d, &st) < 0)
			continue;
		char path[PATH_MAX], target[PATH_MAX];
		snprintf(path, sizeof(path), "%s%s", root, *d);
		if (S_ISLNK(st.st_mode)) {
			ssize_t n = readlink(*d, target, sizeof(target) - 1);
			if (n < 0)
				return report("cannot read the link", *d, -errno);
			target[n] = 0;
			int rc = make_dirs(root, "/usr", 0, 0, 0755);
			if (rc)
				return rc;
			if (symlink(target, path) < 0)
				return report("cannot create", path, -errno);
		} else if (S_ISDIR(st.st_mode)) {
			int rc = make_dirs(root, *d, 0, 0, 0755);
			if (rc)
				return rc;
		}
	}
	return 0;
}

int jail_root_build(const struct jail_spec *s, const char *root)
{
	struct stat st;
	if (stat(s->base, &st) < 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "vmon: jail: the base directory %s does not exist: create it (owned by root, mode 0755) "
				"or give another with --base\n", s->base);
		return -ENOENT;
	}
	/* Another user who can write in BASE could swap the jail's directories while root builds them. */
	if (st.st_uid != 0 || (st.st_mode & 022)) {
		fprintf(stderr, "vmon: jail: the base directory %s must belong to root and be writable by root only\n",
			s->base);
		return -EPERM;
	}
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/%s", s->base, s->id);
	/* A jail left over from an earlier VM holds what its user planted: never reuse one. */
	if (mkdir(dir, 0755) < 0) {
		int rc = -errno;
		if (rc == -EEXIST)
			fprintf(stderr, "vmon: jail: %s already exists (an earlier VM's jail?): remove it, or choose another "
					"--id\n", dir);
		else
			report("cannot create", dir, rc);
		return rc;
	}
	if (mkdir(root, 0755) < 0)
		return report("cannot create", root, -errno);
	int rc = make_lib_points(root);
	for (unsigned int i = 0; rc == 0 && i < s->nfiles; i++)
		rc = place_file(s, &s->files[i], root);
	for (size_t i = 0; rc == 0 && i < sizeof(devices) / sizeof(devices[0]); i++)
		rc = make_device(root, devices[i].path, devices[i].mode, s->uid, s->gid);
	/* /run for the VM's registry and sockets; /proc is mounted inside the PID namespace. */
	if (rc == 0)
		rc = make_dirs(root, "/run", s->uid, s->gid, 0750);
	if (rc == 0)
		rc = make_dirs(root, "/proc", 0, 0, 0555);
	for (unsigned int i = 0; rc == 0 && i < s->noutputs; i++) {
		char parent[PATH_MAX];
		snprintf(parent, sizeof(parent), "%.*s", (int)(strrchr(s->outputs[i], '/') - s->outputs[i]),
			 s->outputs[i]);
		rc = make_dirs(root, parent, s->uid, s->gid, 0750);
	}
	return rc;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if ((type == FTW_DP ? rmdir(path) : unlink(path)) < 0)
		fprintf(stderr, "vmon: jail: cannot remove %s: %s\n", path, strerror(errno));
	return 0;
}

void jail_root_remove(const struct jail_spec *s)
{
	char dir[PATH_MAX];
	if (snprintf(dir, sizeof(dir), "%s/%s", s->base, s->id) < (int)sizeof(dir))
		nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

int jail_root_mount(const char *root)
{
	char path[PATH_MAX];
	for (const char *const *d = lib_dirs; *d; d++) {
		struct stat st;
		if (lstat(*d, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		snprintf(path, sizeof(path), "%s%s", root, *d);
		if (mount(*d, path, NULL, MS_BIND | MS_REC, NULL) < 0 ||
		    mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
			return report("cannot mount read-only into the jail", *d, -errno);
	}
	snprintf(path, sizeof(path), "%s/proc", root);
	if (mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return report("cannot mount /proc in", root, -errno);
	return 0;
}
