/*
 * The guest's clock after a restore. The snapshot holds the kvmclock (section "vm.clock") and
 * the host's wall-clock time at which it was read ("vm.clock_realtime"). By default
 * (VM_CLOCK_REALTIME) the restored kvmclock is advanced by the wall time that passed since, so
 * the guest's clocks jump forward to the host's time: with KVM_SET_CLOCK's KVM_CLOCK_REALTIME
 * flag where KVM has it (Linux 5.16+, KVM adds the time itself at the instant it sets the
 * clock), else by adding the elapsed time vmon measured; the vCPUs' TSCs move by as much
 * (vcpu_state_advance_tsc()). VM_CLOCK_CONTINUE (--clock=continue)
 * continues from the snapshot: the time on disk is not seen.
 */
#ifndef VMON_STATE_VM_CLOCK_H
#define VMON_STATE_VM_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state/snapshot_format.h"

struct vm;

enum vm_clock_mode { VM_CLOCK_REALTIME = 0, VM_CLOCK_CONTINUE };

/* "realtime" or "continue" into *mode; -EINVAL for anything else. */
int vm_clock_parse_mode(const char *s, enum vm_clock_mode *mode);

/* What to give KVM_SET_CLOCK. */
struct vm_clock_plan {
	uint64_t clock;      /* kvmclock value */
	bool kvm_realtime;   /* set KVM_CLOCK_REALTIME with realtime: KVM adds the time since */
	uint64_t realtime;
	uint64_t advanced_ns; /* what vmon added itself (no KVM_CLOCK_REALTIME) */
	bool unknown_age;     /* realtime mode, but the snapshot does not say when it was taken */
};

/*
 * Pure: the plan for a saved kvmclock read at saved_realtime (0: unknown, an older snapshot),
 * restored now (now_realtime) on a KVM that has KVM_CLOCK_REALTIME or not. The clock never goes
 * backwards (a host clock behind the snapshot's adds nothing).
 */
void vm_clock_plan(enum vm_clock_mode mode, uint64_t saved_clock, uint64_t saved_realtime, uint64_t now_realtime,
		   bool kvm_has_realtime, struct vm_clock_plan *out);

/* TSC ticks in ns nanoseconds at khz kHz (no overflow for any uint64_t ns below 2^64 / khz * 10^6). */
uint64_t vm_clock_tsc_ticks(uint64_t ns, uint32_t khz);

/* Adds "vm.clock_realtime" for a kvmclock value read at realtime. 0 or -ENOMEM. */
int vm_clock_save(struct snap_writer *w, uint64_t realtime);

/*
 * Sets the restored guest's kvmclock from f as mode says (after vm_state_restore()) and stores
 * in *advanced_ns how far it moved past the snapshot (0 with continue), for the vCPUs' TSCs
 * (vcpu_state_advance_tsc()). Logs what the guest sees. 0 or -errno with one sentence in err.
 */
int vm_clock_restore(struct vm *vm, const struct snap_file *f, enum vm_clock_mode mode, uint64_t *advanced_ns,
		     char *err, size_t errlen);

#endif
