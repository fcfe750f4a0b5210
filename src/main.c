/* vmon: a virtual machine monitor for Linux/KVM. */
#include <stdio.h>
#include <string.h>

#include "api/api_migrate.h"
#include "cli/cli.h"
#include "version.h" /* build/version.h, made by the Makefile */

static void usage(FILE *f)
{
	fprintf(f, "usage: vmon COMMAND [options]\n"
		   "\n"
		   "commands:\n"
		   "  run        boot a kernel in a new VM (vmon run --help)\n"
		   "  restore    continue a VM from a snapshot directory (vmon restore --help)\n"
		   "  receive    wait for a VM migrated from another vmon and run it (vmon receive --help)\n"
		   "  clone      start N clones of a snapshot in the background (vmon clone --help)\n"
		   "  ctl        control a running VM through its API (vmon ctl --help)\n"
		   "  ps         list the VMs running on this host (vmon ps --help)\n"
		   "  jail       run a VM confined to a jail directory as another user (vmon jail --help)\n"
		   "  version    print the version\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	api_migrate_vmon_version = VMON_VERSION;
	if (!strcmp(cmd, "run"))
		return cli_run(argc - 1, argv + 1);
	if (!strcmp(cmd, "restore"))
		return cli_restore(argc - 1, argv + 1);
	if (!strcmp(cmd, "receive"))
		return cli_receive(argc - 1, argv + 1);
	if (!strcmp(cmd, "clone"))
		return cli_clone(argc - 1, argv + 1);
	if (!strcmp(cmd, "ctl"))
		return cli_ctl(argc - 1, argv + 1);
	if (!strcmp(cmd, "ps"))
		return cli_ps(argc - 1, argv + 1);
	if (!strcmp(cmd, "jail"))
		return cli_jail(argc - 1, argv + 1);
	if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
		printf("vmon %s\n", VMON_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "vmon: unknown command '%s'\n", cmd);
	usage(stderr);
	return EXIT_USAGE;
}
