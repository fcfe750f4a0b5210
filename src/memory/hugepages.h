/*
 * The host's pool of 2 MiB hugepages (/sys/kernel/mm/hugepages/hugepages-2048kB), which
 * --memory SIZE,hugepages=on takes guest RAM from: for the messages that say what is missing.
 */
#ifndef VMON_MEMORY_HUGEPAGES_H
#define VMON_MEMORY_HUGEPAGES_H

#include <stddef.h>
#include <stdint.h>

struct hugepage_pool {
	uint64_t total;    /* vm.nr_hugepages */
	uint64_t free;     /* not in use, reserved ones included */
	uint64_t reserved; /* promised to a mapping, not yet touched */
};

/* Reads the pool; 0 or -errno (no hugetlbfs, or /sys not mounted). */
int hugepages_read_pool(struct hugepage_pool *pool);
/* Pages a new mapping can still reserve: free minus reserved. */
uint64_t hugepages_available(const struct hugepage_pool *pool);
/* One sentence: RAM of ram_size bytes needs N free 2 MiB pages, the host has M, the sysctl to set. */
void hugepages_shortage_message(uint64_t ram_size, char *err, size_t errlen);

#endif
