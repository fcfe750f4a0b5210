#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "config/config.h"
#include "devices/console.h"
#include "lib/log.h"
#include "lib/util.h"
#include "vm/platform.h"
#include "vm/vcpu.h"
#include "vm/vm.h"
#include "vm/vm_boot.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vmon run --kernel PATH [options]\n"
		"\n"
		"Boots a Linux kernel (bzImage or ELF vmlinux) with its serial console on this terminal.\n"
		"Type Ctrl-A then x to stop the VM.\n"
		"\n"
		"  --kernel PATH        kernel to boot (bzImage or ELF vmlinux)\n"
		"  --initrd PATH        initial ramdisk (cpio archive)\n"
		"  --cmdline STR        kernel command line (default: \"%s\")\n"
		"  --cpus N             number of vCPUs (default 1)\n"
		"  --memory SIZE        guest RAM, e.g. 256M or 2G (default 256M)\n"
		"  --host-workarounds auto|on|off\n"
		"                       workarounds for KVM hosts that are not hardware VT-x/AMD-V\n"
		"                       (default auto: probe the host at start-up; see docs/host-quirks.md)\n"
		"  --log-level LEVEL    error, warn, info or debug (default info)\n"
		"  -h, --help           this help\n",
		VM_DEFAULT_CMDLINE);
}

enum { OPT_KERNEL = 256, OPT_INITRD, OPT_CMDLINE, OPT_CPUS, OPT_MEMORY, OPT_WORKAROUNDS, OPT_LOG_LEVEL };

static int parse_args(int argc, char **argv, struct vm_config *cfg)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, OPT_KERNEL },
		{ "initrd", required_argument, NULL, OPT_INITRD },
		{ "cmdline", required_argument, NULL, OPT_CMDLINE },
		{ "cpus", required_argument, NULL, OPT_CPUS },
		{ "memory", required_argument, NULL, OPT_MEMORY },
		{ "host-workarounds", required_argument, NULL, OPT_WORKAROUNDS },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_KERNEL: free(cfg->kernel_path); cfg->kernel_path = strdup(optarg); break;
		case OPT_INITRD: free(cfg->initrd_path); cfg->initrd_path = strdup(optarg); break;
		case OPT_CMDLINE: free(cfg->cmdline); cfg->cmdline = strdup(optarg); break;
		case OPT_CPUS: {
			char *end;
			errno = 0;
			long n = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || n < 0 || n > 100000) {
				fprintf(stderr, "vmon: --cpus takes a whole number, not '%s'\n", optarg);
				return -EINVAL;
			}
			cfg->cpus = (unsigned int)n;
			break;
		}
		case OPT_MEMORY:
			if (parse_size(optarg, &cfg->memory)) {
				fprintf(stderr, "vmon: --memory takes a size like 256M or 2G, not '%s'\n", optarg);
				return -EINVAL;
			}
			break;
		case OPT_WORKAROUNDS:
			if (!strcmp(optarg, "auto"))
				cfg->workarounds = HOST_WORKAROUNDS_AUTO;
			else if (!strcmp(optarg, "on"))
				cfg->workarounds = HOST_WORKAROUNDS_ON;
			else if (!strcmp(optarg, "off"))
				cfg->workarounds = HOST_WORKAROUNDS_OFF;
			else {
				fprintf(stderr, "vmon: --host-workarounds takes auto, on or off, not '%s'\n", optarg);
				return -EINVAL;
			}
			break;
		case OPT_LOG_LEVEL:
			if (log_parse_level(optarg) < 0) {
				fprintf(stderr, "vmon: --log-level takes error, warn, info or debug, not '%s'\n", optarg);
				return -EINVAL;
			}
			free(cfg->log_level);
			cfg->log_level = strdup(optarg);
			break;
		case 'h': usage(stdout); exit(0);
		default:
			if (optopt)
				fprintf(stderr, "vmon: option '%s' needs a value (see vmon run --help)\n", argv[optind - 1]);
			else
				fprintf(stderr, "vmon: unknown option '%s' (see vmon run --help)\n", argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vmon: unexpected argument '%s' (see vmon run --help)\n", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

struct signal_waiter {
	struct vm *vm;
	sigset_t set;
	_Atomic bool done;
};

/* Turns SIGINT/SIGTERM/SIGHUP into a clean stop; the VM's threads never see them. */
static void *signal_thread(void *arg)
{
	struct signal_waiter *w = arg;
	for (;;) {
		int sig;
		if (sigwait(&w->set, &sig) != 0)
			continue;
		if (atomic_load(&w->done))
			return NULL;
		vm_request_stop(w->vm, VM_STOP_SIGNAL, "stopped on %s", strsignal(sig));
	}
}

static void on_console_quit(void *opaque)
{
	vm_request_stop(opaque, VM_STOP_SIGNAL, "stopped from the console (Ctrl-A x)");
}

static int exit_status(enum vm_stop_reason r)
{
	switch (r) {
	case VM_STOP_POWEROFF:
	case VM_STOP_REBOOT:
	case VM_STOP_SIGNAL:
		return EXIT_GUEST_OK;
	default:
		return EXIT_GUEST_FAILED;
	}
}

static int run_vm(struct vm *vm, const struct vm_config *cfg)
{
	int rc = vm_create(vm, cfg);
	if (rc)
		return rc;
	if ((rc = platform_create(vm, console_write_stdout, NULL)))
		return rc;
	if ((rc = vm_boot_setup(vm)))
		return rc;

	struct console *console = NULL;
	struct platform *p = vm->platform;
	if ((rc = console_start(&console, &p->com1, on_console_quit, vm)))
		return rc;

	for (unsigned int i = 0; i < vm->ncpus && rc == 0; i++)
		rc = vcpu_start(vm->vcpus[i]);
	if (rc)
		vm_request_stop(vm, VM_STOP_ERROR, "could not start all vCPUs");
	else {
		vm->started_ns = monotonic_ns();
		atomic_store(&vm->state, VM_RUNNING);
	}
	/* A stop requested before RUNNING was stored must not be overwritten; recheck under the lock. */
	pthread_mutex_lock(&vm->lock);
	if (atomic_load(&vm->stop_reason) != VM_STOP_NONE)
		atomic_store(&vm->state, VM_STOPPED);
	while (atomic_load(&vm->state) != VM_STOPPED)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);

	for (unsigned int i = 0; i < vm->ncpus; i++)
		vcpu_kick(vm->vcpus[i]);
	for (unsigned int i = 0; i < vm->ncpus; i++)
		vcpu_join(vm->vcpus[i]);
	console_stop(console);
	return 0;
}

