/*
 * What the kernel loader targets share: 64 MiB of guest RAM, mapped once and never touched
 * outside what a load writes, so each input costs only the pages its image reaches.
 */
#ifndef VMON_TESTS_FUZZ_FUZZ_KERNEL_LOADERS_H
#define VMON_TESTS_FUZZ_FUZZ_KERNEL_LOADERS_H

#include <string.h>
#include <sys/mman.h>

#include "boot/kernel.h"
#include "fuzz_common.h"
#include "lib/log.h"
#include "memory/guest_mem.h"

#define FUZZ_GUEST_RAM (64ull << 20)

static inline void fuzz_guest_ram(struct guest_mem *mem)
{
	log_set_level(LOG_ERROR);
	void *ram = mmap(NULL, FUZZ_GUEST_RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	fuzz_check(ram != MAP_FAILED, "mmap guest RAM");
	memset(mem, 0, sizeof(*mem));
	mem->nregions = 1;
	mem->regions[0] = (struct guest_mem_region){ .gpa = 0, .size = FUZZ_GUEST_RAM, .host = ram };
	mem->ram_size = FUZZ_GUEST_RAM;
	mem->fd = -1;
}

/* A loaded kernel lies inside guest RAM and starts inside what it loaded. */
static inline void fuzz_check_loaded(const struct kernel_image *k)
{
	fuzz_check(k->load_start <= k->load_end && k->load_end <= FUZZ_GUEST_RAM, "load range outside RAM");
	fuzz_check(memchr(k->format, 0, sizeof(k->format)) != NULL, "format not terminated");
}

/* An exact-size copy of the input, so that reading past the image's end is caught. */
static inline uint8_t *fuzz_copy(const uint8_t *data, size_t size)
{
	uint8_t *p = malloc(size ? size : 1);
	fuzz_check(p != NULL, "malloc");
	memcpy(p, data, size);
	return p;
}

#endif
