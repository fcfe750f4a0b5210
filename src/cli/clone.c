/*
 * vmon clone: starts N clones of a snapshot in the background, each one `vmon restore DIR --clone`
 * in its own process and session with its own name, API socket and log file, waits until every
 * API answers and prints what each clone got.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api/http_client.h"
#include "cli/cli.h"
#include "cli/cli_args.h"
#include "config/config.h"
#include "config/config_sockets.h"
#include "lib/log.h"
#include "lib/util.h"
#include "state/clone_identity.h"
#include "state/snapshot.h"
#include "vm/registry.h"

#define CLONE_MAX_COUNT 256
#define CLONE_DEFAULT_TIMEOUT_S 60
#define CLONE_POLL_MS 50
#define CLONE_API_TIMEOUT_MS 1000

static void usage(FILE *f)
{
	fprintf(f, "usage: vmon clone DIR --count N [options]\n"
		   "\n"
		   "Starts N clones of the snapshot in DIR in the background, each one\n"
		   "`vmon restore DIR --clone --name PREFIX-i --api-sock RUNDIR/PREFIX-i.sock` in its own\n"
		   "session, its console and log in RUNDIR/PREFIX-i.log, a vsock CID and socket (PATH.CID)\n"
		   "and second console (PATH.NAME) of its own; waits until each one's API answers\n"
		   "and prints one line per clone: name, API socket, pid, MAC addresses, vsock CID.\n"
		   "Clones keep running after this command ends: stop them with vmon ctl --vm NAME stop.\n"
		   "\n"
		   "  --count N            how many clones, 1 to %d\n"
		   "  --name-prefix P      clones are named P-1 .. P-N (default: clone)\n"
		   "  --run-dir DIR        where API sockets and logs go (default: DIR/clones)\n"
		   "  --disk-dir DIR       where the clones' disk overlays go (default: the snapshot directory)\n"
		   "  --clock MODE         realtime (default) or continue, as vmon restore --clock\n"
		   "  --timeout S          seconds to wait for every API to answer (default %d)\n"
		   "  --log-level LEVEL    the clones' log level (error, warn, info, debug)\n"
		   "  -h, --help           this help\n"
		   "\n"
		   "Exit status: 0 when every clone answered, 1 when one failed (the others keep running and\n"
		   "are listed), 2 for a bad command line or snapshot (nothing was started).\n",
		CLONE_MAX_COUNT, CLONE_DEFAULT_TIMEOUT_S);
}

enum { OPT_COUNT = 256, OPT_PREFIX, OPT_RUN_DIR, OPT_DISK_DIR, OPT_CLOCK, OPT_TIMEOUT, OPT_LOG_LEVEL };

struct clone_args {
	const char *dir;
	unsigned int count;
	const char *prefix;
	const char *run_dir; /* NULL: DIR/clones */
	const char *disk_dir, *clock, *log_level;
	unsigned int timeout_s;
};

static int parse_uint(const char *opt, const char *s, unsigned int min, unsigned int max, unsigned int *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (!*s || *end || errno || v < min || v > max || s[0] == '-') {
		fprintf(stderr, "vmon: %s takes a whole number from %u to %u, not '%s'\n", opt, min, max, s);
		return -EINVAL;
	}
	*out = (unsigned int)v;
	return 0;
}

