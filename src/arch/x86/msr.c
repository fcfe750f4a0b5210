#include "arch/x86/msr.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "lib/log.h"
#include "lib/util.h"

struct msr_init {
	uint32_t index;
	uint64_t value;
	/*
	 * KVM implements MTRRs for every vCPU whose CPUID has MTRR but never lists them in
	 * KVM_GET_MSR_INDEX_LIST; such MSRs are tried on their own and skipped if refused.
	 */
	bool unlisted_ok;
};

static const struct msr_init boot_msrs[] = {
	{ MSR_IA32_SYSENTER_CS, 0, false },
	{ MSR_IA32_SYSENTER_ESP, 0, false },
	{ MSR_IA32_SYSENTER_EIP, 0, false },
	{ MSR_STAR, 0, false },
	{ MSR_LSTAR, 0, false },
	{ MSR_CSTAR, 0, false },
	{ MSR_SYSCALL_MASK, 0, false },
	{ MSR_KERNEL_GS_BASE, 0, false },
	{ MSR_IA32_TSC, 0, false },
	/* Linux only uses fast "rep movs/stos" string copies when firmware enabled them. */
	{ MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING, false },
	{ MSR_IA32_CR_PAT, PAT_RESET_VALUE, false },
	/* MTRRs on with write-back as the default: without it Linux disables PAT too. */
	{ MSR_MTRR_DEF_TYPE, MTRR_DEF_TYPE_ENABLE | MTRR_TYPE_WRBACK, true },
};

static int get_msr_index_list(int kvm_fd, struct kvm_msr_list **out)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return -errno;
	/* The list can grow between calls only across a module reload; retry once with more room. */
	for (int attempt = 0; attempt < 2; attempt++) {
		uint32_t n = probe.nmsrs + 16;
		struct kvm_msr_list *list = calloc(1, sizeof(*list) + n * sizeof(list->indices[0]));
		if (!list)
			return -ENOMEM;
		list->nmsrs = n;
		if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, list) == 0) {
			*out = list;
			return 0;
		}
		int e = errno;
		probe.nmsrs = list->nmsrs;
		free(list);
		if (e != E2BIG)
			return -e;
	}
	return -E2BIG;
}

static bool msr_listed(const struct kvm_msr_list *list, uint32_t index)
{
	for (uint32_t i = 0; i < list->nmsrs; i++)
		if (list->indices[i] == index)
			return true;
	return false;
}

struct msr_batch {
	struct kvm_msrs hdr;
	struct kvm_msr_entry entries[ARRAY_SIZE(boot_msrs)];
};

int msr_setup_vcpu(int kvm_fd, int vcpu_fd, unsigned int vcpu_id)
{
	struct kvm_msr_list *list = NULL;
	int rc = get_msr_index_list(kvm_fd, &list);
	if (rc < 0) {
		log_error("msr", "cannot read KVM's MSR list: %s", strerror(-rc));
		return rc;
	}

	struct msr_batch batch;
	memset(&batch, 0, sizeof(batch));
	for (size_t i = 0; i < ARRAY_SIZE(boot_msrs); i++) {
		const struct msr_init *m = &boot_msrs[i];
		if (msr_listed(list, m->index)) {
			batch.entries[batch.hdr.nmsrs].index = m->index;
			batch.entries[batch.hdr.nmsrs].data = m->value;
			batch.hdr.nmsrs++;
			continue;
		}
		if (!m->unlisted_ok) {
			log_debug("msr", "KVM does not list MSR %#x; leaving it at KVM's reset value", m->index);
			continue;
		}
		struct {
			struct kvm_msrs hdr;
			struct kvm_msr_entry entry;
		} one;
		memset(&one, 0, sizeof(one));
		one.hdr.nmsrs = 1;
		one.entry.index = m->index;
		one.entry.data = m->value;
		if (ioctl(vcpu_fd, KVM_SET_MSRS, &one) != 1)
			log_debug("msr", "KVM refused MSR %#x on vCPU %u; leaving it unset", m->index, vcpu_id);
	}
	free(list);

	int n = ioctl(vcpu_fd, KVM_SET_MSRS, &batch);
	if (n < 0) {
		rc = -errno;
		log_error("msr", "setting the boot MSRs of vCPU %u failed: %s", vcpu_id, strerror(errno));
		return rc;
	}
	if ((uint32_t)n != batch.hdr.nmsrs) {
		log_error("msr", "KVM refused MSR %#x on vCPU %u although it lists it as supported",
			  batch.entries[n].index, vcpu_id);
		return -EINVAL;
	}
	return 0;
}