int cli_run(int argc, char **argv)
{
	struct vm_config cfg;
	config_init_defaults(&cfg);
	char err[512];
	if (parse_args(argc, argv, &cfg) || (config_validate(&cfg, err, sizeof(err)) && fprintf(stderr, "vmon: %s\n", err))) {
		config_free(&cfg);
		return EXIT_USAGE;
	}
	if (cfg.log_level)
		log_set_level((enum log_level)log_parse_level(cfg.log_level));

	/* A closed stdout (e.g. `vmon run ... | head`) must end the console output, not vmon. */
	signal(SIGPIPE, SIG_IGN);

	struct signal_waiter waiter;
	sigemptyset(&waiter.set);
	sigaddset(&waiter.set, SIGINT);
	sigaddset(&waiter.set, SIGTERM);
	sigaddset(&waiter.set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &waiter.set, NULL);

	static struct vm vm;
	waiter.vm = &vm;
	atomic_store(&waiter.done, false);
	pthread_t sig_thread;
	bool have_sig_thread = pthread_create(&sig_thread, NULL, signal_thread, &waiter) == 0;
	int rc = run_vm(&vm, &cfg);
	if (have_sig_thread) {
		atomic_store(&waiter.done, true);
		pthread_kill(sig_thread, SIGTERM);
		pthread_join(sig_thread, NULL);
	}
	int status;
	if (rc) {
		/* Setup failed: the reason was logged where it was found. */
		status = (rc == -EINVAL || rc == -ENOENT || rc == -EACCES || rc == -E2BIG || rc == -ENOEXEC ||
			  rc == -EISDIR || rc == -ENOMEM)
				 ? EXIT_USAGE
				 : EXIT_GUEST_FAILED;
		for (unsigned int i = 0; i < vm.ncpus; i++)
			vcpu_join(vm.vcpus[i]);
	} else {
		enum vm_stop_reason reason = (enum vm_stop_reason)atomic_load(&vm.stop_reason);
		status = exit_status(reason);
		if (status == EXIT_GUEST_OK)
			log_info("vm", "%s", vm.stop_message);
		else
			log_error("vm", "%s", vm.stop_message);
	}

	platform_destroy(&vm);
	vm_destroy(&vm);
	config_free(&cfg);
	return status;
}
