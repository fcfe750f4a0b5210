/* vmon ctl: sends one command to a running VM's control API and prints the reply. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/http_client.h"
#include "cli/cli.h"
#include "cli/ctl_migrate.h"
#include "vm/registry.h"

/* A pause waits up to 10 s for the vCPUs; leave room for it. */
#define CTL_TIMEOUT_MS 30000
#define CTL_SNAPSHOT_TIMEOUT_MS (30 * 60 * 1000)

static void usage(FILE *f)
{
	fprintf(f, "usage: vmon ctl (--sock PATH | --vm NAME|PID) COMMAND\n"
		   "\n"
		   "Sends a command to a VM started with vmon run --api-sock PATH.\n"
		   "\n"
		   "commands:\n"
		   "  info                 state, configuration, uptime, vCPUs, memory (JSON)\n"
		   "  pause                stop every vCPU; the guest's clock stands still\n"
		   "  resume               continue a paused VM\n"
		   "  shutdown [--timeout SECONDS]\n"
		   "                       press Ctrl-Alt-Del in the guest, stop the VM if it is still\n"
		   "                       running after SECONDS (default 30)\n"
		   "  stop                 stop the VM now\n"
		   "  metrics              Prometheus metrics\n"
		   "  snapshot DIR [--keep-running=false] [--disks=overlay|none]\n"
		   "                       write the VM's state to DIR (vmon restore DIR continues it);\n"
		   "                       with --keep-running=false the VM stays paused afterwards;\n"
		   "                       --disks=overlay (the default where every writable disk is a\n"
		   "                       file) freezes the disks with memory, the VM continuing on new\n"
		   "                       overlays in DIR; none leaves them alone (docs/usage.md)\n"
		   "  balloon MIB          leave the guest MIB MiB of RAM, the rest in its balloon\n"
		   "                       (needs vmon run --balloon; docs/usage.md)\n"
		   "  balloon-stats        the balloon's target and actual size, the guest's memory\n"
		   "                       statistics (JSON)\n"
		   "  migrate tcp:HOST:PORT [--max-downtime MS] [--bandwidth MBPS] [--postcopy]\n"
		   "                       live-migrate the VM to vmon receive --listen there, showing\n"
		   "                       progress; the guest keeps running here if it fails (with\n"
		   "                       --postcopy: until the guest started there; see the risk in\n"
		   "                       docs/migration.md)\n"
		   "                       (docs/migration.md)\n"
		   "\n"
		   "  --sock PATH          the VM's API socket\n"
		   "  --vm NAME|PID        a VM listed by vmon ps, by name or pid\n"
		   "  -h, --help           this help\n");
}

/* Finds the API socket of a registered VM by name or pid. */
static int lookup_vm(const char *which, char *sock, size_t len)
{
	struct registry_entry *list;
	int n = registry_list(&list);
	if (n < 0)
		return -1; /* the registry said why */
	char *end;
	long pid = strtol(which, &end, 10);
	bool by_pid = *which && !*end;
	const struct registry_entry *found = NULL;
	int matches = 0;
	for (int i = 0; i < n; i++) {
		if (list[i].stale)
			continue;
		if ((by_pid && list[i].pid == pid) || (!by_pid && !strcmp(list[i].name, which))) {
			found = &list[i];
			matches++;
		}
	}
	int rc = -1;
	if (!found)
		fprintf(stderr, "vmon: no running VM is called '%s' (vmon ps lists them)\n", which);
	else if (matches > 1)
		fprintf(stderr, "vmon: %d running VMs are called '%s': give the pid instead (vmon ps lists them)\n",
			matches, which);
	else if (!found->api_sock[0])
		fprintf(stderr, "vmon: VM '%s' (pid %d) has no API: start it with vmon run --api-sock PATH\n", which,
			found->pid);
	else if (snprintf(sock, len, "%s", found->api_sock) < (int)len)
		rc = 0;
	free(list);
	return rc;
}

