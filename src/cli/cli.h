/* Subcommands of the vmon binary. Each returns the process exit status. */
#ifndef VMON_CLI_CLI_H
#define VMON_CLI_CLI_H

/* Exit statuses, documented in docs/usage.md. */
#define EXIT_GUEST_OK 0   /* guest powered off or rebooted, or the user stopped it */
#define EXIT_GUEST_FAILED 1 /* guest crashed (triple fault, panic) or vmon hit an error while running it */
#define EXIT_USAGE 2      /* bad command line or configuration: nothing was started */

int cli_run(int argc, char **argv);

#endif
