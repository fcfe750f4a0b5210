#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_disk.h"
#include "config/config_memory.h"
#include "config/config_net.h"
#include "config/config_sockets.h"
#include "lib/log.h"
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
	cfg->rng = true;
	cfg->landlock = true;
	config_balloon_defaults(&cfg->balloon);
}

void config_free(struct vm_config *cfg)
{
	free(cfg->kernel_path);
	free(cfg->initrd_path);
	free(cfg->cmdline);
	free(cfg->log_level);
	free(cfg->log_file);
	free(cfg->api_sock);
	free(cfg->name);
	for (unsigned int i = 0; i < cfg->nnets && i < CONFIG_MAX_NICS; i++)
		free(cfg->nets[i]);
	for (unsigned int i = 0; i < cfg->ndisks && i < CONFIG_MAX_DISKS; i++)
		config_disk_free(&cfg->disks[i]);
	free(cfg->console2);
	free(cfg->vsock);
	free(cfg->snapshot_dir);
	memset(cfg, 0, sizeof(*cfg));
}

int config_validate(const struct vm_config *cfg, char *err, unsigned long errlen)
{
	if (!cfg->kernel_path || !*cfg->kernel_path) {
		snprintf(err, errlen, "no kernel given: pass --kernel PATH (or \"kernel\" in the config file), "
				      "a bzImage or an ELF vmlinux");
		return -EINVAL;
	}
	if (cfg->cpus < 1 || cfg->cpus > CONFIG_MAX_CPUS) {
		snprintf(err, errlen, "--cpus (\"cpus\") %u is out of range: give a number from 1 to %d", cfg->cpus,
			 CONFIG_MAX_CPUS);
		return -EINVAL;
	}
	if (cfg->memory < MIN_MEMORY) {
		snprintf(err, errlen, "--memory (\"memory\") %llu bytes is too small: give at least 16M",
			 (unsigned long long)cfg->memory);
		return -EINVAL;
	}
	if (cfg->memory > MAX_MEMORY) {
		snprintf(err, errlen, "--memory (\"memory\") is larger than the 1T vmon supports");
		return -EINVAL;
	}
	if (cfg->memory % (2 * MiB)) {
		snprintf(err, errlen, "--memory (\"memory\") must be a multiple of 2M (e.g. 256M, 1G)");
		return -EINVAL;
	}
	if (config_memory_validate(cfg, err, errlen))
		return -EINVAL;
	if (cfg->log_level && log_parse_level(cfg->log_level) < 0) {
		snprintf(err, errlen, "--log-level (\"log_level\") takes error, warn, info or debug, not '%s'",
			 cfg->log_level);
		return -EINVAL;
	}
	if (cfg->api_sock && !*cfg->api_sock) {
		snprintf(err, errlen, "--api-sock (\"api_sock\") is empty: give the path of the Unix socket to serve "
				      "the API on");
		return -EINVAL;
	}
	if (cfg->api_sock && strlen(cfg->api_sock) >= CONFIG_MAX_SOCK_PATH) {
		snprintf(err, errlen, "--api-sock (\"api_sock\") must be a path of 1 to %d bytes (a Unix socket "
				      "path limit); use a shorter path", CONFIG_MAX_SOCK_PATH - 1);
		return -EINVAL;
	}
	if (cfg->log_file && !*cfg->log_file) {
		snprintf(err, errlen, "--log-file (\"log_file\") is empty: give a file path");
		return -EINVAL;
	}
	if (cfg->name) {
		size_t n = strlen(cfg->name);
		bool ok = n >= 1 && n <= CONFIG_MAX_NAME;
		for (size_t i = 0; ok && i < n; i++)
			ok = isalnum((unsigned char)cfg->name[i]) || strchr("-_.", cfg->name[i]);
		if (!ok) {
			snprintf(err, errlen, "--name (\"name\") '%s' is not a valid VM name: use 1 to %d letters, "
					      "digits, '-', '_' or '.'", cfg->name, CONFIG_MAX_NAME);
			return -EINVAL;
		}
	}
	if (cfg->nnets > CONFIG_MAX_NICS) {
		snprintf(err, errlen, "--net (\"net\") is given %u times: vmon supports at most %d network cards",
			 cfg->nnets, CONFIG_MAX_NICS);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < cfg->nnets; i++) {
		struct net_spec spec;
		if (config_net_parse(cfg->nets[i], &spec, err, errlen))
			return -EINVAL;
	}
	if (config_disks_validate(cfg, err, errlen))
		return -EINVAL;
	struct console2_spec console2;
	if (cfg->console2 && config_console2_parse(cfg->console2, &console2, err, errlen))
		return -EINVAL;
	struct vsock_spec vsock;
	if (cfg->vsock && config_vsock_parse(cfg->vsock, &vsock, err, errlen))
		return -EINVAL;
	return 0;
}

int config_parse_workarounds(const char *s)
{
	if (!strcmp(s, "auto"))
		return HOST_WORKAROUNDS_AUTO;
	if (!strcmp(s, "on"))
		return HOST_WORKAROUNDS_ON;
	if (!strcmp(s, "off"))
		return HOST_WORKAROUNDS_OFF;
	return -1;
}

int config_parse_seccomp(const char *s)
{
	if (!strcmp(s, "on"))
		return SECCOMP_MODE_ON;
	if (!strcmp(s, "log"))
		return SECCOMP_MODE_LOG;
	if (!strcmp(s, "off"))
		return SECCOMP_MODE_OFF;
	return -1;
}

const char *config_workarounds_name(enum host_workarounds w)
{
	switch (w) {
	case HOST_WORKAROUNDS_AUTO: return "auto";
	case HOST_WORKAROUNDS_ON: return "on";
	case HOST_WORKAROUNDS_OFF: return "off";
	}
	return "auto";
}
