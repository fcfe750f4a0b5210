/* vmon ps: lists the VMs running on this host from the runtime registry, asking each API for its state. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/http_client.h"
#include "cli/cli.h"
#include "lib/util.h"
#include "vm/registry.h"

#define PS_API_TIMEOUT_MS 2000

static void usage(FILE *f)
{
	fprintf(f, "usage: vmon ps [--json]\n"
		   "\n"
		   "Lists the VMs running on this host (those started by this user, or by root as root).\n"
		   "Entries left by a vmon that was killed are removed, with a note on stderr.\n"
		   "\n"
		   "  --json      print a JSON array instead of a table\n"
		   "  -h, --help  this help\n");
}

/*
 * Asks the VM's API for its state; "-" without an API, "unreachable" when it does not answer,
 * "?" when the answer is not a state name (whatever listens there is not trusted).
 */
static void query_state(const struct registry_entry *e, char *state, size_t len)
{
	snprintf(state, len, "%s", e->api_sock[0] ? "unreachable" : "-");
	if (!e->api_sock[0])
		return;
	json_t *o = http_unix_get_json(e->api_sock, "/vm", PS_API_TIMEOUT_MS);
	const char *s = o ? json_string_value(json_object_get(o, "state")) : NULL;
	if (s)
		snprintf(state, len, "%s", s[strspn(s, "abcdefghijklmnopqrstuvwxyz_-")] ? "?" : s);
	json_decref(o);
}

static void format_size(uint64_t bytes, char *buf, size_t len)
{
	if (bytes >= GiB && bytes % GiB == 0)
		snprintf(buf, len, "%lluG", (unsigned long long)(bytes / GiB));
	else
		snprintf(buf, len, "%lluM", (unsigned long long)(bytes / MiB));
}

static void format_uptime(long long started, char *buf, size_t len)
{
	long long s = started ? (long long)time(NULL) - started : 0;
	if (s < 0)
		s = 0;
	if (s < 60)
		snprintf(buf, len, "%llds", s);
	else if (s < 3600)
		snprintf(buf, len, "%lldm%02llds", s / 60, s % 60);
	else
		snprintf(buf, len, "%lldh%02lldm", s / 3600, (s / 60) % 60);
}

int cli_ps(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool as_json = false;
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': as_json = true; break;
		case 'h': usage(stdout); return 0;
		default:
			fprintf(stderr, "vmon: unknown option '%s' (see vmon ps --help)\n", argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vmon: unexpected argument '%s' (see vmon ps --help)\n", argv[optind]);
		return EXIT_USAGE;
	}

	struct registry_entry *list;
	int n = registry_list(&list);
	if (n < 0)
		return EXIT_GUEST_FAILED; /* the registry said why */
	json_t *arr = as_json ? json_array() : NULL;
	if (!as_json)
		printf("%-8s %-16s %-11s %4s %7s %8s  %s\n", "PID", "NAME", "STATE", "CPUS", "MEMORY", "UPTIME", "API");
	for (int i = 0; i < n; i++) {
		struct registry_entry *e = &list[i];
		if (e->stale) {
			fprintf(stderr, "vmon: removed the stale entry of pid %d (the process is gone): %s\n", e->pid, e->path);
			registry_unregister(e->path);
			continue;
		}
		char state[32], mem[32], up[32];
		query_state(e, state, sizeof(state));
		if (as_json) {
			json_array_append_new(arr, json_pack("{s:i, s:s, s:s, s:I, s:I, s:I, s:s, s:s}", "pid", e->pid, "name",
							     e->name, "state", state, "cpus", (json_int_t)e->cpus, "memory",
							     (json_int_t)e->memory, "started_at", (json_int_t)e->started_at,
							     "api_sock", e->api_sock, "kernel", e->kernel));
			continue;
		}
		format_size(e->memory, mem, sizeof(mem));
		format_uptime(e->started_at, up, sizeof(up));
		printf("%-8d %-16s %-11s %4u %7s %8s  %s\n", e->pid, e->name[0] ? e->name : "-", state, e->cpus, mem, up,
		       e->api_sock[0] ? e->api_sock : "-");
	}
	if (as_json) {
		char *s = json_dumps(arr, JSON_INDENT(2));
		if (s)
			puts(s);
		free(s);
		json_decref(arr);
	}
	free(list);
	return EXIT_GUEST_OK;
}
