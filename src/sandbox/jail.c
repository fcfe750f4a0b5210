/* `vmon jail`: the jailer's steps, in order, and the outer process that waits for the VM. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/close_range.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config.h"
#include "sandbox/jail.h"
#include "vm/registry.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vmon jail --id NAME --uid UID --gid GID [--base DIR] [--netns PATH]\n"
		"                 [--cgroup KEY=VALUE]... -- run <vmon run options>\n"
		"\n"
		"Runs `vmon run` as UID:GID in new mount, PID, IPC and UTS namespaces, rooted in\n"
		"BASE/NAME/root, which holds only the kernel, initrd and disks named by the run options\n"
		"(hard-linked or copied in) and /dev/kvm, /dev/net/tun, /dev/urandom. Must run as root.\n"
		"\n"
		"  --id NAME            the jail's name: letters, digits, '-' and '_', at most %d\n"
		"  --uid UID, --gid GID user and group the VM runs as (a number or a name; not root)\n"
		"  --base DIR           where jails live (default %s); must exist\n"
		"  --netns PATH         join this network namespace (e.g. /var/run/netns/NAME)\n"
		"  --cgroup KEY=VALUE   a cgroup limit: cpu.max, memory.max, pids.max (cgroup v2) or\n"
		"                       cpu.cfs_quota_us, memory.limit_in_bytes, pids.max (v1), ...\n"
		"\n"
		"Paths vmon run writes (--api-sock, --log-file, --console2, --vsock) are inside the jail,\n"
		"e.g. --api-sock /run/api.sock, seen by the host as BASE/NAME/root/run/api.sock.\n"
		"--config is not supported. See docs/security.md.\n",
		JAIL_MAX_ID, JAIL_DEFAULT_BASE);
}

static volatile sig_atomic_t vm_pid;

static void forward_signal(int sig)
{
	if (vm_pid > 0)
		kill((pid_t)vm_pid, sig);
}

static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };

/* A clean environment: vmon's registry inside the jail, the terminal type, sanitizer options. */
static char **jail_environment(void)
{
	static char *env[8] = { "PATH=/", "VMON_RUNTIME_DIR=/run/vmon" };
	int n = 2;
	static const char *const keep[] = { "TERM", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS" };
	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
		const char *v = getenv(keep[i]);
		/* Only the child runs this, and it executes or exits right after. */
		if (v && asprintf(&env[n], "%s=%s", keep[i], v) >= 0)
			n++;
	}
	env[n] = NULL;
	return env;
}

/*
 * The child, pid 1 of the new PID namespace: waits until the jailer has put it in the cgroups,
 * then the namespaces, pivot_root, the uid drop and exec. Returns only on failure.
 */
static int enter_jail(const struct jail_spec *s, const char *root, int ready_fd, int netns_fd, int exe_fd)
{
	char c;
	if (read(ready_fd, &c, 1) != 1)
		return -ECANCELED; /* the jailer failed and said why */
	const char *step;
	if ((step = "unshare", unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS) < 0) ||
	    (step = "setns (--netns)", netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) < 0) ||
	    (step = "sethostname", sethostname(s->id, strlen(s->id)) < 0) ||
	    /* Nothing mounted from now on propagates back to the host. */
	    (step = "making mounts private", mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) ||
	    (step = "binding the jail root", mount(root, root, NULL, MS_BIND, NULL) < 0))
		goto fail;
	if (jail_root_mount(root))
		return -EIO;
	if ((step = "chdir", chdir(root) < 0) ||
	    (step = "pivot_root", syscall(SYS_pivot_root, ".", ".") < 0) ||
	    (step = "unmounting the old root", umount2(".", MNT_DETACH) < 0) ||
	    (step = "chdir", chdir("/") < 0) ||
	    (step = "setgroups", setgroups(0, NULL) < 0) ||
	    (step = "setgid", setresgid(s->gid, s->gid, s->gid) < 0) ||
	    (step = "setuid", setresuid(s->uid, s->uid, s->uid) < 0) ||
	    (step = "no_new_privs", prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0))
		goto fail;
	/* A descriptor inherited from the jailer's caller could lead back out of the jail. */
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
		step = "closing inherited descriptors";
		goto fail;
	}
	umask(077);
	/* By fd: the binary itself is not in the jail, only the libraries it loads. */
	syscall(SYS_execveat, exe_fd, "", s->run_argv, jail_environment(), AT_EMPTY_PATH);
	step = "exec vmon run";
fail:
	fprintf(stderr, "vmon: jail: %s failed: %s\n", step, strerror(errno));
	return -errno;
}

