/*
 * Snapshots of a running VM: everything needed to continue it in another vmon process, in a
 * directory holding two files, DIR/state (configuration, CPU, interrupt controller, clock and
 * device state; see docs/snapshot-format.md) and DIR/memory-<id> (guest RAM).
 */
#ifndef VMON_STATE_SNAPSHOT_H
#define VMON_STATE_SNAPSHOT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "memory/guest_mem.h"
#include "state/snapshot_disks.h"
#include "state/snapshot_format.h"
#include "state/vm_clock.h"

struct vm;

/* The state file's "memory" section: how much RAM, and which file holds it ("" in a migration's state). */
struct mem_section {
	uint64_t ram_size;
	char file[48];
};

/*
 * Pauses the VM (if it is running), writes its state into dir (created if missing) and resumes
 * it if keep_running (a VM that was already paused stays paused). The files are written under
 * temporary names and renamed into place at the end, so a failed snapshot leaves an earlier
 * snapshot in dir as it was and the VM as it was. Safe from any thread except a vCPU thread.
 * disks says what happens to the writable disks (snapshot_disks.h): frozen as layers of the
 * snapshot, the VM continuing on new overlays in dir, or left alone.
 * Returns 0 or -errno with one sentence in err.
 */
int vmon_snapshot_save(struct vm *vm, const char *dir, bool keep_running, enum snapshot_disks disks, char *err,
		       size_t errlen);

/*
 * The state file of a paused, settled VM (vcpu_state_settle), as snapshots and migrations send
 * it; mem_file names the memory file ("" when RAM travels another way). 0 or -errno (err).
 */
int snapshot_build_state(struct vm *vm, uint64_t id, const char *mem_file, const struct disk_plan *plan, uint8_t **out,
			 size_t *outlen, char *err, size_t errlen);

/* A snapshot opened for restoring. */
struct snapshot_image {
	struct snap_file f;
	char state_path[PATH_MAX];
	char mem_path[PATH_MAX];
	uint64_t ram_size;
	/* The "disk-layers" section: each disk's frozen layer (NULL: none), and whether the restore
	 * put the disk on a new overlay above it (snapshot_disks_new_overlays()). */
	char *layers[CONFIG_MAX_DISKS];
	bool layer_is_qcow2[CONFIG_MAX_DISKS];
	bool on_layer[CONFIG_MAX_DISKS];
	/*
	 * Guest RAM received by a live migration (snapshot_open_received), adopted by
	 * snapshot_restore(); else NULL. NULL with no mem_path: the caller put it in place already.
	 */
	struct guest_mem *ram;
	/* How snapshot_restore() sets the guest's clock (vmon restore --clock); snapshot_open() sets realtime. */
	enum vm_clock_mode clock;
};

/*
 * Reads and checks dir/state and its memory file, and sets the VM's configuration in cfg
 * (kernel, command line, vCPUs, memory, host workarounds) from it; cfg's other fields are
 * left alone. 0 or -errno with one sentence in err.
 */
int snapshot_open(struct snapshot_image *img, const char *dir, struct vm_config *cfg, char *err, size_t errlen);
/*
 * The same for the state a live migration received (taken from *state, which is left empty)
 * with its RAM (kept by the caller until snapshot_restore() takes it over): no memory file, no
 * disk layers. 0 or -errno with one sentence in err.
 */
int snapshot_open_received(struct snapshot_image *img, struct snap_file *state, struct guest_mem *ram,
			   struct vm_config *cfg, char *err, size_t errlen);
/* True if the snapshotted VM had the virtio entropy device. */
bool snapshot_has_rng(const struct snapshot_image *img);
/*
 * Loads the snapshot into vm, made by vm_create() and platform_create() (plus the devices the
 * snapshot has) from the configuration snapshot_open() gave, before its vCPUs ever ran: guest
 * memory is mapped from the memory file, then CPUID, interrupt controllers, clock, vCPUs and
 * devices are loaded (RAM received by a migration is taken over instead). Refuses a host whose
 * CPU lacks what the guest used.
 */
int snapshot_restore(struct vm *vm, const struct snapshot_image *img, char *err, size_t errlen);
void snapshot_close(struct snapshot_image *img);

#endif
