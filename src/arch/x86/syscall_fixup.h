/*
 * The SYSCALL fix, for hosts where SYSCALL from CPL3 jumps to LSTAR but stays at CPL3
 * (host_caps.syscall_broken). The guest then takes a user-mode instruction-fetch page fault
 * at LSTAR. vmon writes int3 over the 3-byte CLAC/NOP slot at the start of the guest kernel's
 * page-fault entry; the host's emulator fails on that int3 at CPL0, so vmon sees every guest
 * page fault with its frame on the guest stack. A fault that is a failed SYSCALL is completed
 * (CPL0 at LSTAR, as the CPU should have done); any other fault continues into the guest's
 * handler as if the slot had run. See docs/host-quirks.md.
 */
#ifndef VMON_ARCH_X86_SYSCALL_FIXUP_H
#define VMON_ARCH_X86_SYSCALL_FIXUP_H

struct vm;
struct vcpu;
struct x86_cpu;

/*
 * Decides whether the VM needs the fix: the host's SYSCALL is broken and int3 at CPL0 reaches
 * vmon as an emulation failure (checked with a probe VM). Sets vm->arch's state to waiting or
 * off. Returns 0 or a negative errno if KVM failed.
 */
int syscall_fixup_init(struct vm *vm);

/*
 * Arms the fix if the guest kernel is ready (EFER.SCE, LSTAR set, IDT vector 14 pointing at an
 * entry that starts with [ENDBR64|4-byte NOP] then 0f 1f 00 or 0f 01 ca then cld).
 * Returns 1 if armed now, 0 if not (yet), or a negative errno.
 */
int syscall_fixup_try_arm(struct vcpu *vcpu);

/*
 * Called first for every emulation failure. Returns 1 if the failure is not the fix's int3
 * (the caller handles it), 0 if it was handled, or a negative errno.
 */
int syscall_fixup_on_emulation_failure(struct vcpu *vcpu, struct x86_cpu *cpu);

#endif
