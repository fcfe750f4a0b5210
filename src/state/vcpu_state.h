/*
 * One vCPU's architectural state for snapshots: registers, system registers, FPU/XSAVE and
 * XCRs, MSRs, LAPIC, pending events, MP state, debug registers and TSC frequency, each in its
 * own section "vcpu.<id>.<what>".
 */
#ifndef VMON_STATE_VCPU_STATE_H
#define VMON_STATE_VCPU_STATE_H

#include <stddef.h>

#include "state/snapshot_format.h"

struct vcpu;

/*
 * Finishes an I/O or MMIO access KVM_RUN left for user space (KVM completes it only on the next
 * KVM_RUN, and the registers are not final until then), without running guest code. Call for a
 * paused vCPU before saving it. 0 or a negative errno.
 */
int vcpu_state_settle(struct vcpu *v);

/* Adds the vCPU's sections. The vCPU must be paused and settled. 0 or -errno (message in err). */
int vcpu_state_save(struct vcpu *v, int kvm_fd, struct snap_writer *w, char *err, size_t errlen);

/* Loads the sections saved for v->id into a vCPU that has not run yet. 0 or -errno (message in err). */
int vcpu_state_restore(struct vcpu *v, int kvm_fd, const struct snap_file *f, char *err, size_t errlen);
/*
 * Moves the restored vCPU's TSC forward by ns nanoseconds at its TSC rate (vmon restore
 * --clock=realtime), so a guest whose clocksource is the TSC sees the time on disk pass as one
 * using kvmclock does. Call after vcpu_state_restore(), with the same ns for every vCPU so they
 * stay in step. 0 or -errno (message in err).
 */
int vcpu_state_advance_tsc(struct vcpu *v, uint64_t ns, char *err, size_t errlen);

#endif
