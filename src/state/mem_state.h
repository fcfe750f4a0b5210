/*
 * Guest RAM in a snapshot: its own file, RAM's bytes at their offsets in guest_mem order (the
 * low region, then the region above 4 GiB) followed by a 4 KiB trailer naming the snapshot it
 * belongs to. Pages that are all zero are left as holes, so the file takes the space of the RAM
 * the guest used. A restore maps the file privately instead of reading it.
 */
#ifndef VMON_STATE_MEM_STATE_H
#define VMON_STATE_MEM_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "memory/guest_mem.h"

#define MEM_TRAILER_SIZE 4096u

struct vm;

/*
 * Writes mem into fd (an empty regular file). Logs progress at info level for big guests.
 * 0 or -errno (message in err).
 */
int mem_state_write(const struct guest_mem *mem, int fd, uint64_t snapshot_id, char *err, size_t errlen);

/* Checks the memory file at path belongs to snapshot_id and holds ram_size bytes. 0 or -errno (message in err). */
int mem_state_check(const char *path, uint64_t ram_size, uint64_t snapshot_id, char *err, size_t errlen);

/*
 * Recomputes the CRC32 of the RAM in the memory file at path (checked by mem_state_check) and
 * compares it with the one written with the snapshot: 0, -EBADMSG if they differ, -ENODATA if
 * the file has none (written by an older vmon), -errno (message in err). Reads all of the file's
 * data: a cost only vmon restore --verify pays.
 */
int mem_state_verify(const char *path, uint64_t ram_size, char *err, size_t errlen);

/*
 * Replaces vm's RAM (not yet run) with a private mapping of the memory file: KVM's memory slots
 * are re-pointed at it. 0 or -errno (message in err).
 */
int mem_state_map(struct vm *vm, const char *path, char *err, size_t errlen);

/*
 * Replaces vm's RAM (not yet run) with ram, RAM of the same size filled elsewhere (a live
 * migration's): vm takes it over and ram is left empty. 0 or -errno (message in err).
 */
int mem_state_adopt(struct vm *vm, struct guest_mem *ram, char *err, size_t errlen);

#endif
