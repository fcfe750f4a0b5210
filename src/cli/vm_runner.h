/*
 * What `vmon run` and `vmon restore` share once the configuration is known: logging set-up,
 * the signal thread, the control API and registry entry, the console, starting the vCPUs,
 * waiting for the VM to stop and tearing everything down. Only building the VM differs.
 */
#ifndef VMON_CLI_VM_RUNNER_H
#define VMON_CLI_VM_RUNNER_H

#include <stdbool.h>

#include "config/config.h"

struct vm;

/*
 * Makes cfg->api_sock absolute and applies cfg's log level and log file.
 * Returns 0 or a negative errno (message printed).
 */
int vm_runner_prepare(struct vm_config *cfg);

/* --seccomp VALUE into cfg; prints the reason and returns -EINVAL if VALUE is not on|log|off. */
int vm_runner_parse_seccomp(struct vm_config *cfg, const char *value);

/* --landlock VALUE into cfg; prints the reason and returns -EINVAL if VALUE is not on|off. */
int vm_runner_parse_landlock(struct vm_config *cfg, const char *value);

/*
 * Creates the VM and every device cfg asks for (plus the virtio entropy device if rng), in the
 * order both `vmon run` and `vmon restore` rely on. Errors are logged. 0 or a negative errno.
 */
int vm_runner_create_vm(struct vm *vm, const struct vm_config *cfg, bool rng);

/* How a command builds its VM: what vm_runner_main() calls. */
struct vm_runner_steps {
	/* vm_create(), platform_create(), then boot or restore; logs its own errors. 0 or -errno. */
	int (*setup)(struct vm *vm, const struct vm_config *cfg, void *arg);
	/*
	 * Optional: the last word before the vCPUs start, once the API, the console and the devices'
	 * I/O are up and nothing is left to fail (vmon receive tells the source here). Nonzero: the
	 * vCPUs never start and vmon stops with an error. 0 or -errno.
	 */
	int (*commit)(struct vm *vm, void *arg);
	/* Optional: the VM stopped (its vCPUs joined) and is about to be torn down; its RAM is still mapped. */
	void (*stopped)(struct vm *vm, void *arg);
	void *arg;
};

/*
 * Builds the VM (steps->setup), serves the API, runs the VM on this terminal until it stops and
 * tears it down. Returns vmon's exit status (EXIT_GUEST_OK, EXIT_GUEST_FAILED or EXIT_USAGE, see
 * cli.h).
 */
int vm_runner_main(const struct vm_config *cfg, const struct vm_runner_steps *steps);

#endif