static int parse_args(int argc, char **argv, struct clone_args *a)
{
	static const struct option opts[] = {
		{ "count", required_argument, NULL, OPT_COUNT },
		{ "name-prefix", required_argument, NULL, OPT_PREFIX },
		{ "run-dir", required_argument, NULL, OPT_RUN_DIR },
		{ "disk-dir", required_argument, NULL, OPT_DISK_DIR },
		{ "clock", required_argument, NULL, OPT_CLOCK },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	*a = (struct clone_args){ .prefix = "clone", .timeout_s = CLONE_DEFAULT_TIMEOUT_S };
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		enum vm_clock_mode mode;
		switch (c) {
		case OPT_COUNT:
			if (parse_uint("--count", optarg, 1, CLONE_MAX_COUNT, &a->count))
				return -EINVAL;
			break;
		case OPT_PREFIX: a->prefix = optarg; break;
		case OPT_RUN_DIR: a->run_dir = optarg; break;
		case OPT_DISK_DIR: a->disk_dir = optarg; break;
		case OPT_CLOCK:
			if (vm_clock_parse_mode(optarg, &mode)) {
				fprintf(stderr, "vmon: --clock takes realtime or continue, not '%s'\n", optarg);
				return -EINVAL;
			}
			a->clock = optarg;
			break;
		case OPT_TIMEOUT:
			if (parse_uint("--timeout", optarg, 1, 3600, &a->timeout_s))
				return -EINVAL;
			break;
		case OPT_LOG_LEVEL:
			if (cli_check_log_level(optarg))
				return -EINVAL;
			a->log_level = optarg;
			break;
		case 'h': usage(stdout); exit(0);
		default:
			cli_bad_option("clone", argv);
			return -EINVAL;
		}
	}
	if (cli_dir_operand("clone", "vmon clone DIR --count N", argc, argv, &a->dir))
		return -EINVAL;
	if (!a->count) {
		fprintf(stderr, "vmon: say how many clones to start with --count N (1 to %d)\n", CLONE_MAX_COUNT);
		return -EINVAL;
	}
	/* The longest name, PREFIX-N, must be a valid VM name. */
	size_t plen = strlen(a->prefix), ok = plen > 0;
	for (size_t i = 0; i < plen && ok; i++)
		ok = (a->prefix[i] >= 'a' && a->prefix[i] <= 'z') || (a->prefix[i] >= 'A' && a->prefix[i] <= 'Z') ||
		     (a->prefix[i] >= '0' && a->prefix[i] <= '9') || strchr("-_.", a->prefix[i]);
	char longest[16];
	int digits = snprintf(longest, sizeof(longest), "%u", a->count);
	if (!ok || plen + 1 + (size_t)digits > CONFIG_MAX_NAME) {
		fprintf(stderr,
			"vmon: --name-prefix '%s' does not make valid VM names: use letters, digits, '-', '_' or '.', "
			"at most %zu of them for %u clones\n",
			a->prefix, (size_t)CONFIG_MAX_NAME - 1 - (size_t)digits, a->count);
		return -EINVAL;
	}
	return 0;
}

struct clone {
	char name[CONFIG_MAX_NAME + 1];
	char sock[CONFIG_MAX_SOCK_PATH];
	char log[PATH_MAX];
	char vsock[CONFIG_MAX_SOCK_PATH + 32]; /* --vsock value, "" without vsock */
	char console2[PATH_MAX + 96];          /* --console2 value, "" without a second console */
	pid_t pid;
	bool ready, failed;
	char why[256];
	json_t *identity;
};

/* Refuses names another running VM has: vmon ctl --vm NAME must find one VM. */
static int check_names_free(const struct clone_args *a)
{
	struct registry_entry *e = NULL;
	int n = registry_list(&e);
	int rc = 0;
	size_t plen = strlen(a->prefix);
	for (int i = 0; i < n && !rc; i++) {
		if (e[i].stale || strncmp(e[i].name, a->prefix, plen) || e[i].name[plen] != '-')
			continue;
		char *end;
		unsigned long k = strtoul(e[i].name + plen + 1, &end, 10);
		if (!*end && k >= 1 && k <= a->count) {
			fprintf(stderr, "vmon: a VM named %s is already running (pid %d): give another --name-prefix\n",
				e[i].name, e[i].pid);
			rc = -EEXIST;
		}
	}
	free(e);
	return rc;
}

