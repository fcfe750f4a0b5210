/* Loading an ELF64 x86-64 executable (a Linux vmlinux or a test guest) at its physical addresses. */
#ifndef VMON_BOOT_ELF_LOADER_H
#define VMON_BOOT_ELF_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "boot/kernel.h"
#include "memory/guest_mem.h"

/* True when data starts with the ELF magic, whatever its class or machine. */
bool elf_has_magic(const uint8_t *data, size_t len);

/*
 * Copies every PT_LOAD segment of the image in data to its p_paddr in guest memory and zeroes
 * the rest of its p_memsz. Sets out->entry (e_entry, turned into a physical address when it is
 * a virtual one), out->load_start and out->load_end; leaves the other fields alone. Segments
 * must lie in guest RAM at or above 1 MiB. what names the image in messages
 * ("kernel /boot/vmlinux"). Returns 0, or a negative errno with one sentence in err:
 * -ENOEXEC (not a usable ELF64 x86-64 executable), -E2BIG (a segment is outside guest RAM),
 * -EINVAL (a segment overlaps the first MiB).
 */
int elf_load(struct guest_mem *mem, const uint8_t *data, size_t len, const char *what,
	     struct kernel_image *out, char *err, size_t errlen);

#endif