/* The body and any message in it come from whatever listens on the socket: escaped before printing. */
void ctl_print_error_reply(const struct http_response *r)
{
	json_error_t jerr;
	json_t *o = json_loadb(r->body, r->len, 0, &jerr);
	const char *msg = o ? json_string_value(json_object_get(o, "error")) : NULL;
	if (msg) {
		fprintf(stderr, "vmon: the VM refused (HTTP %d): ", r->status);
		http_write_escaped(stderr, msg, strlen(msg), 0);
	} else {
		fprintf(stderr, "vmon: the VM's API answered HTTP %d: ", r->status);
		http_write_escaped(stderr, r->body, r->len > 300 ? 300 : r->len, 0);
	}
	fputc('\n', stderr);
	json_decref(o);
}

void ctl_print_connect_error(const char *sock, int rc, int timeout_ms)
{
	struct stat st;
	if (rc == -ENOENT)
		fprintf(stderr, "vmon: no API socket at %s: is the VM running with --api-sock %s? (vmon ps lists "
				"running VMs)\n", sock, sock);
	else if ((rc == -ECONNREFUSED || rc == -ENOTSOCK) && lstat(sock, &st) == 0 && !S_ISSOCK(st.st_mode))
		fprintf(stderr, "vmon: %s is not a socket: give the API socket of a running VM (vmon ps lists them)\n",
			sock);
	else if (rc == -ECONNREFUSED)
		fprintf(stderr, "vmon: nothing listens on %s: the VM has exited; remove the stale socket\n", sock);
	else if (rc == -EACCES)
		fprintf(stderr, "vmon: no permission to use %s: run vmon ctl as the user that started the VM\n", sock);
	else if (rc == -ETIMEDOUT)
		fprintf(stderr, "vmon: the VM's API on %s did not answer within %d s\n", sock, timeout_ms / 1000);
	else if (rc == -EFBIG)
		fprintf(stderr, "vmon: the reply on %s is larger than %d bytes, which no vmon API sends: is it a vmon "
				"API socket?\n", sock, HTTP_CLIENT_MAX_RESPONSE);
	else if (rc == -EPROTO)
		fprintf(stderr, "vmon: %s did not answer with HTTP, or its reply was cut short: is it a vmon API "
				"socket?\n", sock);
	else
		fprintf(stderr, "vmon: cannot talk to the VM's API on %s: %s\n", sock, strerror(-rc));
}

