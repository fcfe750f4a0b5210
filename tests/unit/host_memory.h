/*
 * What the host's kernel says about this process's memory, for tests of guest RAM backings:
 * /proc/self/smaps fields of one mapping, the 2 MiB hugepage pool, and host settings (KSM,
 * vm.nr_hugepages) that a test changes and must put back however it ends.
 */
#ifndef VMON_TESTS_HOST_MEMORY_H
#define VMON_TESTS_HOST_MEMORY_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memory/hugepages.h"

/*
 * Bytes of host memory or disk the file behind fd holds (its allocated blocks): the holes of a
 * memfd or a sparse file cost none. A failing fstat ends the test run.
 */
static inline uint64_t fd_allocated_bytes(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0) {
		perror("fstat");
		abort();
	}
	return (uint64_t)st.st_blocks * 512;
}

#define NR_HUGEPAGES_PATH "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"

/* The line "field: ..." of the /proc/self/smaps entry of the mapping that holds addr, copied into out. */
static inline bool smaps_line(const void *addr, const char *field, char *out, size_t outlen)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	if (!f)
		return false;
	char line[512];
	bool inside = false, found = false;
	size_t flen = strlen(field);
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		char dash;
		if (sscanf(line, "%lx%c%lx ", &lo, &dash, &hi) == 3 && dash == '-') /* "lo-hi perms ..." */
			inside = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
		else if (inside && !strncmp(line, field, flen) && line[flen] == ':') {
			snprintf(out, outlen, "%.*s", (int)(outlen - 1), line + flen + 1);
			found = true;
		}
	}
	fclose(f);
	return found;
}

/* A "NNN kB" smaps field in kB, or -1. */
static inline long smaps_kb(const void *addr, const char *field)
{
	char v[256];
	return smaps_line(addr, field, v, sizeof(v)) ? strtol(v, NULL, 10) : -1;
}

static inline long read_long(const char *path)
{
	FILE *f = fopen(path, "re");
	long v = -1;
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static inline bool write_long(const char *path, long v)
{
	FILE *f = fopen(path, "we");
	if (!f)
		return false;
	bool ok = fprintf(f, "%ld\n", v) > 0;
	return fclose(f) == 0 && ok;
}

static inline struct hugepage_pool pool_now(void)
{
	struct hugepage_pool p = { 0 };
	if (hugepages_read_pool(&p))
		fail_msg("cannot read the host's hugepage pool");
	return p;
}

static long nr_hugepages_saved = -1;

/*
 * Grows vm.nr_hugepages so that n more 2 MiB pages are free and unreserved, for restore_nr_hugepages
 * to put back. False (with the reason printed) when not root or the kernel cannot find them.
 */
static inline bool raise_hugepages(uint64_t n)
{
	long *saved = &nr_hugepages_saved;
	if (geteuid() != 0) {
		print_message("skipped: raising vm.nr_hugepages needs root\n");
		return false;
	}
	*saved = read_long(NR_HUGEPAGES_PATH);
	struct hugepage_pool before = pool_now(), after;
	if (*saved < 0 || !write_long(NR_HUGEPAGES_PATH, (long)(before.total + n)) ||
	    (after = pool_now(), hugepages_available(&after) < n)) {
		print_message("skipped: the host could not give %" PRIu64 " more 2 MiB pages\n", n);
		return false;
	}
	return true;
}

/* A teardown: puts vm.nr_hugepages back as raise_hugepages found it, whether the test passed or not. */
static inline int restore_nr_hugepages(void **state)
{
	(void)state;
	if (nr_hugepages_saved >= 0 && !write_long(NR_HUGEPAGES_PATH, nr_hugepages_saved))
		fprintf(stderr, "could not restore vm.nr_hugepages to %ld\n", nr_hugepages_saved);
	nr_hugepages_saved = -1;
	return 0;
}

#endif
