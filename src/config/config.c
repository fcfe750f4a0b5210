#include "config/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"

#define DEFAULT_MEMORY (256 * MiB)
#define MIN_MEMORY (16 * MiB)
/* 1 TiB: beyond this guest RAM no longer fits under the 40-bit physical address space we advertise. */
#define MAX_MEMORY (1024 * GiB)

void config_init_defaults(struct vm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->cpus = 1;
	cfg->memory = DEFAULT_MEMORY;
	cfg->workarounds = HOST_WORKAROUNDS_AUTO;
}

void config_free(struct vm_config *cfg)
{
	free(cfg->kernel_path);
	free(cfg->initrd_path);
	free(cfg->cmdline);
	free(cfg->log_level);
	memset(cfg, 0, sizeof(*cfg));
}

int config_validate(const struct vm_config *cfg, char *err, unsigned long errlen)
{
	if (!cfg->kernel_path || !*cfg->kernel_path) {
		snprintf(err, errlen, "no kernel given: pass --kernel PATH (a bzImage or an ELF vmlinux)");
		return -EINVAL;
	}
	if (cfg->cpus < 1 || cfg->cpus > CONFIG_MAX_CPUS) {
		snprintf(err, errlen, "--cpus %u is out of range: give a number from 1 to %d", cfg->cpus,
			 CONFIG_MAX_CPUS);
		return -EINVAL;
	}
	if (cfg->memory < MIN_MEMORY) {
		snprintf(err, errlen, "--memory %llu bytes is too small: give at least 16M",
			 (unsigned long long)cfg->memory);
		return -EINVAL;
	}
	if (cfg->memory > MAX_MEMORY) {
		snprintf(err, errlen, "--memory is larger than the 1T vmon supports");
		return -EINVAL;
	}
	if (cfg->memory % (2 * MiB)) {
		snprintf(err, errlen, "--memory must be a multiple of 2M (e.g. 256M, 1G)");
		return -EINVAL;
	}
	return 0;
}
