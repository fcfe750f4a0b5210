/*
 * The --disk option ("disks" in the JSON config): one virtio-blk disk per occurrence, in order
 * (the first is the guest's /dev/vda).
 *
 *   --disk PATH[,readonly][,serial=ID][,format=raw|qcow2]
 *   "disks": [ { "path": "PATH", "readonly": false, "serial": "ID", "format": "qcow2" }, ... ]
 *
 * PATH is a raw or qcow2 image file or a block device (a path containing ',' cannot be given on
 * the command line; use the config file); without format= the format is probed (disk_image.h
 * says how a raw image probed so is kept from turning into a qcow2 one). ID is at most 20 printable ASCII characters, what the
 * guest reads as the disk's serial (/sys/block/vda/serial, /dev/disk/by-id).
 */
#ifndef VMON_CONFIG_CONFIG_DISK_H
#define VMON_CONFIG_CONFIG_DISK_H

#include <jansson.h>
#include <stddef.h>

#include "config/config.h"

/* Parses one --disk value into *out (strings malloc'ed). On error: one sentence in err, -EINVAL. */
int config_disk_parse(const char *spec, struct disk_config *out, char *err, size_t errlen);
void config_disk_free(struct disk_config *d);
/* "raw", "qcow2", or NULL for DISK_FORMAT_AUTO. */
const char *config_disk_format_name(enum disk_format f);

/* Checks cfg->disks (count, paths, serials, the same image twice); -EINVAL with a sentence in err. */
int config_disks_validate(const struct vm_config *cfg, char *err, size_t errlen);

/* "disks" from JSON: an array of objects; replaces the whole list. -EINVAL with a sentence naming the key. */
int config_disks_from_json(struct vm_config *cfg, const char *key, const json_t *v, char *err, size_t errlen);
/* The disks as a JSON array (new reference; NULL only on allocation failure). */
json_t *config_disks_to_json(const struct vm_config *cfg);

#endif
