/*
 * Per-VM and per-vCPU x86 state for the work vmon does when the host's KVM falls short:
 * emulation failures (emulate.c) and the SYSCALL fix (syscall_fixup.c). On hardware KVM this
 * state exists but stays idle.
 */
#ifndef VMON_ARCH_X86_VCPU_ARCH_H
#define VMON_ARCH_X86_VCPU_ARCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "arch/x86/xsave_image.h"
#include "lib/log.h"
#include "vm/vcpu.h"
#include "vm/vm.h"

/* What vmon did after an emulation failure; one counter each per vCPU. */
enum x86_emul_kind {
	X86_EMUL_INT3 = 0,   /* #BP delivered past the int3 */
	X86_EMUL_CLAC,
	X86_EMUL_STAC,
	X86_EMUL_POPCNT,
	X86_EMUL_CRC32,
	X86_EMUL_FWAIT,
	X86_EMUL_FPU_CONTROL, /* fninit, fnclex, fnstsw, fnstcw, fldcw, emms, ldmxcsr, stmxcsr */
	X86_EMUL_RDTSCP,
	X86_EMUL_XGETBV,
	X86_EMUL_XSAVE,       /* xsave, xsaveopt, xsavec */
	X86_EMUL_XRSTOR,
	X86_EMUL_NOP,         /* long NOPs, hints, fences, endbr, cache-line flushes */
	X86_EMUL_UD,          /* #UD delivered (ud0/ud1/ud2, or an instruction invalid where it ran) */
	X86_EMUL_FAULT,       /* #PF/#GP/#NM/#MF delivered while emulating */
	X86_EMUL_SYSCALL_COMPLETED, /* a SYSCALL from user space finished by the SYSCALL fix */
	X86_EMUL_PF_PASSED,   /* a page fault that went through the patched entry to the guest */
	X86_EMUL_SYSCALL_REFUSED, /* a user fetch fault at LSTAR that no SYSCALL made: passed to the guest */
	X86_EMUL_UNHANDLED,   /* the VM was stopped */
	X86_EMUL_KIND_COUNT
};

const char *x86_emul_kind_name(enum x86_emul_kind k);

struct x86_vcpu_arch {
	_Atomic uint64_t emul[X86_EMUL_KIND_COUNT];
	struct log_ratelimit rl;
};

/* State of the SYSCALL fix for one VM. */
enum syscall_fixup_state {
	SYSCALL_FIXUP_OFF = 0, /* the host's SYSCALL works, or the fix cannot work here */
	SYSCALL_FIXUP_WAITING, /* waiting for the guest kernel to set up LSTAR and its IDT */
	SYSCALL_FIXUP_ARMED,   /* int3 written into the page-fault entry */
};

struct x86_vm_arch {
	pthread_mutex_t lock;     /* serialises arming */
	_Atomic int fixup_state;  /* enum syscall_fixup_state */
	_Atomic uint64_t next_check_ns;
	uint64_t patch_gva;       /* linear address of the int3, valid once armed */
	uint8_t slot[3];          /* the original 3-byte slot (0f 1f 00 or 0f 01 ca) */
	unsigned int checks;      /* readiness checks made, for the log */
	bool xsave_layout_valid;  /* the two below filled, on the first emulated XSAVE-family instruction */
	struct xsave_layout xsave_layout;
	size_t xsave_kvm_len;     /* bytes of KVM_GET_XSAVE(2)'s image */
};

int x86_vcpu_arch_init(struct vcpu *vcpu);
void x86_vcpu_arch_free(struct vcpu *vcpu);
/* Called by the vCPU loop after every handled exit; costs a load and a compare when idle. */
void x86_vcpu_after_exit(struct vcpu *vcpu);

/*
 * Where KVM's XSAVE image (KVM_GET_XSAVE) keeps each state component, from the host's CPUID as
 * KVM reports it, and the image's size (4 KiB, or more where KVM_CAP_XSAVE2 says so); looked up
 * once per VM. Returns 0 or a negative errno.
 */
int x86_xsave_layout(struct vm *vm, struct xsave_layout *out, size_t *kvm_len);

int x86_vm_arch_init(struct vm *vm);
void x86_vm_arch_free(struct vm *vm);

/* Counts one emulation outcome on a vCPU (no-op if the vCPU has no arch state). */
void x86_emul_count(struct vcpu *vcpu, enum x86_emul_kind k);
/* Reads one counter, for metrics. */
uint64_t x86_emul_get(struct vcpu *vcpu, enum x86_emul_kind k);

static inline struct x86_vcpu_arch *x86_vcpu_arch(struct vcpu *vcpu) { return vcpu->arch; }
static inline struct x86_vm_arch *x86_vm_arch(struct vm *vm) { return vm->arch; }

#endif
