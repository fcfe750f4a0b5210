#include "memory/kvm_slots.h"

#include <errno.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include "memory/write_track.h"

int kvm_slot_set(int vm_fd, const struct guest_mem *mem, int slot, bool logging, bool remove)
{
	const struct guest_mem_region *r = &mem->regions[slot];
	struct kvm_userspace_memory_region kr = {
		.slot = (uint32_t)slot,
		.flags = logging && !remove ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = r->gpa,
		.memory_size = remove ? 0 : r->size,
		.userspace_addr = (uint64_t)(uintptr_t)r->host,
	};
	return ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0 ? -errno : 0;
}

bool kvm_slots_manual_protect(int vm_fd)
{
	int offered = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	if (offered <= 0 || !(offered & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE))
		return false;
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
		.args[0] = (uint64_t)offered & (KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET),
	};
	return ioctl(vm_fd, KVM_ENABLE_CAP, &cap) == 0;
}

static int set_logging(void *ctx, const struct guest_mem *mem, int slot, bool on)
{
	const struct kvm_dirty_ctx *k = ctx;
	return kvm_slot_set(k->vm_fd, mem, slot, on, false);
}

static int fetch(void *ctx, const struct guest_mem *mem, int slot, uint64_t *bits)
{
	const struct kvm_dirty_ctx *k = ctx;
	struct kvm_dirty_log log = { .slot = (uint32_t)slot, .dirty_bitmap = bits };
	if (ioctl(k->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
		return -errno;
	if (!k->manual_protect)
		return 0; /* the same call cleared the log and write-protected the pages again */
	/* Re-arms exactly the pages just read; the caller copies them only after this. */
	struct kvm_clear_dirty_log clear = {
		.slot = (uint32_t)slot,
		.num_pages = (uint32_t)write_track_pages(&mem->regions[slot]),
		.first_page = 0,
		.dirty_bitmap = bits,
	};
	return ioctl(k->vm_fd, KVM_CLEAR_DIRTY_LOG, &clear) < 0 ? -errno : 0;
}

const struct dirty_log_ops kvm_dirty_log_ops = { .set_logging = set_logging, .fetch = fetch };
