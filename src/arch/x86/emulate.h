/*
 * What vmon does when KVM_RUN returns KVM_EXIT_INTERNAL_ERROR / KVM_INTERNAL_ERROR_EMULATION:
 * the host's KVM could not run a guest instruction (this happens on nested and
 * software-virtualized hosts, never for ordinary code on hardware VT-x/AMD-V). vmon fetches the
 * instruction through the guest's page tables, decodes it and either emulates it or delivers
 * the exception the CPU would have raised.
 */
#ifndef VMON_ARCH_X86_EMULATE_H
#define VMON_ARCH_X86_EMULATE_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "arch/x86/guest_walk.h"
#include "arch/x86/insn_decode.h"

struct vcpu;

/*
 * Handles one emulation failure. Returns 0 when the guest can continue (instruction emulated
 * or exception injected); otherwise stops the VM with VM_STOP_ERROR and a message naming the
 * vCPU, RIP, CPL and instruction bytes, and returns a negative errno.
 */
int x86_handle_emulation_failure(struct vcpu *vcpu);

/* The vCPU state an emulated instruction reads and writes, loaded once per failure. */
struct x86_cpu {
	struct vcpu *vcpu;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint64_t gpr[16];          /* regs in encoding order (RAX, RCX, RDX, RBX, RSP, ...) */
	struct guest_paging pg;
	unsigned int mode;         /* 16, 32 or 64 */
	unsigned int cpl;
	uint64_t rip_linear;
	uint8_t bytes[X86_MAX_INSN_LEN];
	unsigned int nbytes;       /* instruction bytes fetched */
	bool regs_dirty, sregs_dirty;
};

/* Loads registers, paging state and the instruction bytes at RIP (as many as are readable). */
int x86_cpu_load(struct vcpu *vcpu, struct x86_cpu *cpu);
/* Writes back registers changed by emulation. */
int x86_cpu_store(struct x86_cpu *cpu);
/* Injects an exception (vector, optional error code); for #PF, cr2 is set first. */
int x86_cpu_inject(struct x86_cpu *cpu, unsigned int vector, bool has_error, uint32_t error, uint64_t cr2);
/* Reads MSRs through KVM_GET_MSRS; returns 0 or a negative errno. */
int x86_read_msrs(int vcpu_fd, const uint32_t *index, uint64_t *value, unsigned int n);

#endif
