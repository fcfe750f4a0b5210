#include "memory/ksm.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "lib/log.h"

int ksm_read_stats(struct ksm_stats *s)
{
	memset(s, 0, sizeof(*s));
	FILE *f = fopen("/proc/self/ksm_stat", "re");
	if (f) {
		char line[128], key[64];
		long long v;
		bool merging = false;
		/* "name value" lines; others ("ksm_mergeable: yes") are skipped. */
		while (fgets(line, sizeof(line), f)) {
			if (sscanf(line, "%63s %lld", key, &v) != 2)
				continue;
			if (!strcmp(key, "ksm_merging_pages"))
				s->merging_pages = (uint64_t)v, merging = true;
			else if (!strcmp(key, "ksm_zero_pages"))
				s->zero_pages = (uint64_t)v;
			else if (!strcmp(key, "ksm_rmap_items"))
				s->rmap_items = (uint64_t)v;
			else if (!strcmp(key, "ksm_process_profit"))
				s->profit_bytes = v;
		}
		fclose(f);
		s->have_stat = true;
		if (merging)
			return 0;
	}
	/* Kernels 5.19 to 6.0, or a ksm_stat without the merging count. */
	f = fopen("/proc/self/ksm_merging_pages", "re");
	if (!f)
		return s->have_stat ? 0 : -errno;
	int n = fscanf(f, "%" SCNu64, &s->merging_pages);
	fclose(f);
	return n == 1 || s->have_stat ? 0 : -EIO;
}

int ksm_host_run(void)
{
	FILE *f = fopen(KSM_RUN_PATH, "re");
	if (!f)
		return -errno;
	int run = -1;
	int n = fscanf(f, "%d", &run);
	fclose(f);
	return n == 1 && run >= 0 ? run : -EIO;
}

void ksm_log_host_state(void)
{
	int run = ksm_host_run();
	if (run == 1)
		log_info("vm", "merge=on: guest RAM is open to the host's KSM, which is running");
	else if (run == 0)
		log_warn("vm", "merge=on: KSM is off on this host, so no pages are shared: turn it on as root with "
			       "`echo 1 > " KSM_RUN_PATH "`");
	else if (run == 2)
		log_warn("vm", "merge=on: the host's KSM is unmerging every page (" KSM_RUN_PATH " is 2): nothing is "
			       "shared until it is set to 1");
	else
		log_warn("vm", "merge=on: cannot read " KSM_RUN_PATH " (%s), so whether the host's KSM runs is unknown",
			 strerror(-run));
}
