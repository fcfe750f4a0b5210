#include "arch/x86/vcpu_arch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "arch/x86/cpuid.h"
#include "arch/x86/syscall_fixup.h"
#include "lib/util.h"

/* How often a VM waiting for its guest kernel checks whether the SYSCALL fix can be armed. */
#define FIXUP_CHECK_INTERVAL_NS (20ULL * 1000 * 1000)

const char *x86_emul_kind_name(enum x86_emul_kind k)
{
	static const char *const names[X86_EMUL_KIND_COUNT] = {
		[X86_EMUL_INT3] = "int3",
		[X86_EMUL_CLAC] = "clac",
		[X86_EMUL_STAC] = "stac",
		[X86_EMUL_POPCNT] = "popcnt",
		[X86_EMUL_CRC32] = "crc32",
		[X86_EMUL_FWAIT] = "fwait",
		[X86_EMUL_FPU_CONTROL] = "fpu_control",
		[X86_EMUL_RDTSCP] = "rdtscp",
		[X86_EMUL_XGETBV] = "xgetbv",
		[X86_EMUL_XSAVE] = "xsave",
		[X86_EMUL_XRSTOR] = "xrstor",
		[X86_EMUL_NOP] = "nop",
		[X86_EMUL_UD] = "invalid_opcode",
		[X86_EMUL_FAULT] = "fault_injected",
		[X86_EMUL_SYSCALL_COMPLETED] = "syscall_completed",
		[X86_EMUL_PF_PASSED] = "page_fault_passed",
		[X86_EMUL_SYSCALL_REFUSED] = "syscall_refused",
		[X86_EMUL_UNHANDLED] = "unhandled",
	};
	return (unsigned int)k < X86_EMUL_KIND_COUNT ? names[k] : "?";
}

void x86_emul_count(struct vcpu *vcpu, enum x86_emul_kind k)
{
	struct x86_vcpu_arch *a = vcpu->arch;
	if (a && (unsigned int)k < X86_EMUL_KIND_COUNT)
		atomic_fetch_add_explicit(&a->emul[k], 1, memory_order_relaxed);
}

uint64_t x86_emul_get(struct vcpu *vcpu, enum x86_emul_kind k)
{
	struct x86_vcpu_arch *a = vcpu->arch;
	if (!a || (unsigned int)k >= X86_EMUL_KIND_COUNT)
		return 0;
	return atomic_load_explicit(&a->emul[k], memory_order_relaxed);
}

int x86_vcpu_arch_init(struct vcpu *vcpu)
{
	struct x86_vcpu_arch *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	vcpu->arch = a;
	return 0;
}

/* One line per vCPU with what vmon did in the host's place; silent on hardware KVM. */
static void log_summary(struct vcpu *vcpu)
{
	char line[512];
	size_t pos = 0;
	line[0] = 0;
	for (unsigned int k = 0; k < X86_EMUL_KIND_COUNT && pos < sizeof(line); k++) {
		uint64_t n = x86_emul_get(vcpu, (enum x86_emul_kind)k);
		if (n)
			pos += (size_t)snprintf(line + pos, sizeof(line) - pos, "%s%s %llu", pos ? ", " : "",
						x86_emul_kind_name((enum x86_emul_kind)k), (unsigned long long)n);
	}
	if (pos)
		log_info("emulate", "vCPU %u: handled for the host's KVM: %s", vcpu->id, line);
}

void x86_vcpu_arch_free(struct vcpu *vcpu)
{
	if (vcpu->arch)
		log_summary(vcpu);
	free(vcpu->arch);
	vcpu->arch = NULL;
}

void x86_vcpu_after_exit(struct vcpu *vcpu)
{
	struct x86_vm_arch *va = vcpu->vm->arch;
	if (!va || atomic_load_explicit(&va->fixup_state, memory_order_relaxed) != SYSCALL_FIXUP_WAITING)
		return;
	uint64_t now = monotonic_ns();
	uint64_t next = atomic_load_explicit(&va->next_check_ns, memory_order_relaxed);
	if (now < next)
		return;
	/* One vCPU per interval does the check; the others go straight back to the guest. */
	if (!atomic_compare_exchange_strong(&va->next_check_ns, &next, now + FIXUP_CHECK_INTERVAL_NS))
		return;
	va->checks++;
	syscall_fixup_try_arm(vcpu);
}

int x86_xsave_layout(struct vm *vm, struct xsave_layout *out, size_t *kvm_len)
{
	struct x86_vm_arch *va = vm->arch;
	if (va) {
		pthread_mutex_lock(&va->lock);
		bool valid = va->xsave_layout_valid;
		if (valid) {
			*out = va->xsave_layout;
			*kvm_len = va->xsave_kvm_len;
		}
		pthread_mutex_unlock(&va->lock);
		if (valid)
			return 0;
	}
	struct kvm_cpuid2 *supported = cpuid_get_supported(vm->kvm_fd);
	if (!supported)
		return -errno;
	xsave_layout_from_cpuid(supported, out);
	free(supported);
	int n = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	*kvm_len = n > (int)sizeof(struct kvm_xsave) ? (size_t)n : sizeof(struct kvm_xsave);
	if (va) {
		pthread_mutex_lock(&va->lock);
		va->xsave_layout = *out;
		va->xsave_kvm_len = *kvm_len;
		va->xsave_layout_valid = true;
		pthread_mutex_unlock(&va->lock);
	}
	return 0;
}

int x86_vm_arch_init(struct vm *vm)
{
	struct x86_vm_arch *va = calloc(1, sizeof(*va));
	if (!va)
		return -ENOMEM;
	pthread_mutex_init(&va->lock, NULL);
	vm->arch = va;
	int rc = syscall_fixup_init(vm);
	if (rc) {
		x86_vm_arch_free(vm);
		return rc;
	}
	return 0;
}

void x86_vm_arch_free(struct vm *vm)
{
	struct x86_vm_arch *va = vm->arch;
	if (!va)
		return;
	pthread_mutex_destroy(&va->lock);
	free(va);
	vm->arch = NULL;
}
