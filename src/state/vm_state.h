/*
 * The VM-wide KVM state for snapshots: the in-kernel interrupt controllers (both 8259s and the
 * IOAPIC), the PIT and the kvmclock, in the section "vm.irqchip.<n>", "vm.pit" and "vm.clock", with
 * the host's wall-clock time it was read at in "vm.clock_realtime" (state/vm_clock.h).
 */
#ifndef VMON_STATE_VM_STATE_H
#define VMON_STATE_VM_STATE_H

#include <stddef.h>

#include "state/snapshot_format.h"

struct vm;

/* The VM must be paused. 0 or -errno (message in err). */
int vm_state_save(struct vm *vm, struct snap_writer *w, char *err, size_t errlen);
/* Call before the vCPUs' state is loaded. 0 or -errno (message in err). */
int vm_state_restore(struct vm *vm, const struct snap_file *f, char *err, size_t errlen);

#endif
