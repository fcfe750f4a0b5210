/*
 * Guest RAM as KVM memory slots (RAM region i is slot i), and KVM's dirty-page log of them for
 * migration: the only place that registers slots or reads the log.
 */
#ifndef VMON_MEMORY_KVM_SLOTS_H
#define VMON_MEMORY_KVM_SLOTS_H

#include <stdbool.h>
#include <stdint.h>

#include "memory/dirty_log.h"
#include "memory/guest_mem.h"

/*
 * Registers RAM region i as slot i (logging: with KVM_MEM_LOG_DIRTY_PAGES), or removes the slot
 * (remove). KVM accepts a changed flag on a registered slot without touching its contents.
 * Returns 0 or -errno.
 */
int kvm_slot_set(int vm_fd, const struct guest_mem *mem, int slot, bool logging, bool remove);

/*
 * Where KVM offers KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, turns it on (with pages initially dirty
 * when offered, so starting the log does not write-protect all RAM at once) and returns true:
 * reading the log then leaves pages writable until KVM_CLEAR_DIRTY_LOG re-arms exactly the
 * ones read. On the thread that creates the VM, before the vCPUs run.
 */
bool kvm_slots_manual_protect(int vm_fd);

/* ctx for kvm_dirty_log_ops. */
struct kvm_dirty_ctx {
	int vm_fd;
	bool manual_protect; /* what kvm_slots_manual_protect() returned */
};
extern const struct dirty_log_ops kvm_dirty_log_ops;

#endif
