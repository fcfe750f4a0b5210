/*
 * Device state for snapshots, generic over devices: every device on the VM's port-I/O and MMIO
 * buses with a save op ("dev.<bus>.<name>@<base>", once per device however many ranges it has),
 * every virtio device on PCI ("pci.<slot>.<name>"), and the PCI configuration-address latch.
 * A restore matches the sections up with the devices of the new VM by those names.
 */
#ifndef VMON_STATE_DEVICE_STATE_H
#define VMON_STATE_DEVICE_STATE_H

#include <stdbool.h>
#include <stddef.h>

#include "state/snapshot_format.h"

struct vm;

int device_state_save(struct vm *vm, struct snap_writer *w, char *err, size_t errlen);
/*
 * Loads every device of vm from f. Fails if the snapshot has a device the VM lacks or the VM
 * has a device the snapshot did not save (it would come up in its reset state under a guest
 * that had set it up). 0 or -errno (message in err).
 */
int device_state_restore(struct vm *vm, const struct snap_file *f, char *err, size_t errlen);

/* True if the snapshot saved a PCI device of that name (e.g. "rng"). */
bool device_state_has_pci(const struct snap_file *f, const char *name);

#endif
