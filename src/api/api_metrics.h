/*
 * The VM's metrics in the Prometheus text exposition format (version 0.0.4): VM exits by
 * reason and vCPU, the exit-handling time histogram, vCPU run and throttled time, emulated
 * instructions, per-device counters, guest memory and vmon's resident memory. Reads only
 * atomics and immutable fields, so it never waits for a vCPU.
 */
#ifndef VMON_API_API_METRICS_H
#define VMON_API_API_METRICS_H

#include <stddef.h>

struct vm;

#define API_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Returns the metrics text (malloc'ed, NUL-terminated, length in *len) or NULL if out of memory. */
char *api_metrics_render(struct vm *vm, size_t *len);

/* vmon's resident set size in bytes (from /proc/self/statm), 0 if unknown. */
unsigned long long api_metrics_rss_bytes(void);

#endif
