/*
 * A throwaway VM for probing the host's KVM and for tests: 64 KiB of RAM, one vCPU in long
 * mode at CPL0 with identity paging, a Linux-like GDT (so SYSCALL/SYSRET selectors work), a TSS
 * whose RSP0 is the kernel stack, and an IDT with no gates until a probe adds some.
 * No in-kernel irqchip, so HLT exits to user space (KVM_EXIT_HLT) and ends a probe.
 */
#ifndef VMON_ARCH_X86_PROBE_VM_H
#define VMON_ARCH_X86_PROBE_VM_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

#include "memory/guest_mem.h"

/* Guest-physical (= guest-virtual) layout. Page 0 is left unmapped to catch null pointers. */
#define PROBE_VM_PML4       0x1000ULL
#define PROBE_VM_PDPT       0x2000ULL
#define PROBE_VM_PD         0x3000ULL
#define PROBE_VM_PT         0x4000ULL
#define PROBE_VM_GDT        0x5000ULL
#define PROBE_VM_TSS        0x5080ULL
#define PROBE_VM_IDT        0x6000ULL
#define PROBE_VM_KSTACK_TOP 0x8000ULL /* the page below is the CPL0 stack, also TSS.RSP0 */
#define PROBE_VM_KCODE      0x8000ULL /* two pages of supervisor code; execution starts here */
#define PROBE_VM_UCODE      0xa000ULL /* a page of user code (call probe_vm_set_user) */
#define PROBE_VM_UDATA      0xb000ULL /* a page for user data and stack */
#define PROBE_VM_KDATA      0xc000ULL /* supervisor data: markers written by probe code */
#define PROBE_VM_RAM_SIZE   0x10000ULL

/* Selectors, laid out like Linux's GDT so STAR values look like a real kernel's. */
#define PROBE_VM_SEL_KCODE   0x10
#define PROBE_VM_SEL_KDATA   0x18
#define PROBE_VM_SEL_UCODE32 0x23
#define PROBE_VM_SEL_UDATA   0x2b
#define PROBE_VM_SEL_UCODE   0x33
#define PROBE_VM_SEL_TSS     0x40

struct probe_vm {
	int vm_fd;
	int vcpu_fd;
	struct kvm_run *run;
	size_t run_size;
	struct guest_mem mem;
};

/*
 * Creates the VM and its vCPU with the CPUID KVM supports and the state described above
 * (RIP = PROBE_VM_KCODE, RSP = PROBE_VM_KSTACK_TOP). Returns 0 or a negative errno.
 */
int probe_vm_create(struct probe_vm *pv, int kvm_fd);
void probe_vm_destroy(struct probe_vm *pv);

/* Copies code or data to guest-physical gpa. Returns 0 or -EFAULT. */
int probe_vm_load(struct probe_vm *pv, uint64_t gpa, const void *bytes, size_t len);
/* Makes the pages covering [gpa, gpa+len) accessible from CPL3. */
int probe_vm_set_user(struct probe_vm *pv, uint64_t gpa, size_t len);
/* Installs a 64-bit interrupt gate for vector vec (dpl: lowest CPL allowed to use INT n). */
int probe_vm_set_gate(struct probe_vm *pv, unsigned int vec, uint64_t handler, unsigned int dpl);
/* Replaces the vCPU's CPUID (before the first run). */
int probe_vm_set_cpuid(struct probe_vm *pv, const struct kvm_cpuid2 *cpuid);

/*
 * Runs the vCPU until an exit to user space and returns the KVM exit reason, or -ETIMEDOUT if
 * the guest has not come back after timeout_ms (KVM_RUN is interrupted with SIGUSR1), or
 * another negative errno if KVM_RUN failed.
 */
int probe_vm_run(struct probe_vm *pv, unsigned int timeout_ms);

/* Returns KVM_GET_SUPPORTED_CPUID's list (malloc'ed) or NULL with errno set. */
struct kvm_cpuid2 *probe_vm_supported_cpuid(int kvm_fd);

/*
 * Guest code is assembled into the host binary between two labels; these macros declare and
 * measure such a blob. The code must be position independent or use PROBE_VM_* addresses.
 */
#define PROBE_BLOB(name)                                                                          \
	extern const uint8_t name##_start[];                                                      \
	extern const uint8_t name##_end[]
#define PROBE_BLOB_SIZE(name) ((size_t)(name##_end - name##_start))

#endif
