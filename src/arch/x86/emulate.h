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
#include <stddef.h>
#include <stdint.h>

#include "arch/x86/guest_walk.h"
#include "arch/x86/insn_decode.h"

struct vcpu;

struct vm;
struct kvm_sregs;

/*
 * Handles one emulation failure. Returns 0 when the guest can continue (instruction emulated
 * or exception injected); otherwise returns a negative errno and writes to why (why_size
 * bytes) the one-line reason the guest cannot go on, naming the vCPU, RIP, CPL and
 * instruction bytes, for the caller to stop the VM with.
 */
int x86_handle_emulation_failure(struct vcpu *vcpu, char *why, size_t why_size);

/*
 * How the vCPU translates addresses now: its control registers, RFLAGS (for SMAP) and the
 * MAXPHYADDR of the VM's CPUID policy (the host's where the VM has none).
 */
struct guest_paging x86_guest_paging(const struct vm *vm, const struct kvm_sregs *s, uint64_t rflags);

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
