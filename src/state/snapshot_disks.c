#include "state/snapshot_disks.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "backends/qcow2.h"
#include "config/config_disk.h"
#include "lib/log.h"
#include "lib/util.h"
#include "state/snapshot.h"
#include "virtio/virtio_blk.h"
#include "vm/platform.h"
#include "vm/vm.h"

#define COMP "snapshot"

int snapshot_disks_parse(const char *s, enum snapshot_disks *out)
{
	if (!strcmp(s, "overlay"))
		*out = SNAPSHOT_DISKS_OVERLAY;
	else if (!strcmp(s, "none"))
		*out = SNAPSHOT_DISKS_NONE;
	else if (!strcmp(s, "auto"))
		*out = SNAPSHOT_DISKS_AUTO;
	else
		return -EINVAL;
	return 0;
}

static struct virtio_blk *blk_of(const struct vm *vm, unsigned int i)
{
	const struct platform *p = vm->platform;
	return p && i < p->nblks ? p->blk[i] : NULL;
}

const char *snapshot_disks_live_path(const struct vm *vm, unsigned int i)
{
	struct virtio_blk *b = blk_of(vm, i);
	return b ? virtio_blk_path(b) : vm->cfg->disks[i].path;
}

enum disk_format snapshot_disks_live_format(const struct vm *vm, unsigned int i)
{
	struct virtio_blk *b = blk_of(vm, i);
	return b ? virtio_blk_format(b) : vm->cfg->disks[i].format;
}

void snapshot_disks_plan_free(struct disk_plan *plan)
{
	for (unsigned int i = 0; i < CONFIG_MAX_DISKS; i++) {
		free(plan->layer[i]);
		plan->layer[i] = NULL;
	}
}

/* Why disk i cannot be switched onto an overlay, or NULL when it can. */
static const char *cannot_switch(const char *path, struct stat *st)
{
	if (stat(path, st) < 0)
		return "it cannot be found any more";
	if (!S_ISREG(st->st_mode))
		return "it is not a file on a file system (a block device?)";
	return NULL;
}

int snapshot_disks_plan(struct vm *vm, enum snapshot_disks mode, struct disk_plan *plan, char *err, size_t errlen)
{
	memset(plan, 0, sizeof(*plan));
	plan->n = vm->cfg->ndisks;
	if (mode == SNAPSHOT_DISKS_NONE)
		return 0;
	for (unsigned int i = 0; i < plan->n; i++) {
		struct virtio_blk *b = blk_of(vm, i);
		if (!b || virtio_blk_readonly(b))
			continue; /* a read-only disk does not change: the snapshot uses it as it is */
		const char *path = virtio_blk_path(b);
		struct stat st;
		const char *why = cannot_switch(path, &st);
		if (why && mode == SNAPSHOT_DISKS_OVERLAY) {
			snapshot_disks_plan_free(plan);
			return err_fail(err, errlen, -ENOTSUP,
				    "disk %u (%s) cannot be frozen under an overlay: %s; snapshot with --disks=none and copy "
				    "the disk yourself",
				    i, path, why);
		}
		if (why) {
			log_info(COMP, "disk %u (%s): %s, so this snapshot leaves the disks alone (--disks=none)", i, path,
				 why);
			snapshot_disks_plan_free(plan);
			plan->n = vm->cfg->ndisks;
			return 0;
		}
		char real[PATH_MAX];
		if (!realpath(path, real) || !(plan->layer[i] = strdup(real))) {
			snapshot_disks_plan_free(plan);
			return err_fail(err, errlen, -ENOMEM, "cannot resolve the path of disk %u (%s)", i, path);
		}
		plan->freeze[i] = true;
		plan->format[i] = virtio_blk_format(b);
	}
	return 0;
}

int snapshot_disks_add_section(const struct disk_plan *plan, struct snap_writer *w)
{
	bool any = false;
	json_t *a = json_array();
	for (unsigned int i = 0; a && i < plan->n; i++) {
		any |= plan->freeze[i];
		json_t *e = plan->freeze[i] ? json_pack("{s:s, s:s}", "path", plan->layer[i], "format",
							config_disk_format_name(plan->format[i]))
					    : json_null();
		if (!e || json_array_append_new(a, e)) {
			json_decref(a);
			return -ENOMEM;
		}
	}
	if (!a)
		return -ENOMEM;
	char *text = any ? json_dumps(a, JSON_COMPACT) : NULL;
	json_decref(a);
	if (!any)
		return 0;
	if (!text)
		return -ENOMEM;
	int rc = snap_writer_add(w, SNAPSHOT_DISK_LAYERS, text, strlen(text));
	free(text);
	return rc;
}

