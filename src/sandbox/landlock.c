#include "sandbox/landlock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/landlock.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "config/config_net.h"
#include "config/config_sockets.h"
#include "lib/log.h"
#include "lib/util.h"
#include "vm/registry.h"

#define COMP "sandbox"

/* Rights of ABIs newer than the build host's <linux/landlock.h>; the values are kernel ABI. */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#ifndef LANDLOCK_ACCESS_NET_BIND_TCP
#define LANDLOCK_ACCESS_NET_BIND_TCP (1ULL << 0)
#define LANDLOCK_ACCESS_NET_CONNECT_TCP (1ULL << 1)
#endif

/* The kernel's struct landlock_ruleset_attr as of ABI 4; older kernels take its first field. */
struct ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net;
};

#define FS_RIGHTS_ABI1 ((LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1)
/* mkostemp opens its files for reading and writing; the directory is listed for stale temporaries. */
#define SNAPSHOT_RIGHTS                                                                        \
	(LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_MAKE_DIR |  \
	 LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_FILE | \
	 LANDLOCK_ACCESS_FS_TRUNCATE)
#define PROC_RIGHTS (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)

/* Directories the main thread removes a socket or the registry entry from at exit. */
enum { REMOVE_API, REMOVE_VSOCK, REMOVE_CONSOLE2, REMOVE_REGISTRY, REMOVE_COUNT };

/* Set by landlock_configure() before any thread enters a role; read-only afterwards. */
static struct {
	bool enabled;
	bool user_net;
	struct ruleset_attr handled;
	size_t attr_size;
	char snapshot_dirs[3][PATH_MAX]; /* "" = unused */
	char remove_dirs[REMOVE_COUNT][PATH_MAX];
} ll;

int landlock_abi(void)
{
	long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	return v < 0 ? -errno : (int)v;
}

void landlock_reset(void)
{
	memset(&ll, 0, sizeof(ll));
}

/* The directory part of path ("." for a bare name); "" for no path. */
static void dir_of(const char *path, char *out, size_t len)
{
	out[0] = 0;
	if (!path || !*path)
		return;
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(out, len, ".");
	else if (slash == path)
		snprintf(out, len, "/");
	else
		snprintf(out, len, "%.*s", (int)(slash - path), path);
}

static bool has_user_net(const struct vm_config *cfg)
{
	for (unsigned int i = 0; i < cfg->nnets; i++) {
		struct net_spec spec;
		char err[256];
		if (!config_net_parse(cfg->nets[i], &spec, err, sizeof(err)) && spec.kind == NET_USER)
			return true;
	}
	return false;
}

static void collect_remove_dirs(const struct vm_config *cfg)
{
	dir_of(cfg->api_sock, ll.remove_dirs[REMOVE_API], PATH_MAX);
	char err[256];
	struct vsock_spec vsock;
	if (cfg->vsock && !config_vsock_parse(cfg->vsock, &vsock, err, sizeof(err)))
		dir_of(vsock.uds, ll.remove_dirs[REMOVE_VSOCK], PATH_MAX);
	struct console2_spec console2;
	if (cfg->console2 && !config_console2_parse(cfg->console2, &console2, err, sizeof(err)) && !console2.is_file)
		dir_of(console2.path, ll.remove_dirs[REMOVE_CONSOLE2], PATH_MAX);
	if (registry_dir(ll.remove_dirs[REMOVE_REGISTRY], PATH_MAX))
		ll.remove_dirs[REMOVE_REGISTRY][0] = 0;
}

static int usable_dir(const char *dir, char *out)
{
	struct stat st;
	int rc = stat(dir, &st) < 0 ? -errno : S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
	if (!rc && snprintf(out, PATH_MAX, "%s", dir) >= PATH_MAX)
		rc = -ENAMETOOLONG;
	return rc;
}

/*
 * Where snapshots may go: --snapshot-dir, which must be a directory, else the temporary
 * directories, /tmp, /var/tmp and $TMPDIR, those of them that exist.
 */
static int choose_snapshot_dirs(const struct vm_config *cfg)
{
	if (cfg->snapshot_dir && *cfg->snapshot_dir) {
		int rc = usable_dir(cfg->snapshot_dir, ll.snapshot_dirs[0]);
		if (rc)
			log_error(COMP, "--snapshot-dir %s: %s; name an existing directory for the API's snapshots",
				  cfg->snapshot_dir, strerror(-rc));
		return rc;
	}
	const char *tmpdir = getenv("TMPDIR");
	if (usable_dir("/tmp", ll.snapshot_dirs[0]))
		ll.snapshot_dirs[0][0] = 0;
	if (usable_dir("/var/tmp", ll.snapshot_dirs[1]))
		ll.snapshot_dirs[1][0] = 0;
	if (tmpdir && tmpdir[0] == '/' && strcmp(tmpdir, "/tmp") && strcmp(tmpdir, "/var/tmp") &&
	    usable_dir(tmpdir, ll.snapshot_dirs[2]))
		ll.snapshot_dirs[2][0] = 0;
	return 0;
}

size_t landlock_snapshot_dirs(char *buf, size_t len)
{
	size_t n = 0;
	if (len)
		buf[0] = 0;
	for (size_t i = 0; ll.enabled && i < ARRAY_SIZE(ll.snapshot_dirs); i++)
		if (ll.snapshot_dirs[i][0] && n < len)
			n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? ", " : "", ll.snapshot_dirs[i]);
	return n < len ? n : len;
}