int cli_ctl(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "sock", required_argument, NULL, 's' },
		{ "vm", required_argument, NULL, 'v' },
		{ "timeout", required_argument, NULL, 't' },
		{ "keep-running", optional_argument, NULL, 'k' },
		{ "disks", required_argument, NULL, 'd' },
		{ "max-downtime", required_argument, NULL, 'm' },
		{ "bandwidth", required_argument, NULL, 'b' },
		{ "postcopy", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *sock_opt = NULL, *vm_opt = NULL, *disks = NULL;
	long timeout = -1, max_downtime = -1, bandwidth = -1;
	int keep_running = -1; /* -1: not given */
	bool postcopy = false;
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's': sock_opt = optarg; break;
		case 'v': vm_opt = optarg; break;
		case 't': {
			char *end;
			timeout = strtol(optarg, &end, 10);
			if (!*optarg || *end || timeout < 0 || timeout > 3600) {
				fprintf(stderr, "vmon: --timeout takes a number of seconds from 0 to 3600, not '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		}
		case 'k':
			if (!optarg || !strcmp(optarg, "true"))
				keep_running = 1;
			else if (!strcmp(optarg, "false"))
				keep_running = 0;
			else {
				fprintf(stderr, "vmon: --keep-running takes true or false, not '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'd':
			if (strcmp(optarg, "overlay") && strcmp(optarg, "none")) {
				fprintf(stderr, "vmon: --disks takes overlay or none, not '%s'\n", optarg);
				return EXIT_USAGE;
			}
			disks = optarg;
			break;
		case 'm':
		case 'b': {
			char *end;
			long v = strtol(optarg, &end, 10);
			long max = c == 'm' ? 600000 : 1000000;
			if (!*optarg || *end || v < (c == 'm' ? 1 : 0) || v > max) {
				fprintf(stderr, "vmon: %s takes a whole number from %d to %ld, not '%s'\n",
					c == 'm' ? "--max-downtime (ms)" : "--bandwidth (Mbit/s, 0: unlimited)", c == 'm' ? 1 : 0,
					max, optarg);
				return EXIT_USAGE;
			}
			*(c == 'm' ? &max_downtime : &bandwidth) = v;
			break;
		}
		case 'p': postcopy = true; break;
		case 'h': usage(stdout); return 0;
		default:
			if (optopt && strchr(argv[optind - 1], '='))
				fprintf(stderr, "vmon: option '%.*s' takes no value (see vmon ctl --help)\n",
					(int)(strchr(argv[optind - 1], '=') - argv[optind - 1]), argv[optind - 1]);
			else if (optopt)
				fprintf(stderr, "vmon: option '%s' needs a value (see vmon ctl --help)\n", argv[optind - 1]);
			else
				fprintf(stderr, "vmon: unknown option '%s' (see vmon ctl --help)\n", argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "vmon: no command given: use info, pause, resume, shutdown, stop, metrics, snapshot, balloon, balloon-stats or migrate "
				"(see vmon ctl --help)\n");
		return EXIT_USAGE;
	}
	bool is_snapshot = !strcmp(argv[optind], "snapshot");
	bool is_balloon = !strcmp(argv[optind], "balloon");
	bool is_migrate = !strcmp(argv[optind], "migrate");
	if (is_migrate && optind + 2 != argc) {
		fprintf(stderr, "vmon: migrate needs where vmon receive listens: vmon ctl ... migrate tcp:HOST:PORT\n");
		return EXIT_USAGE;
	}
	if ((max_downtime >= 0 || bandwidth >= 0 || postcopy) && !is_migrate) {
		fprintf(stderr, "vmon: %s only goes with migrate\n",
			max_downtime >= 0 ? "--max-downtime" : bandwidth >= 0 ? "--bandwidth" : "--postcopy");
		return EXIT_USAGE;
	}
	if (is_snapshot && optind + 2 != argc) {
		fprintf(stderr, "vmon: snapshot needs the directory to write: vmon ctl ... snapshot DIR\n");
		return EXIT_USAGE;
	}
	char balloon_body[64];
	if (is_balloon) {
		const char *mib = optind + 2 == argc ? argv[optind + 1] : "";
		if (!*mib || strspn(mib, "0123456789") != strlen(mib) || strlen(mib) > 12) {
			fprintf(stderr, "vmon: balloon needs the MiB of RAM to leave the guest, a whole number: vmon ctl ... "
					"balloon 128\n");
			return EXIT_USAGE;
		}
		snprintf(balloon_body, sizeof(balloon_body), "{\"target_mib\": %s}", mib);
	}
	if (!is_snapshot && !is_balloon && !is_migrate && optind + 1 < argc) {
		fprintf(stderr, "vmon: unexpected argument '%s' (see vmon ctl --help)\n", argv[optind + 1]);
		return EXIT_USAGE;
	}
	if (!sock_opt == !vm_opt) {
		fprintf(stderr, "vmon: say which VM with either --sock PATH or --vm NAME|PID (see vmon ctl --help)\n");
		return EXIT_USAGE;
	}
	const char *cmd = argv[optind];
	static const struct {
		const char *name, *method, *path, *body;
	} commands[] = {
		{ "info", "GET", "/vm", NULL },
		{ "pause", "PUT", "/vm/state", "{\"state\": \"paused\"}" },
		{ "resume", "PUT", "/vm/state", "{\"state\": \"running\"}" },
		{ "shutdown", "PUT", "/vm/shutdown", NULL },
		{ "stop", "PUT", "/vm/stop", NULL },
		{ "metrics", "GET", "/metrics", NULL },
		{ "snapshot", "PUT", "/vm/snapshot", NULL },
		{ "balloon", "PUT", "/balloon", NULL },
		{ "balloon-stats", "GET", "/balloon", NULL },
		{ "migrate", "PUT", "/vm/migrate", NULL },
	};
	int which = -1;
	for (int i = 0; i < (int)(sizeof(commands) / sizeof(commands[0])); i++)
		if (!strcmp(cmd, commands[i].name))
			which = i;
	if (which < 0) {
		fprintf(stderr, "vmon: unknown command '%s': use info, pause, resume, shutdown, stop, metrics, snapshot, balloon, balloon-stats or migrate\n", cmd);
		return EXIT_USAGE;
	}
	if ((keep_running >= 0 || disks) && !is_snapshot) {
		fprintf(stderr, "vmon: %s only goes with snapshot\n", disks ? "--disks" : "--keep-running");
		return EXIT_USAGE;
	}
	if (timeout >= 0 && strcmp(cmd, "shutdown")) {
		fprintf(stderr, "vmon: --timeout only goes with shutdown\n");
		return EXIT_USAGE;
	}

	char sock[CONFIG_MAX_SOCK_PATH];
	if (vm_opt) {
		if (lookup_vm(vm_opt, sock, sizeof(sock)))
			return EXIT_GUEST_FAILED;
	} else if (snprintf(sock, sizeof(sock), "%s", sock_opt) >= (int)sizeof(sock)) {
		fprintf(stderr, "vmon: --sock path is longer than a Unix socket path can be (%zu bytes)\n", sizeof(sock) - 1);
		return EXIT_USAGE;
	}

	if (is_migrate)
		return ctl_migrate(sock, argv[optind + 1], max_downtime, bandwidth, postcopy);
	char body[64];
	const char *req_body = commands[which].body;
	if (timeout >= 0) {
		snprintf(body, sizeof(body), "{\"timeout_s\": %ld}", timeout);
		req_body = body;
	}
	if (is_balloon)
		req_body = balloon_body;
	char *snap_body = NULL;
	if (is_snapshot) {
		/* The VM's process may run in another directory: send an absolute path. */
		const char *dir = argv[optind + 1];
		char *cwd = dir[0] == '/' ? NULL : getcwd(NULL, 0);
		char *abs = NULL;
		if (asprintf(&abs, "%s%s%s", cwd ? cwd : "", cwd ? "/" : "", dir) < 0)
			abs = NULL;
		free(cwd);
		json_t *o = abs ? json_pack("{s:s, s:b}", "dir", abs, "keep_running", keep_running != 0) : NULL;
		if (o && disks && json_object_set_new(o, "disks", json_string(disks))) {
			json_decref(o);
			o = NULL;
		}
		free(abs);
		snap_body = o ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
		if (!snap_body) {
			fprintf(stderr, "vmon: out of memory\n");
			return EXIT_GUEST_FAILED;
		}
		req_body = snap_body;
	}
	struct http_response resp;
	/* Writing a big guest's memory takes a while. */
	int timeout_ms = is_snapshot ? CTL_SNAPSHOT_TIMEOUT_MS : CTL_TIMEOUT_MS;
	int rc = http_unix_request(sock, commands[which].method, commands[which].path, req_body, timeout_ms, &resp);
	free(snap_body);
	if (rc) {
		ctl_print_connect_error(sock, rc, timeout_ms);
		return EXIT_GUEST_FAILED;
	}
	int status = EXIT_GUEST_OK;
	if (resp.status >= 200 && resp.status < 300) {
		http_write_escaped(stdout, resp.body, resp.len, 1);
		if (resp.len && resp.body[resp.len - 1] != '\n')
			putchar('\n');
	} else {
		ctl_print_error_reply(&resp);
		status = EXIT_GUEST_FAILED;
	}
	free(resp.body);
	return status;
}
