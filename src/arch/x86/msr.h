/* Initial model-specific register values of a vCPU, as firmware would leave them at boot. */
#ifndef VMON_ARCH_X86_MSR_H
#define VMON_ARCH_X86_MSR_H

#include <stdint.h>

#define MSR_IA32_TSC            0x00000010u
#define MSR_IA32_SYSENTER_CS    0x00000174u
#define MSR_IA32_SYSENTER_ESP   0x00000175u
#define MSR_IA32_SYSENTER_EIP   0x00000176u
#define MSR_IA32_MISC_ENABLE    0x000001a0u
#define MSR_IA32_CR_PAT         0x00000277u
#define MSR_MTRR_DEF_TYPE       0x000002ffu
#define MSR_STAR                0xc0000081u
#define MSR_LSTAR               0xc0000082u
#define MSR_CSTAR               0xc0000083u
#define MSR_SYSCALL_MASK        0xc0000084u
#define MSR_KERNEL_GS_BASE      0xc0000102u

#define MISC_ENABLE_FAST_STRING (1ull << 0)
#define PAT_RESET_VALUE         0x0007040600070406ull
#define MTRR_DEF_TYPE_ENABLE    (1ull << 11)
#define MTRR_TYPE_WRBACK        6ull

/*
 * Sets the reset values of one vCPU (call after cpuid_apply_to_vcpu: KVM checks some MSRs
 * against the vCPU's CPUID). MSRs listed by KVM_GET_MSR_INDEX_LIST are set together and must
 * succeed; the few KVM handles without listing them (MTRRdefType) are set only if KVM takes
 * them. Returns 0 or a negative errno.
 */
int msr_setup_vcpu(int kvm_fd, int vcpu_fd, unsigned int vcpu_id);

#endif
