#include "cli/vm_runner.h"

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "api/api_server.h"
#include "cli/cli.h"
#include "devices/console.h"
#include "devices/console_output.h"
#include "lib/log.h"
#include "lib/util.h"
#include "sandbox/landlock.h"
#include "sandbox/sandbox.h"
#include "vm/platform.h"
#include "vm/registry.h"
#include "vm/vcpu.h"
#include "vm/vm.h"

/* The registry and clients in other directories need the socket's absolute path. */
static int absolute_api_sock(struct vm_config *cfg)
{
	if (!cfg->api_sock || cfg->api_sock[0] == '/')
		return 0;
	char cwd[4096];
	if (!getcwd(cwd, sizeof(cwd)))
		return -errno;
	char *abs;
	if (asprintf(&abs, "%s/%s", cwd, cfg->api_sock) < 0)
		return -ENOMEM;
	free(cfg->api_sock);
	cfg->api_sock = abs;
	return 0;
}

static int setup_logging(const struct vm_config *cfg)
{
	if (cfg->log_level)
		log_set_level((enum log_level)log_parse_level(cfg->log_level));
	if (cfg->log_file) {
		int rc = log_open_json_file(cfg->log_file);
		if (rc) {
			fprintf(stderr, "vmon: cannot open the log file %s: %s; choose a writable path for --log-file\n",
				cfg->log_file, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

int vm_runner_prepare(struct vm_config *cfg)
{
	int rc = absolute_api_sock(cfg);
	if (rc) {
		fprintf(stderr, "vmon: cannot resolve the API socket path: %s\n", strerror(-rc));
		return rc;
	}
	return setup_logging(cfg);
}

/* Guest serial output to stdout; stopped by vm_runner_main once no vCPU can write any more. */
static struct console_output *serial_output;

int vm_runner_parse_seccomp(struct vm_config *cfg, const char *value)
{
	int m = config_parse_seccomp(value);
	if (m < 0) {
		fprintf(stderr, "vmon: --seccomp takes on, log or off, not '%s' (see docs/security.md)\n", value);
		return -EINVAL;
	}
	cfg->seccomp = (enum seccomp_mode)m;
	return 0;
}

int vm_runner_parse_landlock(struct vm_config *cfg, const char *value)
{
	if (strcmp(value, "on") && strcmp(value, "off")) {
		fprintf(stderr, "vmon: --landlock takes on or off, not '%s' (see docs/security.md)\n", value);
		return -EINVAL;
	}
	cfg->landlock = !strcmp(value, "on");
	return 0;
}

int vm_runner_create_vm(struct vm *vm, const struct vm_config *cfg, bool rng)
{
	int rc = vm_create(vm, cfg);
	if (rc)
		return rc;
	if ((rc = console_output_start(&serial_output, STDOUT_FILENO, CONSOLE_OUTPUT_DEFAULT_CAPACITY)))
		return rc;
	if ((rc = platform_create(vm, console_output_write, serial_output)))
		return rc;
	/* PCI slots go in this order; snapshots name virtio devices by slot, so keep it stable. */
	if (rng && (rc = platform_add_rng(vm)))
		return rc;
	for (unsigned int i = 0; i < cfg->nnets; i++)
		if ((rc = platform_add_net(vm, cfg->nets[i])))
			return rc;
	for (unsigned int i = 0; i < cfg->ndisks; i++)
		if ((rc = platform_add_blk(vm, &cfg->disks[i])))
			return rc;
	if (cfg->console2 && (rc = platform_add_console2(vm, cfg->console2)))
		return rc;
	if (cfg->vsock && (rc = platform_add_vsock(vm, cfg->vsock)))
		return rc;
	if (cfg->balloon.enabled && (rc = platform_add_balloon(vm, &cfg->balloon)))
		return rc;
	return 0;
}

struct signal_waiter {
	struct vm *vm;
	sigset_t set;
	_Atomic bool done;
	_Atomic bool set_up; /* the VM is built: a stop request from here on is acted upon */
};

/*
 * Turns SIGINT/SIGTERM/SIGHUP into a clean stop; the VM's threads never see them. During
 * set-up nothing would act on a stop request, and set-up can wait on the host (reading a
 * kernel from a slow file system, probing KVM), so a signal then ends vmon at once; nothing
 * has been started that needs undoing.
 */
static void *signal_thread(void *arg)
{
	struct signal_waiter *w = arg;
	sandbox_enter(SANDBOX_SIGNAL);
	for (;;) {
		int sig;
		if (sigwait(&w->set, &sig) != 0)
			continue;
		if (atomic_load(&w->done))
			return NULL;
		if (!atomic_load(&w->set_up)) {
			log_error("vm", "stopped on %s during set-up, before the guest started", strsignal(sig));
			console_restore_terminal();
			_exit(EXIT_GUEST_FAILED);
		}
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
	case VM_STOP_MIGRATED:
		return EXIT_GUEST_OK;
	default:
		return EXIT_GUEST_FAILED;
	}
}

/* What vm_pause() does to the clock, for a VM that starts paused: vm_resume() undoes it. */
static void freeze_clock(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm_freeze_clock(vm);
	pthread_mutex_unlock(&vm->lock);
}

static int run_vm(struct vm *vm, const struct vm_config *cfg, const struct vm_runner_steps *steps,
		  struct signal_waiter *waiter, struct api_server **api, char *reg_path, size_t reg_len)
{
	int rc = steps->setup(vm, cfg, steps->arg);
	if (rc || (rc = sandbox_limit_resources(cfg)))
		return rc;
	atomic_store(&waiter->set_up, true);
	/* Up before the vCPUs start, so that a client can pause a guest from its first instruction on. */
	if (cfg->api_sock && (rc = api_server_start(api, cfg->api_sock, vm)))
		return rc;
	registry_register(cfg, reg_path, reg_len);

	struct console *console = NULL;
	struct platform *p = vm->platform;
	if ((rc = console_start(&console, &p->com1, on_console_quit, vm)))
		return rc;

	if ((rc = platform_start_io(vm)))
		return rc;
	bool committed = !steps->commit || steps->commit(vm, steps->arg) == 0;
	for (unsigned int i = 0; i < vm->ncpus && rc == 0 && committed; i++)
		rc = vcpu_start(vm->vcpus[i]);
	if (!committed)
		vm_request_stop(vm, VM_STOP_ERROR, "the VM was built but is not started here (see above)");
	else if (rc)
		vm_request_stop(vm, VM_STOP_ERROR, "could not start all vCPUs");
	else {
		vm->started_ns = monotonic_ns();
		/* Set up by setup() to start paused (vmon restore --paused): the vCPUs park before KVM_RUN. */
		bool paused = atomic_load(&vm->pause_requested);
		if (paused) {
			freeze_clock(vm);
			if (vm->io_pause)
				vm->io_pause(vm);
		}
		atomic_store(&vm->state, paused ? VM_PAUSED : VM_RUNNING);
	}
	/* Every other thread has started and confined itself; this one only waits and tears down. */
	sandbox_enter(SANDBOX_MAIN);
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
	platform_stop_io(vm);
	console_stop(console);
	return 0;
}

int vm_runner_main(const struct vm_config *cfg, const struct vm_runner_steps *steps)
{
	/* A closed stdout (e.g. `vmon run ... | head`) must end the console output, not vmon. */
	signal(SIGPIPE, SIG_IGN);
	if (sandbox_configure(cfg->seccomp)) {
		log_error("sandbox", "cannot install the SIGSYS handler of --seccomp log");
		return EXIT_GUEST_FAILED;
	}
	if (landlock_configure(cfg))
		return EXIT_USAGE;

	struct signal_waiter waiter;
	sigemptyset(&waiter.set);
	sigaddset(&waiter.set, SIGINT);
	sigaddset(&waiter.set, SIGTERM);
	sigaddset(&waiter.set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &waiter.set, NULL);

	static struct vm vm;
	waiter.vm = &vm;
	atomic_store(&waiter.done, false);
	atomic_store(&waiter.set_up, false);
	pthread_t sig_thread;
	bool have_sig_thread = pthread_create(&sig_thread, NULL, signal_thread, &waiter) == 0;
	struct api_server *api = NULL;
	char reg_path[4096] = "";
	int rc = run_vm(&vm, cfg, steps, &waiter, &api, reg_path, sizeof(reg_path));
	/* No client may touch the VM from here on; the shutdown watchdog is joined too. */
	api_server_stop(api);
	registry_unregister(reg_path);
	if (have_sig_thread) {
		atomic_store(&waiter.done, true);
		pthread_kill(sig_thread, SIGTERM);
		pthread_join(sig_thread, NULL);
	}
	int status;
	if (rc) {
		/* Setup failed: the reason was logged where it was found. */
		status = (rc == -EINVAL || rc == -ENOENT || rc == -EACCES || rc == -E2BIG || rc == -ENOEXEC ||
			  rc == -EISDIR || rc == -ENOMEM || rc == -EEXIST || rc == -EADDRINUSE || rc == -ENAMETOOLONG ||
			  rc == -ENOTDIR || rc == -EPROTO || rc == -ENOTSUP)
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

	/* Every vCPU is joined: nothing writes to the serial port any more. */
	console_output_stop(serial_output, CONSOLE_OUTPUT_FLUSH_MS);
	serial_output = NULL;
	if (steps->stopped)
		steps->stopped(&vm, steps->arg);
	platform_destroy(&vm);
	vm_destroy(&vm);
	log_close_json_file();
	return status;
}
