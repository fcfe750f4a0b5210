/*
 * Kernel samepage merging (KSM) as one VM sees it: whether the host's ksmd runs, and how many of
 * this process's pages it merged (--memory SIZE,merge=on; docs/usage.md).
 */
#ifndef VMON_MEMORY_KSM_H
#define VMON_MEMORY_KSM_H

#include <stdbool.h>
#include <stdint.h>

#define KSM_RUN_PATH "/sys/kernel/mm/ksm/run"

/* This process's figures: /proc/self/ksm_stat (Linux 6.1+), else /proc/self/ksm_merging_pages (5.19+). */
struct ksm_stats {
	uint64_t merging_pages; /* pages of this process KSM maps to a shared page */
	uint64_t zero_pages;    /* empty pages KSM mapped to the zero page (use_zero_pages=1) */
	uint64_t rmap_items;    /* KSM's bookkeeping entries for this process (64 bytes each) */
	int64_t profit_bytes;   /* memory saved minus KSM's bookkeeping; may be negative */
	bool have_stat;         /* zero_pages, rmap_items and profit_bytes were read (ksm_stat) */
};

/* 0, or -errno when the kernel reports neither file. */
int ksm_read_stats(struct ksm_stats *s);

/* /sys/kernel/mm/ksm/run: 0 stopped, 1 merging, 2 unmerging; -errno when it cannot be read. */
int ksm_host_run(void);

/* At start-up with merge=on: says whether the host's KSM runs, and how to start it when it does not. */
void ksm_log_host_state(void);

#endif
