/* vmon ctl migrate: start a live migration through the VM's API and follow it to its end. */
#ifndef VMON_CLI_CTL_MIGRATE_H
#define VMON_CLI_CTL_MIGRATE_H

#include <stdbool.h>

#include "api/http_client.h"

/* From ctl.c: the VM's error reply, or why its API could not be reached, on stderr. */
void ctl_print_error_reply(const struct http_response *r);
void ctl_print_connect_error(const char *sock, int rc, int timeout_ms);

/* max_downtime_ms, bandwidth_mbps: -1 when not given; postcopy: switch to post-copy after round 1. An exit status of src/cli/cli.h. */
int ctl_migrate(const char *sock, const char *destination, long max_downtime_ms, long bandwidth_mbps, bool postcopy);

#endif
