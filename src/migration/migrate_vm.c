#include "migration/migrate_vm.h"

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "lib/log.h"
#include "lib/util.h"
#include "state/cpu_compat.h"
#include "state/snapshot.h"
#include "state/vcpu_state.h"
#include "virtio/virtio_blk.h"
#include "vm/platform.h"
#include "vm/vm.h"

static int vm_ops_pause(void *opaque, char *err, size_t errlen)
{
	struct migrate_vm_ctx *c = opaque;
	int rc = vm_pause(c->vm);
	if (rc == -EALREADY)
		rc = 0;
	else if (rc == 0)
		c->paused_here = true;
	else
		return err_fail(err, errlen, rc, "the VM could not be paused for the switch (%s); it keeps running",
				strerror(-rc));
	for (unsigned int i = 0; i < c->vm->ncpus && !rc; i++)
		if ((rc = vcpu_state_settle(c->vm->vcpus[i])))
			err_fail(err, errlen, rc, "vCPU %u could not finish its pending I/O: %s", i, strerror(-rc));
	return rc;
}

/* Takes back the write locks of the first n disks (a switch that failed). 0, or the first failure's errno (logged). */
static int take_back_disks(struct platform *p, unsigned int n)
{
	int first = 0;
	for (unsigned int i = 0; i < n; i++) {
		int rc = virtio_blk_take_back(p->blk[i]);
		if (rc) {
			log_error("migrate",
				  "disk %u (%s) cannot be locked again (%s): another process, probably the destination "
				  "vmon, has it open for writing",
				  i, virtio_blk_path(p->blk[i]), strerror(-rc));
			first = first ? first : rc;
		}
	}
	return first;
}

static void vm_ops_resume(void *opaque)
{
	struct migrate_vm_ctx *c = opaque;
	if (c->disks_handed_over) {
		struct platform *p = c->vm->platform;
		c->disks_handed_over = false;
		if (take_back_disks(p, p->nblks)) {
			/* Two VMs writing one disk would corrupt it: the user decides once the other one is gone. */
			log_error("migrate", "the guest stays paused here so that two VMs never write one disk: stop the "
					     "other vmon, then vmon ctl resume");
			c->paused_here = false;
			return;
		}
	}
	if (c->paused_here)
		vm_resume(c->vm);
	c->paused_here = false;
}

/*
 * Every disk flushed, then its write lock let go of: the destination opens the images (shared
 * storage, or this host for a local upgrade) before it answers, while this vmon still has them.
 */
static int vm_ops_flush(void *opaque, char *err, size_t errlen)
{
	struct migrate_vm_ctx *c = opaque;
	struct platform *p = c->vm->platform;
	unsigned int n = p ? p->nblks : 0;
	for (unsigned int i = 0; i < n; i++) {
		int rc = virtio_blk_flush(p->blk[i]);
		if (rc)
			return err_fail(err, errlen, rc, "disk %u (%s) could not be flushed before the switch: %s", i,
					virtio_blk_path(p->blk[i]), strerror(-rc));
	}
	for (unsigned int i = 0; i < n; i++) {
		int rc = virtio_blk_hand_over(p->blk[i]);
		if (rc) {
			take_back_disks(p, i);
			return err_fail(err, errlen, rc, "disk %u (%s) could not be unlocked for the destination: %s", i,
					virtio_blk_path(p->blk[i]), strerror(-rc));
		}
	}
	c->disks_handed_over = true;
	return 0;
}

static int vm_ops_state(void *opaque, uint8_t **out, size_t *len, char *err, size_t errlen)
{
	struct migrate_vm_ctx *c = opaque;
	struct disk_plan none;
	memset(&none, 0, sizeof(none));
	pthread_mutex_lock(&c->vm->control_lock);
	int rc = snapshot_build_state(c->vm, 0, "", &none, out, len, err, errlen);
	pthread_mutex_unlock(&c->vm->control_lock);
	return rc;
}

static void vm_ops_migrated(void *opaque, const char *destination)
{
	struct migrate_vm_ctx *c = opaque;
	vm_request_stop(c->vm, VM_STOP_MIGRATED, "migrated: the guest runs at %s now", destination);
}

static void vm_ops_lost(void *opaque, const char *why)
{
	struct migrate_vm_ctx *c = opaque;
	vm_request_stop(c->vm, VM_STOP_ERROR, "%s", why);
}

/* The plan never asks for more than 99 %, which is all vm_set_throttle refuses. */
static void vm_ops_throttle(void *opaque, uint32_t pct)
{
	struct migrate_vm_ctx *c = opaque;
	vm_set_throttle(c->vm, pct);
}

static const struct migrate_vm_ops vm_ops = {
	.pause = vm_ops_pause, .resume = vm_ops_resume, .flush_disks = vm_ops_flush,
	.build_state = vm_ops_state, .migrated = vm_ops_migrated, .lost = vm_ops_lost,
	.set_throttle = vm_ops_throttle,
};

void migrate_vm_describe(struct vm *vm, const char *vmon_version, struct migrate_vm_ctx *ctx, struct migrate_source_vm *out)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->vm = vm;
	ctx->dirty = (struct kvm_dirty_ctx){ .vm_fd = vm->vm_fd, .manual_protect = vm->dirty_manual_protect };
	memset(out, 0, sizeof(*out));
	out->mem = &vm->mem;
	out->dirty_ops = &kvm_dirty_log_ops;
	out->dirty_ctx = &ctx->dirty;
	out->cfg.ram_size = vm->mem.ram_size;
	out->cfg.cpus = vm->ncpus;
	if (vm->cpuid) {
		uLong crc = crc32(0L, (const Bytef *)vm->cpuid, sizeof(*vm->cpuid));
		crc = crc32(crc, (const Bytef *)vm->cpuid->entries, vm->cpuid->nent * sizeof(vm->cpuid->entries[0]));
		out->cfg.cpuid_crc = (uint32_t)crc;
	}
	cpu_compat_describe(&out->cfg.cpu, vm->cpuid, &vm->host);
	out->vmon_version = vmon_version;
	out->ops = &vm_ops;
	out->ctx = ctx;
}
