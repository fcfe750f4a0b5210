/* vmon restore: continues a VM from a snapshot directory in a new vmon process. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/vm_runner.h"
#include "config/config.h"
#include "devices/console.h"
#include "lib/log.h"
#include "lib/util.h"
#include "state/snapshot.h"
#include "vm/platform.h"
#include "vm/vm.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: vmon restore DIR [options]\n"
		   "\n"
		   "Continues the VM saved in DIR by `vmon ctl snapshot DIR` where it was, with its serial\n"
		   "console on this terminal. See docs/usage.md (Snapshots).\n"
		   "\n"
		   "  --api-sock PATH      serve the control API on this Unix socket\n"
		   "  --name NAME          a name for the VM, shown by vmon ps\n"
		   "  --log-level LEVEL    error, warn, info or debug (default info)\n"
		   "  --log-file PATH      also write the log to PATH as JSON lines\n"
		   "  -h, --help           this help\n");
}

enum { OPT_API_SOCK = 256, OPT_NAME, OPT_LOG_LEVEL, OPT_LOG_FILE };

static void set_str(char **field, const char *value)
{
	free(*field);
	*field = strdup(value);
}

static int parse_args(int argc, char **argv, struct vm_config *cfg, const char **dir)
{
	static const struct option opts[] = {
		{ "api-sock", required_argument, NULL, OPT_API_SOCK },
		{ "name", required_argument, NULL, OPT_NAME },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "log-file", required_argument, NULL, OPT_LOG_FILE },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_API_SOCK: set_str(&cfg->api_sock, optarg); break;
		case OPT_NAME: set_str(&cfg->name, optarg); break;
		case OPT_LOG_FILE: set_str(&cfg->log_file, optarg); break;
		case OPT_LOG_LEVEL:
			if (log_parse_level(optarg) < 0) {
				fprintf(stderr, "vmon: --log-level takes error, warn, info or debug, not '%s'\n", optarg);
				return -EINVAL;
			}
			set_str(&cfg->log_level, optarg);
			break;
		case 'h': usage(stdout); exit(0);
		default:
			if (optopt)
				fprintf(stderr, "vmon: option '%s' needs a value (see vmon restore --help)\n", argv[optind - 1]);
			else
				fprintf(stderr, "vmon: unknown option '%s' (see vmon restore --help)\n", argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "vmon: no snapshot directory given: vmon restore DIR (see vmon restore --help)\n");
		return -EINVAL;
	}
	if (optind + 1 < argc) {
		fprintf(stderr, "vmon: unexpected argument '%s' (see vmon restore --help)\n", argv[optind + 1]);
		return -EINVAL;
	}
	*dir = argv[optind];
	return 0;
}

struct restore_ctx {
	struct snapshot_image *img;
	uint64_t t0;
};

static int restore_setup(struct vm *vm, const struct vm_config *cfg, void *arg)
{
	struct restore_ctx *ctx = arg;
	int rc = vm_create(vm, cfg);
	if (rc)
		return rc;
	if ((rc = platform_create(vm, console_write_stdout, NULL)))
		return rc;
	if (snapshot_has_rng(ctx->img) && (rc = platform_add_rng(vm)))
		return rc;
	char err[512];
	if ((rc = snapshot_restore(vm, ctx->img, err, sizeof(err)))) {
		log_error("restore", "%s", err);
		return rc;
	}
	log_info("restore", "VM restored in %.1f ms; continuing it",
		 (double)(monotonic_ns() - ctx->t0) / 1e6);
	return 0;
}

int cli_restore(int argc, char **argv)
{
	uint64_t t0 = monotonic_ns();
	struct vm_config cfg;
	config_init_defaults(&cfg);
	const char *dir = NULL;
	if (parse_args(argc, argv, &cfg, &dir) || vm_runner_prepare(&cfg)) {
		config_free(&cfg);
		return EXIT_USAGE;
	}
	struct snapshot_image img;
	char err[512];
	int rc = snapshot_open(&img, dir, &cfg, err, sizeof(err));
	if (rc) {
		log_error("restore", "%s", err);
		config_free(&cfg);
		return EXIT_USAGE;
	}
	struct restore_ctx ctx = { .img = &img, .t0 = t0 };
	int status = vm_runner_main(&cfg, restore_setup, &ctx);
	snapshot_close(&img);
	config_free(&cfg);
	return status;
}