/* The host's registry entry: the jailer's pid, the API socket as the host reaches it. */
static void register_on_host(const struct jail_spec *s, const char *root, char *entry, size_t len)
{
	struct vm_config cfg;
	config_init_defaults(&cfg);
	cfg.cpus = s->cpus;
	if (s->memory)
		cfg.memory = s->memory;
	cfg.name = s->vm_name ? strdup(s->vm_name) : NULL;
	cfg.kernel_path = strdup(s->kernel->host);
	if (s->api_sock && asprintf(&cfg.api_sock, "%s%s", root, s->api_sock) < 0)
		cfg.api_sock = NULL;
	registry_register(&cfg, entry, len);
	config_free(&cfg);
}

static int check_api_path(const struct jail_spec *s, const char *root)
{
	struct sockaddr_un sa;
	if (s->api_sock && strlen(root) + strlen(s->api_sock) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "vmon: jail: the API socket %s%s is too long for a Unix socket address on the host: "
				"use a shorter --base, --id or --api-sock\n", root, s->api_sock);
		return -ENAMETOOLONG;
	}
	return 0;
}

static int wait_vm(pid_t pid)
{
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return EXIT_GUEST_FAILED;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Forks the VM's process into a new PID namespace and waits for it. */
static int run_jailed(const struct jail_spec *s, const char *root, struct jail_cgroups *cg, int netns_fd,
		      int exe_fd)
{
	int ready[2];
	/* Kept to return to afterwards: the jailer's own later children (such as the leak checker's
	 * helper in sanitizer builds) belong in the host's PID namespace, not the VM's. */
	int host_pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
	if (host_pidns < 0 || pipe2(ready, O_CLOEXEC) < 0 || unshare(CLONE_NEWPID) < 0) {
		fprintf(stderr, "vmon: jail: cannot create the PID namespace: %s\n", strerror(errno));
		if (host_pidns >= 0)
			close(host_pidns);
		return EXIT_USAGE;
	}
	pid_t pid = fork();
	if (pid != 0) {
		if (setns(host_pidns, CLONE_NEWPID) < 0)
			fprintf(stderr, "vmon: jail: cannot return to the host's PID namespace: %s\n", strerror(errno));
		close(host_pidns);
	}
	if (pid == 0) {
		close(ready[1]);
		enter_jail(s, root, ready[0], netns_fd, exe_fd);
		_exit(EXIT_USAGE);
	}
	close(ready[0]);
	int status = EXIT_USAGE;
	if (pid < 0) {
		fprintf(stderr, "vmon: jail: fork: %s\n", strerror(errno));
	} else {
		vm_pid = pid;
		struct sigaction sa = { .sa_handler = forward_signal, .sa_flags = SA_RESTART };
		for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
			sigaction(forwarded[i], &sa, NULL);
		char entry[PATH_MAX] = "";
		if (jail_cgroups_add(cg, pid) == 0) {
			register_on_host(s, root, entry, sizeof(entry));
			if (write(ready[1], "", 1) != 1)
				kill(pid, SIGKILL);
		}
		close(ready[1]); /* without the byte: the child gives up */
		status = wait_vm(pid);
		registry_unregister(entry);
	}
	close(ready[1]);
	return status;
}

int cli_jail(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
	if (geteuid() != 0) {
		fprintf(stderr, "vmon: jail: vmon jail must run as root (it creates device nodes, namespaces and "
				"cgroups, then drops to --uid)\n");
		return EXIT_USAGE;
	}
	struct jail_spec s;
	char err[512], root[PATH_MAX];
	int status = EXIT_USAGE;
	if (jail_parse(argc, argv, &s, err, sizeof(err))) {
		fprintf(stderr, "vmon: jail: %s\n", err);
		goto out;
	}
	if (jail_root_path(&s, root, sizeof(root))) {
		fprintf(stderr, "vmon: jail: %s/%s/root is too long a path: use a shorter --base\n", s.base, s.id);
		goto out;
	}
	if (check_api_path(&s, root))
		goto out;
	int netns_fd = -1;
	if (s.netns && (netns_fd = open(s.netns, O_RDONLY | O_CLOEXEC)) < 0) {
		fprintf(stderr, "vmon: jail: --netns %s: %s\n", s.netns, strerror(errno));
		goto out;
	}
	struct jail_cgroups cg = { 0 };
	int exe_fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (exe_fd < 0) {
		fprintf(stderr, "vmon: jail: cannot open the vmon binary: %s\n", strerror(errno));
	} else {
		/* Creating BASE/ID claims the id, so the cgroups come after it. */
		int rc = jail_root_build(&s, root);
		if (rc == 0 && (rc = jail_cgroups_create(&s, &cg)) == 0)
			status = run_jailed(&s, root, &cg, netns_fd, exe_fd);
		else if (rc != -EEXIST)
			jail_root_remove(&s); /* nothing ran in it yet: leave no half-made jail */
		close(exe_fd);
	}
	jail_cgroups_remove(&cg);
	if (netns_fd >= 0)
		close(netns_fd);
out:
	jail_spec_free(&s);
	return status;
}
