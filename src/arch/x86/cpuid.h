/*
 * The CPUID the guest sees: KVM's supported table, given a consistent topology for N vCPUs,
 * the KVM paravirtual signature, and (on hosts whose KVM cannot run some instructions) those
 * features removed. On hardware KVM only topology and signature change.
 */
#ifndef VMON_ARCH_X86_CPUID_H
#define VMON_ARCH_X86_CPUID_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/x86/host_probe.h"

/* KVM_GET_SUPPORTED_CPUID as a malloc'ed table; NULL with errno set on failure. */
struct kvm_cpuid2 *cpuid_get_supported(int kvm_fd);

/*
 * The policy shared by all vCPUs (per-vCPU fields are filled in by cpuid_apply_to_vcpu).
 * host may be NULL (treated as hardware: no workarounds). malloc'ed; NULL on ENOMEM or when
 * ncpus is 0.
 */
struct kvm_cpuid2 *cpuid_policy_build(const struct kvm_cpuid2 *supported, unsigned int ncpus,
				      const struct host_caps *host);

/*
 * Patches the policy for one vCPU (APIC IDs) and hands it to KVM_SET_CPUID2.
 * Returns 0 or a negative errno.
 */
int cpuid_apply_to_vcpu(int vcpu_fd, const struct kvm_cpuid2 *policy, unsigned int vcpu_id, unsigned int ncpus);

/*
 * Kernel command-line options that keep a Linux guest off instructions the host cannot run
 * although the guest's CPUID shows them (host->leaked_*): "clearcpuid=a,b,... noxsave", or ""
 * when nothing leaked. Returns 0 or -ENOSPC when buf is too small.
 */
int cpuid_guest_cmdline_options(const struct host_caps *host, char *buf, size_t len);

/* The entry for function/index (index ignored for leaves without subleaves), or NULL. */
const struct kvm_cpuid_entry2 *cpuid_find_entry(const struct kvm_cpuid2 *table, uint32_t function, uint32_t index);

/*
 * The same table with every per-vCPU field set for vcpu_id, as cpuid_apply_to_vcpu gives it to
 * KVM. malloc'ed; NULL on ENOMEM. Exposed so the topology can be checked without a vCPU.
 */
struct kvm_cpuid2 *cpuid_for_vcpu(const struct kvm_cpuid2 *policy, unsigned int vcpu_id, unsigned int ncpus);

#endif
