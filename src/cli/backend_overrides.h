/*
 * Host sides given anew to the devices of a VM that arrives with its own configuration (vmon
 * restore from a snapshot, vmon receive from a migration): a network card's backend, a disk's
 * image, the second console's socket, the vsock device. The device set itself never changes:
 * the guest has drivers bound to exactly those devices.
 */
#ifndef VMON_CLI_BACKEND_OVERRIDES_H
#define VMON_CLI_BACKEND_OVERRIDES_H

#include "config/config.h"

struct backend_overrides {
	const char *nets[CONFIG_MAX_NICS];
	unsigned int nnets;
	const char *disks[CONFIG_MAX_DISKS];
	unsigned int ndisks;
	const char *console2, *vsock;
};

/* --net SPEC and --disk SPEC, in order: -EINVAL (message printed) when given too often. */
int backend_overrides_add_net(struct backend_overrides *ov, const char *spec);
int backend_overrides_add_disk(struct backend_overrides *ov, const char *spec);

/*
 * Puts the replacements into cfg, the configuration the VM arrived with (whose: "the
 * snapshot's VM", "the incoming VM", for messages), and validates the result. A disk keeps the
 * access the guest had. 0 or -EINVAL (message printed).
 */
int backend_overrides_apply(struct vm_config *cfg, const struct backend_overrides *ov, const char *whose);

#endif