/* Names, sockets, logs and (with vsock) CIDs for every clone, before any is started. */
static int plan_clones(const struct clone_args *a, const struct vm_config *cfg, const char *run_dir, struct clone *cl)
{
	struct vsock_spec vs = { 0 };
	struct console2_spec cs = { 0 };
	uint32_t cids[CLONE_MAX_COUNT];
	char err[256];
	if (cfg->vsock && config_vsock_parse(cfg->vsock, &vs, err, sizeof(err))) {
		fprintf(stderr, "vmon: the snapshot's vsock device: %s\n", err);
		return -EINVAL;
	}
	if (cfg->console2 && config_console2_parse(cfg->console2, &cs, err, sizeof(err))) {
		fprintf(stderr, "vmon: the snapshot's second console: %s\n", err);
		return -EINVAL;
	}
	if (cfg->vsock && clone_cids_pick(cids, a->count))
		return -EIO;
	for (unsigned int i = 0; i < a->count; i++) {
		struct clone *c = &cl[i];
		snprintf(c->name, sizeof(c->name), "%s-%u", a->prefix, i + 1);
		int n = snprintf(c->sock, sizeof(c->sock), "%s/%s.sock", run_dir, c->name);
		if (n < 0 || (size_t)n >= sizeof(c->sock)) {
			fprintf(stderr, "vmon: the API socket path %s/%s.sock is longer than %d bytes: give a shorter --run-dir\n",
				run_dir, c->name, CONFIG_MAX_SOCK_PATH - 1);
			return -ENAMETOOLONG;
		}
		/* Shorter than the socket's path, which fit. */
		if (snprintf(c->log, sizeof(c->log), "%s/%s.log", run_dir, c->name) >= (int)sizeof(c->log))
			return -ENAMETOOLONG;
		/* Each clone's second console on a socket or file of its own: PATH.NAME. */
		if (cfg->console2) {
			n = cs.is_file ? snprintf(c->console2, sizeof(c->console2), "file=%s.%s,max_size=%llu", cs.path, c->name,
						  (unsigned long long)cs.max_size)
				       : snprintf(c->console2, sizeof(c->console2), "socket=%s.%s", cs.path, c->name);
			if (n < 0 || (size_t)n >= sizeof(c->console2) ||
			    (!cs.is_file && strlen(cs.path) + 1 + strlen(c->name) >= CONFIG_MAX_SOCK_PATH)) {
				fprintf(stderr, "vmon: the snapshot's second console path %s is too long to give each clone "
						"its own (PATH.NAME): use vmon restore --clone --console2 for each clone\n",
					cs.path);
				return -ENAMETOOLONG;
			}
		}
		if (cfg->vsock) {
			n = snprintf(c->vsock, sizeof(c->vsock), "cid=%u,uds=%s.%u", cids[i], vs.uds, cids[i]);
			if (n < 0 || (size_t)n >= sizeof(c->vsock) || strlen(vs.uds) + 11 > CONFIG_MAX_VSOCK_UDS) {
				fprintf(stderr, "vmon: the snapshot's vsock socket path %s is too long to give each clone its "
						"own (PATH.CID): use vmon restore --clone --vsock for each clone\n",
					vs.uds);
				return -ENAMETOOLONG;
			}
		}
	}
	return 0;
}

