#include "cli/backend_overrides.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_args.h"
#include "config/config_disk.h"

int backend_overrides_add_net(struct backend_overrides *ov, const char *spec)
{
	if (ov->nnets == CONFIG_MAX_NICS) {
		fprintf(stderr, "vmon: --net is given more than %d times\n", CONFIG_MAX_NICS);
		return -EINVAL;
	}
	ov->nets[ov->nnets++] = spec;
	return 0;
}

int backend_overrides_add_disk(struct backend_overrides *ov, const char *spec)
{
	if (ov->ndisks == CONFIG_MAX_DISKS) {
		fprintf(stderr, "vmon: --disk is given more than %d times\n", CONFIG_MAX_DISKS);
		return -EINVAL;
	}
	ov->disks[ov->ndisks++] = spec;
	return 0;
}

int backend_overrides_apply(struct vm_config *cfg, const struct backend_overrides *ov, const char *whose)
{
	if (ov->nnets && ov->nnets != cfg->nnets) {
		fprintf(stderr, "vmon: %s has %u network cards: give --net %u times, in order\n", whose, cfg->nnets,
			cfg->nnets);
		return -EINVAL;
	}
	if (ov->ndisks && ov->ndisks != cfg->ndisks) {
		fprintf(stderr, "vmon: %s has %u disks: give --disk %u times, in order\n", whose, cfg->ndisks,
			cfg->ndisks);
		return -EINVAL;
	}
	if ((ov->console2 && !cfg->console2) || (ov->vsock && !cfg->vsock)) {
		fprintf(stderr, "vmon: %s has no %s device to give a new backend to\n", whose,
			ov->vsock && !cfg->vsock ? "vsock" : "second console");
		return -EINVAL;
	}
	for (unsigned int i = 0; i < ov->nnets; i++)
		cli_set_str(&cfg->nets[i], ov->nets[i]);
	for (unsigned int i = 0; i < ov->ndisks; i++) {
		struct disk_config d;
		char err[256];
		if (config_disk_parse(ov->disks[i], &d, err, sizeof(err))) {
			fprintf(stderr, "vmon: %s\n", err);
			return -EINVAL;
		}
		if (d.readonly != cfg->disks[i].readonly) {
			/* The guest's driver and file system were set up for the access it had. */
			fprintf(stderr,
				"vmon: disk %u of %s is %s and --disk %s makes it %s: the guest keeps using "
				"it as %s, so give the same access (%s ',readonly')\n",
				i, whose, cfg->disks[i].readonly ? "read-only" : "read-write", ov->disks[i],
				d.readonly ? "read-only" : "read-write", cfg->disks[i].readonly ? "read-only" : "read-write",
				cfg->disks[i].readonly ? "add" : "drop");
			config_disk_free(&d);
			return -EINVAL;
		}
		config_disk_free(&cfg->disks[i]);
		cfg->disks[i] = d;
	}
	if (ov->console2)
		cli_set_str(&cfg->console2, ov->console2);
	if (ov->vsock)
		cli_set_str(&cfg->vsock, ov->vsock);
	char err[512];
	if (config_validate(cfg, err, sizeof(err))) {
		fprintf(stderr, "vmon: %s\n", err);
		return -EINVAL;
	}
	return 0;
}

