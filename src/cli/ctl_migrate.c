#include "cli/ctl_migrate.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

#define POLL_MS 250
#define REQUEST_TIMEOUT_MS 30000

static long long num(json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

static const char *str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

static double mib(long long bytes) { return (double)bytes / (1024.0 * 1024.0); }

/* One line, rewritten in place on a terminal. */
static void show_progress(json_t *o, bool tty)
{
	printf("%sround %lld  sent %.1f MiB  remaining %.1f MiB  dirty %.1f MiB/s  bandwidth %.1f MiB/s  "
	       "expected downtime %lld ms%s",
	       tty ? "\r\033[K" : "", num(o, "round"), mib(num(o, "bytes_sent")), mib(num(o, "pages_remaining") * 4096),
	       mib(num(o, "dirty_pages_per_s") * 4096), mib(num(o, "bandwidth_bytes_per_s")),
	       num(o, "expected_downtime_ms"), tty ? "" : "\n");
	fflush(stdout);
}

int ctl_migrate(const char *sock, const char *destination, long max_downtime_ms, long bandwidth_mbps, bool postcopy)
{
	json_t *req = json_pack("{s:s, s:b}", "destination", destination, "postcopy", postcopy);
	if (req && max_downtime_ms >= 0)
		json_object_set_new(req, "max_downtime_ms", json_integer(max_downtime_ms));
	if (req && bandwidth_mbps >= 0)
		json_object_set_new(req, "bandwidth_mbps", json_integer(bandwidth_mbps));
	char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!body) {
		fprintf(stderr, "vmon: out of memory\n");
		return EXIT_GUEST_FAILED;
	}
	struct http_response resp;
	int rc = http_unix_request(sock, "PUT", "/vm/migrate", body, REQUEST_TIMEOUT_MS, &resp);
	free(body);
	if (rc) {
		ctl_print_connect_error(sock, rc, REQUEST_TIMEOUT_MS);
		return EXIT_GUEST_FAILED;
	}
	if (resp.status != 202) {
		ctl_print_error_reply(&resp);
		free(resp.body);
		return EXIT_GUEST_FAILED;
	}
	free(resp.body);
	bool tty = isatty(STDOUT_FILENO), switching = false;
	for (;;) {
		struct timespec ts = { 0, POLL_MS * 1000000L };
		nanosleep(&ts, NULL);
		rc = http_unix_request(sock, "GET", "/vm/migration", NULL, REQUEST_TIMEOUT_MS, &resp);
		if (rc && switching && (rc == -ENOENT || rc == -ECONNREFUSED || rc == -ECONNRESET || rc == -EPROTO)) {
			/* A failed switch resumes the guest and keeps vmon; it exits once the destination runs it. */
			printf("%sthe source vmon exited after the switch: the guest runs at %s now\n", tty ? "\n" : "",
			       destination);
			return EXIT_GUEST_OK;
		}
		if (rc) {
			if (tty)
				putchar('\n');
			ctl_print_connect_error(sock, rc, REQUEST_TIMEOUT_MS);
			return EXIT_GUEST_FAILED;
		}
		json_t *o = resp.status == 200 ? json_loadb(resp.body, resp.len, 0, NULL) : NULL;
		if (!o) {
			ctl_print_error_reply(&resp);
			free(resp.body);
			return EXIT_GUEST_FAILED;
		}
		free(resp.body);
		const char *state = str(o, "state");
		switching = !strcmp(state, "stop-and-copy") || !strcmp(state, "postcopy");
		if (!strcmp(state, "precopy") || switching || !strcmp(state, "connecting")) {
			show_progress(o, tty);
			json_decref(o);
			continue;
		}
		if (tty)
			putchar('\n');
		int status = EXIT_GUEST_FAILED;
		if (!strcmp(state, "completed")) {
			printf("migrated to %s in %lld rounds: downtime %lld ms, total %lld ms\n", destination,
			       num(o, "round"), num(o, "downtime_ms"), num(o, "total_ms"));
			status = EXIT_GUEST_OK;
		} else {
			fprintf(stderr, "vmon: the migration %s after %lld ms, the guest keeps running here: %s\n",
				!strcmp(state, "cancelled") ? "was cancelled" : "failed", num(o, "total_ms"), str(o, "reason"));
		}
		json_decref(o);
		return status;
	}
}
