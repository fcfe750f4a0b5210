/*
 * The CPU a snapshot's guest ran on, as recorded in the snapshot header, and the same view of
 * this host, so a restore on a host without the features the guest uses is refused up front.
 */
#ifndef VMON_STATE_CPU_COMPAT_H
#define VMON_STATE_CPU_COMPAT_H

#include <linux/kvm.h>

#include "arch/x86/host_probe.h"
#include "state/snapshot_format.h"

/*
 * The features a guest can use: those in table (the guest's CPUID policy, or what KVM supports
 * on this host), plus the host bits that leak into the guest on hosts that show their own CPUID
 * (host may be NULL), less the bits KVM manages itself. The vendor is this host's.
 */
void cpu_compat_describe(struct snap_cpu *out, const struct kvm_cpuid2 *table, const struct host_caps *host);

/*
 * What this host can give a guest: cpu_compat_describe() of KVM_GET_SUPPORTED_CPUID on kvm_fd,
 * for judging a snapshot's or a migration's guest. 0 or -errno (the ioctl's).
 */
int cpu_compat_describe_host(struct snap_cpu *out, int kvm_fd, const struct host_caps *host);

#endif
