/*
 * What the host's KVM can and cannot do, learned at start-up by running tiny probe guests.
 * On hardware VT-x/AMD-V every flag below is false and vmon changes nothing; on nested or
 * software-virtualized hosts (see docs/host-quirks.md) the flags turn on the workarounds.
 */
#ifndef VMON_ARCH_X86_HOST_PROBE_H
#define VMON_ARCH_X86_HOST_PROBE_H

#include <stdbool.h>
#include <stdint.h>

struct host_caps {
	bool probed;
	/* KVM_RUN fails with an emulation error on instructions hardware runs (e.g. lock cmpxchg16b at CPL0). */
	bool emulator_limited;
	/* SYSCALL from CPL3 jumps to LSTAR but stays at CPL3. */
	bool syscall_broken;
	/* VMCALL never returns to the guest, so paravirtual features built on hypercalls must stay off. */
	bool hypercall_broken;
	/*
	 * CPUID bits the guest sees although the policy given to KVM_SET_CPUID2 cleared them
	 * (the host shows its own bits whatever the VMM sets).
	 */
	uint32_t leaked_1_ecx, leaked_1_edx;
	uint32_t leaked_7_ebx, leaked_7_ecx, leaked_7_edx;
	/*
	 * XCR0 in force while guest user code runs before the guest kernel enabled XSAVE (XGETBV at
	 * CPL3 with CR4.OSXSAVE clear); 0 where that raises #UD, as on hardware. Bits beyond x87 and
	 * SSE mean guest programs use AVX state the guest kernel must save at context switches.
	 */
	uint64_t user_xcr0;
};

/* True if guest user code can use register state beyond x87/SSE without the guest kernel. */
static inline bool host_user_xstate_leaks(const struct host_caps *c) { return c && (c->user_xcr0 & ~3ULL); }

/*
 * Runs the probes against the open /dev/kvm fd. Each probe is a throwaway VM that lives a few
 * milliseconds. Returns 0 or a negative errno if KVM itself failed (not if a probe found a defect).
 */
int host_probe_run(int kvm_fd, struct host_caps *caps);

#endif