int snapshot_disks_freeze(struct vm *vm, const struct disk_plan *plan, const char *dir, uint64_t id, char *err,
			  size_t errlen)
{
	char real_dir[PATH_MAX];
	if (!realpath(dir, real_dir))
		return err_fail(err, errlen, -errno, "cannot resolve the snapshot directory %s: %s", dir, strerror(errno));
	for (unsigned int i = 0; i < plan->n; i++) {
		if (!plan->freeze[i])
			continue;
		char path[PATH_MAX];
		if (snprintf(path, sizeof(path), "%s/disk%u-%016" PRIx64 ".qcow2", real_dir, i, id) >= (int)sizeof(path))
			return err_fail(err, errlen, -ENAMETOOLONG, "the snapshot directory's path is too long");
		int rc = virtio_blk_switch_to_overlay(blk_of(vm, i), path);
		if (rc)
			return err_fail(err, errlen, rc,
				    "disk %u (%s) could not be switched onto a new overlay in %s: %s (see the log); no "
				    "snapshot was written",
				    i, plan->layer[i], dir, strerror(-rc));
	}
	return 0;
}

/* ---- restoring ---- */

int snapshot_disks_load(struct snapshot_image *img, unsigned int ndisks, char *err, size_t errlen)
{
	size_t len = 0;
	const char *text = snap_file_section(&img->f, SNAPSHOT_DISK_LAYERS, &len);
	if (!text)
		return 0;
	json_t *a = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	int rc = 0;
	if (!a || !json_is_array(a) || json_array_size(a) != ndisks)
		rc = err_fail(err, errlen, -EINVAL, "%s: the disk-layers section does not list one entry per disk",
			  img->state_path);
	for (unsigned int i = 0; !rc && i < ndisks; i++) {
		json_t *e = json_array_get(a, i);
		if (json_is_null(e))
			continue;
		const char *path = json_string_value(json_object_get(e, "path"));
		const char *format = json_string_value(json_object_get(e, "format"));
		if (!path || path[0] != '/' || !format || (strcmp(format, "raw") && strcmp(format, "qcow2")))
			rc = err_fail(err, errlen, -EINVAL,
				  "%s: disk %u's layer needs an absolute \"path\" and a \"format\" of raw or qcow2",
				  img->state_path, i);
		else if (!(img->layers[i] = strdup(path)))
			rc = -ENOMEM;
		else
			img->layer_is_qcow2[i] = !strcmp(format, "qcow2");
	}
	json_decref(a);
	return rc;
}

int snapshot_disks_new_overlays(struct snapshot_image *img, struct vm_config *cfg, const char *disk_dir,
				const bool *keep, char *err, size_t errlen)
{
	for (unsigned int i = 0; i < cfg->ndisks; i++) {
		if (!img->layers[i] || keep[i])
			continue;
		uint64_t tag = 0;
		if (getrandom(&tag, sizeof(tag), 0) != sizeof(tag))
			return err_fail(err, errlen, -EIO, "no random bytes to name a disk overlay");
		char path[PATH_MAX];
		if (snprintf(path, sizeof(path), "%s/disk%u-restore-%016" PRIx64 ".qcow2", disk_dir, i, tag) >=
		    (int)sizeof(path))
			return err_fail(err, errlen, -ENAMETOOLONG, "the disk directory's path is too long");
		int rc = qcow2_create_overlay(path, img->layers[i], img->layer_is_qcow2[i] ? "qcow2" : "raw");
		if (rc)
			return err_fail(err, errlen, rc,
				    "cannot start disk %u on the snapshot's layer %s: creating the overlay %s failed: %s", i,
				    img->layers[i], path, strerror(-rc));
		char *copy = strdup(path);
		if (!copy)
			return -ENOMEM;
		free(cfg->disks[i].path);
		cfg->disks[i].path = copy;
		cfg->disks[i].format = DISK_FORMAT_QCOW2;
		img->on_layer[i] = true;
		log_info(COMP, "disk %u starts on the snapshot's layer %s; its writes go to %s", i, img->layers[i], path);
	}
	return 0;
}
