/*
 * Disks captured together with memory (vmon ctl snapshot --disks=overlay): at the snapshot, each
 * writable disk's top file becomes a read-only layer that belongs to the snapshot and the running
 * VM continues on a new qcow2 overlay in the snapshot directory; a restore starts a new overlay
 * on each layer, so one snapshot restores any number of times. The layers are recorded in the
 * state file's "disk-layers" section (docs/snapshot-format.md); a snapshot without it restores
 * its disks from the configured paths as before.
 */
#ifndef VMON_STATE_SNAPSHOT_DISKS_H
#define VMON_STATE_SNAPSHOT_DISKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "state/snapshot_format.h"

struct vm;
struct snapshot_image;

enum snapshot_disks {
	SNAPSHOT_DISKS_AUTO,    /* overlay when every writable disk can be switched, else none */
	SNAPSHOT_DISKS_OVERLAY, /* refuse the snapshot when a writable disk cannot be switched */
	SNAPSHOT_DISKS_NONE,    /* the disks are left alone (the user copies them) */
};

#define SNAPSHOT_DISK_LAYERS "disk-layers"

/* "overlay", "none" or "auto" into *out; -EINVAL for anything else. */
int snapshot_disks_parse(const char *s, enum snapshot_disks *out);

/* Which disks a snapshot freezes: the layer each writable disk's top file becomes. */
struct disk_plan {
	unsigned int n;
	bool freeze[CONFIG_MAX_DISKS];
	char *layer[CONFIG_MAX_DISKS];        /* absolute path of the frozen top file */
	enum disk_format format[CONFIG_MAX_DISKS];
};

/* Decides, for a paused VM, what mode asks for. 0 or -errno with one sentence in err. */
int snapshot_disks_plan(struct vm *vm, enum snapshot_disks mode, struct disk_plan *plan, char *err, size_t errlen);
void snapshot_disks_plan_free(struct disk_plan *plan);
/* The "disk-layers" section (only when the plan freezes a disk). */
int snapshot_disks_add_section(const struct disk_plan *plan, struct snap_writer *w);
/*
 * Switches every planned disk onto a new overlay DIR/disk<i>-<id>.qcow2 (the VM paused). A disk
 * already switched stays on its overlay when a later one fails. 0 or -errno (err).
 */
int snapshot_disks_freeze(struct vm *vm, const struct disk_plan *plan, const char *dir, uint64_t id, char *err,
			  size_t errlen);
/* Disk i's current top file and format (its configured path until a snapshot switched it). */
const char *snapshot_disks_live_path(const struct vm *vm, unsigned int i);
enum disk_format snapshot_disks_live_format(const struct vm *vm, unsigned int i);

/* Restoring: reads the section into img (no section: no layers). 0 or -errno (err). */
int snapshot_disks_load(struct snapshot_image *img, unsigned int ndisks, char *err, size_t errlen);
/*
 * For each disk with a layer that keep[i] does not keep (a --disk given on the command line),
 * creates a new overlay on the layer in disk_dir, named <disk_dir>/disk<i>-restore-<random>.qcow2,
 * and points cfg's disk at it. 0 or -errno (err).
 */
int snapshot_disks_new_overlays(struct snapshot_image *img, struct vm_config *cfg, const char *disk_dir,
				const bool *keep, char *err, size_t errlen);

#endif
