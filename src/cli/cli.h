/* Subcommands of the vmon binary. Each returns the process exit status. */
#ifndef VMON_CLI_CLI_H
#define VMON_CLI_CLI_H

/* Exit statuses, documented in docs/usage.md. */
#define EXIT_GUEST_OK 0   /* guest powered off or rebooted, or the user stopped it */
#define EXIT_GUEST_FAILED 1 /* guest crashed (triple fault, panic) or vmon hit an error while running it */
#define EXIT_USAGE 2      /* bad command line or configuration: nothing was started */

/*
 * For the client commands (ctl, ps) the same three values mean: 0 done, 1 the VM or its API
 * refused or could not be reached, 2 bad command line.
 */

int cli_run(int argc, char **argv);
/* vmon restore: continue a VM from a snapshot directory. */
int cli_restore(int argc, char **argv);
/* vmon clone: start N clones of a snapshot in the background and report each one. */
int cli_clone(int argc, char **argv);
/* vmon receive: the destination of a live migration (src/cli/receive.c). */
int cli_receive(int argc, char **argv);
/* vmon ctl: one command to a running VM's API. */
int cli_ctl(int argc, char **argv);
/* vmon ps: the VMs running on this host. */
int cli_ps(int argc, char **argv);
/* vmon jail: vmon run confined in a jail directory, namespaces and cgroups as another user. */
int cli_jail(int argc, char **argv);

#endif
