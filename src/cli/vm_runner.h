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

/*
 * Builds the VM (setup: vm_create(), platform_create(), then boot or restore; it logs its own
 * errors), serves the API, runs the VM on this terminal until it stops and tears it down.
 * Returns vmon's exit status (EXIT_GUEST_OK, EXIT_GUEST_FAILED or EXIT_USAGE, see cli.h).
 */
int vm_runner_main(const struct vm_config *cfg, int (*setup)(struct vm *vm, const struct vm_config *cfg, void *arg),
		   void *arg);

#endif
