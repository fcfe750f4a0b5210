/*
 * The operations the pre-copy engine performs on a real VM: pause and settle it, throttle its
 * vCPUs (auto-converge), flush its disks, build its state file as a snapshot does, stop it once
 * the destination runs the guest.
 */
#ifndef VMON_MIGRATION_MIGRATE_VM_H
#define VMON_MIGRATION_MIGRATE_VM_H

#include "memory/kvm_slots.h"
#include "migration/migrate_source.h"

struct vm;

/* What migrate_vm_describe() points into; lives as long as the migration. */
struct migrate_vm_ctx {
	struct vm *vm;
	struct kvm_dirty_ctx dirty;
	bool paused_here; /* the engine paused it (a VM the user paused stays paused on failure) */
	bool disks_handed_over; /* their write locks let go of for the destination (taken back on failure) */
};

/* Fills out for vm (vmon_version: VMON_VERSION, kept by the caller): its RAM, KVM's dirty log, the stream's configuration record. */
void migrate_vm_describe(struct vm *vm, const char *vmon_version, struct migrate_vm_ctx *ctx, struct migrate_source_vm *out);

#endif