/* Runs in the child: a session of its own, the log file as stdout and stderr, then vmon restore. */
static void exec_clone(const char *self, const struct clone_args *a, const struct clone *c)
{
	setsid();
	int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
	int out = open(c->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (in < 0 || out < 0 || dup2(in, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0 ||
	    dup2(out, STDERR_FILENO) < 0)
		_exit(127);
	const char *argv[24];
	int n = 0;
	argv[n++] = "vmon";
	argv[n++] = "restore";
	argv[n++] = a->dir;
	argv[n++] = "--clone";
	argv[n++] = "--name";
	argv[n++] = c->name;
	argv[n++] = "--api-sock";
	argv[n++] = c->sock;
	if (c->vsock[0]) {
		argv[n++] = "--vsock";
		argv[n++] = c->vsock;
	}
	if (c->console2[0]) {
		argv[n++] = "--console2";
		argv[n++] = c->console2;
	}
	if (a->disk_dir) {
		argv[n++] = "--disk-dir";
		argv[n++] = a->disk_dir;
	}
	if (a->clock) {
		argv[n++] = "--clock";
		argv[n++] = a->clock;
	}
	if (a->log_level) {
		argv[n++] = "--log-level";
		argv[n++] = a->log_level;
	}
	argv[n] = NULL;
	execv(self, (char *const *)argv);
	fprintf(stderr, "vmon clone: cannot run %s: %s\n", self, strerror(errno));
	_exit(127);
}

/* One look at a clone: did it exit, does its API answer with its identity? */
static void poll_clone(struct clone *c)
{
	int status;
	if (waitpid(c->pid, &status, WNOHANG) == c->pid) {
		c->failed = true;
		if (WIFEXITED(status))
			snprintf(c->why, sizeof(c->why), "it exited with status %d", WEXITSTATUS(status));
		else
			snprintf(c->why, sizeof(c->why), "it was killed by signal %d", WTERMSIG(status));
		return;
	}
	json_t *o = http_unix_get_json(c->sock, "/vm", CLONE_API_TIMEOUT_MS);
	json_t *id = json_object_get(o, "identity");
	if (json_is_object(id)) {
		c->identity = json_incref(id);
		c->ready = true;
	}
	json_decref(o);
}

static void print_clone(const struct clone *c)
{
	json_t *macs = json_object_get(c->identity, "macs");
	json_t *cid = json_object_get(c->identity, "vsock_cid");
	printf("%s  %s  pid %d  mac", c->name, c->sock, (int)c->pid);
	size_t i;
	json_t *m;
	if (!json_array_size(macs))
		printf(" -");
	json_array_foreach(macs, i, m) printf("%s%s", i ? "," : " ", json_string_value(m) ? json_string_value(m) : "?");
	if (json_is_integer(cid))
		printf("  cid %lld", (long long)json_integer_value(cid));
	else
		printf("  cid -");
	printf("\n");
}

static int make_dir(const char *path)
{
	if (mkdir(path, 0700) == 0 || errno == EEXIST) {
		struct stat st;
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			return 0;
		errno = ENOTDIR;
	}
	fprintf(stderr, "vmon: cannot use %s for the clones' sockets and logs: %s; give --run-dir\n", path,
		strerror(errno));
	return -errno;
}

int cli_clone(int argc, char **argv)
{
	struct clone_args a;
	if (parse_args(argc, argv, &a))
		return EXIT_USAGE;
	/* Read the snapshot once here, so a wrong DIR is one clear error instead of N failed clones. */
	struct vm_config cfg;
	config_init_defaults(&cfg);
	struct snapshot_image img;
	char err[512];
	int rc = snapshot_open(&img, a.dir, &cfg, err, sizeof(err));
	if (!rc) {
		snapshot_close(&img);
		rc = config_validate(&cfg, err, sizeof(err));
	}
	if (rc) {
		fprintf(stderr, "vmon: %s\n", err);
		config_free(&cfg);
		return EXIT_USAGE;
	}
	char run_dir[PATH_MAX], self[PATH_MAX];
	snprintf(run_dir, sizeof(run_dir), "%s", a.run_dir ? a.run_dir : "");
	if (!a.run_dir && snprintf(run_dir, sizeof(run_dir), "%s/clones", a.dir) >= (int)sizeof(run_dir))
		run_dir[0] = 0;
	ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
	struct clone *cl = calloc(a.count, sizeof(*cl));
	rc = !cl ? -ENOMEM : sl <= 0 ? -errno : 0;
	if (!rc) {
		self[sl] = 0;
		rc = check_names_free(&a);
	}
	if (!rc)
		rc = make_dir(run_dir);
	if (!rc)
		rc = plan_clones(&a, &cfg, run_dir, cl);
	config_free(&cfg);
	if (rc) {
		free(cl);
		return EXIT_USAGE;
	}

	uint64_t t0 = monotonic_ns();
	for (unsigned int i = 0; i < a.count; i++) {
		unlink(cl[i].sock); /* a socket left by an earlier clone of that name would answer for it */
		fflush(NULL);
		pid_t pid = fork();
		if (pid == 0)
			exec_clone(self, &a, &cl[i]);
		if (pid < 0) {
			cl[i].failed = true;
			snprintf(cl[i].why, sizeof(cl[i].why), "it could not be started: %s", strerror(errno));
		}
		cl[i].pid = pid;
	}
	uint64_t deadline = t0 + (uint64_t)a.timeout_s * 1000000000ull;
	for (;;) {
		unsigned int pending = 0;
		for (unsigned int i = 0; i < a.count; i++) {
			if (!cl[i].ready && !cl[i].failed)
				poll_clone(&cl[i]);
			pending += !cl[i].ready && !cl[i].failed;
		}
		if (!pending || monotonic_ns() > deadline)
			break;
		struct timespec ts = { 0, CLONE_POLL_MS * 1000000L };
		nanosleep(&ts, NULL);
	}
	double secs = (double)(monotonic_ns() - t0) / 1e9;
	unsigned int ready = 0;
	for (unsigned int i = 0; i < a.count; i++) {
		struct clone *c = &cl[i];
		if (c->ready) {
			print_clone(c);
			ready++;
			continue;
		}
		if (!c->failed)
			snprintf(c->why, sizeof(c->why), "its API did not answer within %u s (it keeps running; stop it "
							 "with kill %d)", a.timeout_s, (int)c->pid);
		fprintf(stderr, "vmon: clone %s failed: %s; see %s\n", c->name, c->why, c->log);
	}
	fprintf(stderr, "vmon: %u of %u clones of %s running (%.2f s); their logs are in %s\n", ready, a.count, a.dir,
		secs, run_dir);
	for (unsigned int i = 0; i < a.count; i++)
		json_decref(cl[i].identity);
	free(cl);
	return ready == a.count ? 0 : EXIT_GUEST_FAILED;
}
