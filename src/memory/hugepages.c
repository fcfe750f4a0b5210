#include "memory/hugepages.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#define POOL_DIR "/sys/kernel/mm/hugepages/hugepages-2048kB/"
#define HUGE_PAGE (2ULL << 20)

static int read_count(const char *name, uint64_t *out)
{
	FILE *f = fopen(name, "re");
	if (!f)
		return -errno;
	int n = fscanf(f, "%" SCNu64, out);
	fclose(f);
	return n == 1 ? 0 : -EIO;
}

int hugepages_read_pool(struct hugepage_pool *pool)
{
	int rc = read_count(POOL_DIR "nr_hugepages", &pool->total);
	if (!rc)
		rc = read_count(POOL_DIR "free_hugepages", &pool->free);
	if (!rc)
		rc = read_count(POOL_DIR "resv_hugepages", &pool->reserved);
	return rc;
}

uint64_t hugepages_available(const struct hugepage_pool *pool)
{
	return pool->free > pool->reserved ? pool->free - pool->reserved : 0;
}

void hugepages_shortage_message(uint64_t ram_size, char *err, size_t errlen)
{
	uint64_t need = (ram_size + HUGE_PAGE - 1) / HUGE_PAGE;
	struct hugepage_pool pool;
	if (hugepages_read_pool(&pool)) {
		snprintf(err, errlen,
			 "hugepages=on: guest RAM needs %" PRIu64 " free 2 MiB pages and the host could not reserve them "
			 "(see HugePages_Free in /proc/meminfo): raise vm.nr_hugepages, e.g. `sysctl vm.nr_hugepages=%" PRIu64
			 "`",
			 need, need);
		return;
	}
	uint64_t have = hugepages_available(&pool);
	uint64_t want = pool.total + (need > have ? need - have : 0);
	snprintf(err, errlen,
		 "hugepages=on: guest RAM needs %" PRIu64 " free 2 MiB pages, the host has %" PRIu64
		 ": raise vm.nr_hugepages, e.g. `sysctl vm.nr_hugepages=%" PRIu64 "`",
		 need, have, want);
}
