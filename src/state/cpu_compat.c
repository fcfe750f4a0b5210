#include "state/cpu_compat.h"

#include <cpuid.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/cpuid.h"

/*
 * Bits KVM sets or clears on its own (OSXSAVE and OSPKE follow CR4, the hypervisor bit, APIC
 * follows the APIC base MSR, x2APIC and the TSC-deadline timer are emulated by KVM's LAPIC): they
 * are not a property of the host's CPU.
 */
static const uint32_t kvm_managed[SNAP_F_WORDS] = {
	[SNAP_F_1_ECX] = (1u << 27) | (1u << 31) | (1u << 21) | (1u << 24),
	[SNAP_F_1_EDX] = (1u << 9),
	[SNAP_F_7_ECX] = (1u << 4),
};

static uint32_t reg(const struct kvm_cpuid_entry2 *e, int r)
{
	if (!e)
		return 0;
	switch (r) {
	case 0: return e->eax;
	case 1: return e->ebx;
	case 2: return e->ecx;
	default: return e->edx;
	}
}

void cpu_compat_describe(struct snap_cpu *out, const struct kvm_cpuid2 *table, const struct host_caps *host)
{
	memset(out, 0, sizeof(*out));
	unsigned int a = 0, b = 0, c = 0, d = 0;
	if (__get_cpuid(0, &a, &b, &c, &d)) {
		memcpy(out->vendor, &b, 4);
		memcpy(out->vendor + 4, &d, 4);
		memcpy(out->vendor + 8, &c, 4);
	}
	if (__get_cpuid(1, &a, &b, &c, &d))
		out->signature = a;

	const struct kvm_cpuid_entry2 *l1 = cpuid_find_entry(table, 1, 0);
	const struct kvm_cpuid_entry2 *l7 = cpuid_find_entry(table, 7, 0);
	const struct kvm_cpuid_entry2 *x1 = cpuid_find_entry(table, 0x80000001u, 0);
	const struct kvm_cpuid_entry2 *d1 = cpuid_find_entry(table, 0xd, 1);
	uint32_t *f = out->features;
	f[SNAP_F_1_ECX] = reg(l1, 2);
	f[SNAP_F_1_EDX] = reg(l1, 3);
	f[SNAP_F_7_EBX] = reg(l7, 1);
	f[SNAP_F_7_ECX] = reg(l7, 2);
	f[SNAP_F_7_EDX] = reg(l7, 3);
	f[SNAP_F_80000001_ECX] = reg(x1, 2);
	f[SNAP_F_80000001_EDX] = reg(x1, 3);
	f[SNAP_F_D_1_EAX] = reg(d1, 0);
	if (host) {
		f[SNAP_F_1_ECX] |= host->leaked_1_ecx;
		f[SNAP_F_1_EDX] |= host->leaked_1_edx;
		f[SNAP_F_7_EBX] |= host->leaked_7_ebx;
		f[SNAP_F_7_ECX] |= host->leaked_7_ecx;
		f[SNAP_F_7_EDX] |= host->leaked_7_edx;
	}
	for (int w = 0; w < SNAP_F_WORDS; w++)
		f[w] &= ~kvm_managed[w];
}

int cpu_compat_describe_host(struct snap_cpu *out, int kvm_fd, const struct host_caps *host)
{
	struct kvm_cpuid2 *supported = cpuid_get_supported(kvm_fd);
	if (!supported)
		return -errno;
	cpu_compat_describe(out, supported, host);
	free(supported);
	return 0;
}