static const char *unavailable_reason(int rc)
{
	if (rc == -ENOSYS)
		return "the kernel is built without CONFIG_SECURITY_LANDLOCK";
	if (rc == -EOPNOTSUPP)
		return "it is built in but not enabled: add landlock to the kernel's lsm= boot parameter";
	return strerror(-rc);
}

int landlock_configure(const struct vm_config *cfg)
{
	landlock_reset();
	if (!cfg->landlock) {
		log_info(COMP, "Landlock is off (--landlock off): file access is not limited beyond the seccomp filters");
		return 0;
	}
	int abi = landlock_abi();
	if (abi < 0) {
		log_info(COMP, "Landlock is not available on this kernel (%s): file access is not limited beyond the "
			       "seccomp filters", unavailable_reason(abi));
		return 0;
	}
	int rc = choose_snapshot_dirs(cfg);
	if (rc)
		return rc;
	collect_remove_dirs(cfg);

	ll.handled.handled_access_fs = FS_RIGHTS_ABI1;
	if (abi >= 2)
		ll.handled.handled_access_fs |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		ll.handled.handled_access_fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
	if (abi >= 5)
		ll.handled.handled_access_fs |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
	/* User-mode networking makes the TCP connections (and listens) the guest asks for. */
	bool user_net = ll.user_net = has_user_net(cfg);
	if (abi >= 4 && !user_net)
		ll.handled.handled_access_net = LANDLOCK_ACCESS_NET_BIND_TCP | LANDLOCK_ACCESS_NET_CONNECT_TCP;
	ll.attr_size = abi >= 4 ? sizeof(ll.handled) : sizeof(ll.handled.handled_access_fs);
	ll.enabled = true;

	char dirs[3 * PATH_MAX];
	landlock_snapshot_dirs(dirs, sizeof(dirs));
	log_info(COMP, "Landlock ABI %d: file access limited to writing snapshots beneath %s%s, reading "
		       "/proc/self, the resolver's files and " MIGRATION_CERT_DIR " and removing vmon's sockets and registry entry at exit; TCP %s", abi,
		 *dirs ? dirs : "no directory", cfg->snapshot_dir ? "" : " (no --snapshot-dir)",
		 abi < 4 ? "not limited (the kernel has Landlock ABI < 4)"
		 : user_net ? "not limited (--net user connects where the guest asks)"
			    : "bind denied, connect only from the API thread (a migration's destination)");
	return 0;
}

/* Allows rights beneath path; a path that is gone (nothing to remove there) is skipped. */
static int allow_beneath(int ruleset, const char *path, uint64_t rights)
{
	if (!*path)
		return 0;
	int fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	struct landlock_path_beneath_attr rule = {
		.allowed_access = rights & ll.handled.handled_access_fs,
		.parent_fd = fd,
	};
	int rc = syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

/*
 * What a migration's source reads on the API thread after start-up: the resolver's files, for a
 * destination given by name, and the certificates beneath /etc/vmon (or a snapshot directory).
 */
static const char *const migration_reads[] = {
	"/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf", MIGRATION_CERT_DIR,
};

static int add_role_rules(int ruleset, enum sandbox_role role, const char **failed)
{
	/* Metrics, the snapshot's page map, and the sanitizers' reports read the process's own files. */
	int rc = allow_beneath(ruleset, *failed = "/proc/self", PROC_RIGHTS);
	/* libslirp reads the host's resolver list when the guest first asks 10.0.2.3 for a name. */
	if (!rc && role == SANDBOX_EVENT_LOOP && ll.user_net)
		rc = allow_beneath(ruleset, *failed = "/etc/resolv.conf", LANDLOCK_ACCESS_FS_READ_FILE);
	for (size_t i = 0; !rc && role == SANDBOX_API && i < ARRAY_SIZE(ll.snapshot_dirs); i++)
		rc = allow_beneath(ruleset, *failed = ll.snapshot_dirs[i], SNAPSHOT_RIGHTS);
	for (size_t i = 0; !rc && role == SANDBOX_API && i < ARRAY_SIZE(migration_reads); i++)
		rc = allow_beneath(ruleset, *failed = migration_reads[i], LANDLOCK_ACCESS_FS_READ_FILE);
	for (int i = 0; !rc && role == SANDBOX_MAIN && i < REMOVE_COUNT; i++)
		rc = allow_beneath(ruleset, *failed = ll.remove_dirs[i], LANDLOCK_ACCESS_FS_REMOVE_FILE);
	return rc;
}

int landlock_enter(enum sandbox_role role)
{
	if (!ll.enabled)
		return 0;
	/* The API thread connects to a migration's destination, whose address comes with the request. */
	struct ruleset_attr handled = ll.handled;
	if (role == SANDBOX_API)
		handled.handled_access_net &= ~(uint64_t)LANDLOCK_ACCESS_NET_CONNECT_TCP;
	int ruleset = (int)syscall(SYS_landlock_create_ruleset, &handled, ll.attr_size, 0);
	if (ruleset < 0) {
		int rc = -errno;
		log_error(COMP, "cannot create the Landlock ruleset of the %s thread: %s (run with --landlock off to do "
				"without)", sandbox_role_name(role), strerror(-rc));
		return rc;
	}
	const char *failed = "";
	int rc = add_role_rules(ruleset, role, &failed);
	if (rc)
		log_error(COMP, "cannot allow the %s thread access to %s with Landlock: %s", sandbox_role_name(role),
			  failed, strerror(-rc));
	else if (syscall(SYS_landlock_restrict_self, ruleset, 0) < 0) {
		rc = -errno;
		log_error(COMP, "cannot enforce Landlock on the %s thread: %s", sandbox_role_name(role), strerror(-rc));
	}
	close(ruleset);
	return rc;
}
