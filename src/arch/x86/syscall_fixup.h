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

#include <stdbool.h>
#include <stdint.h>

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

/*
 * What the guest left behind when the fix's int3 stopped its page-fault entry: the exception
 * frame, CR2, the MSRs SYSCALL uses, RCX and R11 as the CPU left them, and the two bytes
 * before RCX as guest user code would fetch them.
 */
struct syscall_evidence {
	uint64_t error, rip, cs, rflags, rsp; /* from the page-fault frame */
	uint64_t cr2;
	uint64_t lstar, fmask;           /* MSR_LSTAR, MSR_SYSCALL_MASK */
	uint64_t rcx, r11;
	bool fetch_reported;             /* EFER.NXE or CR4.SMEP: the error code marks fetches */
	bool insn_fetched;               /* insn holds the bytes at RCX - 2, fetchable from CPL3 */
	uint8_t insn[2];
};

enum syscall_verdict {
	SYSCALL_VERDICT_OTHER,    /* an ordinary page fault */
	SYSCALL_VERDICT_SYSCALL,  /* a SYSCALL the host left at CPL3: complete it */
	SYSCALL_VERDICT_FORGED,   /* a user fetch fault at LSTAR that no SYSCALL made: a fault */
};

/*
 * Tells a failed SYSCALL from everything else. A failed SYSCALL faults from user mode on the
 * fetch at LSTAR (RIP == CR2 == LSTAR) with RFLAGS already masked by FMASK, which must mask
 * IF (IF = 0 at CPL3 is what user code cannot arrange), R11 agreeing with those RFLAGS outside
 * FMASK, and RCX just after a `0f 05` in user memory. A user process that jumps to LSTAR
 * shows a fault at LSTAR without the rest and gets SYSCALL_VERDICT_FORGED.
 */
enum syscall_verdict syscall_fixup_judge(const struct syscall_evidence *ev);

#endif
