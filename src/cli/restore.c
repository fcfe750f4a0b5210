/* vmon restore: continues a VM from a snapshot directory in a new vmon process. */
#include <errno.h>
#include <getopt.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/backend_overrides.h"
#include "cli/cli.h"
#include "cli/cli_args.h"
#include "cli/vm_runner.h"
#include "config/config.h"
#include "config/config_disk.h"
#include "devices/console.h"
#include "lib/log.h"
#include "lib/util.h"
#include "state/clone_identity.h"
#include "state/mem_state.h"
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
		   "  --clone              give the VM a new identity: a new MAC address per network card\n"
		   "                       (random, locally administered; or the mac= of a --net below) and\n"
		   "                       a new vsock CID (unused on this host; or the cid= of --vsock)\n"
		   "  --clock MODE         realtime (default): the guest's clock jumps to the host's time;\n"
		   "                       continue: it continues from the snapshot\n"
		   "  --paused             do not start the vCPUs until `vmon ctl resume`\n"
		   "  --verify             check guest RAM against the checksum written with the snapshot\n"
		   "                       first (reads the whole memory file)\n"
		   "  --name NAME          a name for the VM, shown by vmon ps\n"
		   "  --seccomp on|log|off system call filters (as vmon run; default on)\n"
		   "  --landlock on|off    file-access limits (as vmon run; default on)\n"
		   "  --snapshot-dir DIR   where the API may write snapshots (as vmon run)\n"
		   "  --log-level LEVEL    error, warn, info or debug (default info)\n"
		   "  --log-file PATH      also write the log to PATH as JSON lines\n"
		   "  -h, --help           this help\n"
		   "\n"
		   "Every restore gives the guest a new VM generation ID (its random number generator is\n"
		   "reseeded); GET /vm shows the identity.\n"
		   "\n"
		   "Host sides of the saved devices, to give a clone its own (same number and order as\n"
		   "the snapshot's; the MAC address and vsock CID in them count only with --clone):\n"
		   "  --net SPEC           each network card's backend (as vmon run --net)\n"
		   "  --disk SPEC          each disk's image (as vmon run --disk); replaces the new\n"
		   "                       overlays below\n"
		   "\n"
		   "A snapshot taken with --disks=overlay holds a frozen layer per writable disk: each restore\n"
		   "starts every such disk on a new qcow2 overlay above it, so the snapshot restores any\n"
		   "number of times:\n"
		   "  --disk-dir DIR       where the new overlays go (default: the snapshot directory)\n"
		   "  --console2 SPEC      the second console's socket or file\n"
		   "  --vsock SPEC         the vsock device (cid=N,uds=PATH)\n");
}

enum { OPT_API_SOCK = 256, OPT_NAME, OPT_LOG_LEVEL, OPT_LOG_FILE, OPT_PAUSED, OPT_VERIFY, OPT_NET, OPT_DISK, OPT_CONSOLE2, OPT_VSOCK,
       OPT_SECCOMP, OPT_LANDLOCK, OPT_SNAPSHOT_DIR, OPT_DISK_DIR, OPT_CLONE, OPT_CLOCK };

/* What vmon restore changes in the saved VM. */
struct overrides {
	struct backend_overrides b; /* --net, --disk, --console2, --vsock */
	const char *disk_dir; /* --disk-dir: where new overlays on the snapshot's layers go */
	bool verify; /* --verify: check the memory file's checksum before starting */
	bool clone;  /* --clone: a new MAC per card and a new vsock CID */
	enum vm_clock_mode clock;
};

static int parse_args(int argc, char **argv, struct vm_config *cfg, const char **dir, bool *paused,
		      struct overrides *ov)
{
	static const struct option opts[] = {
		{ "api-sock", required_argument, NULL, OPT_API_SOCK },
		{ "name", required_argument, NULL, OPT_NAME },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "log-file", required_argument, NULL, OPT_LOG_FILE },
		{ "paused", no_argument, NULL, OPT_PAUSED },
		{ "verify", no_argument, NULL, OPT_VERIFY },
		{ "clone", no_argument, NULL, OPT_CLONE },
		{ "clock", required_argument, NULL, OPT_CLOCK },
		{ "net", required_argument, NULL, OPT_NET },
		{ "disk", required_argument, NULL, OPT_DISK },
		{ "disk-dir", required_argument, NULL, OPT_DISK_DIR },
		{ "console2", required_argument, NULL, OPT_CONSOLE2 },
		{ "vsock", required_argument, NULL, OPT_VSOCK },
		{ "seccomp", required_argument, NULL, OPT_SECCOMP },
		{ "landlock", required_argument, NULL, OPT_LANDLOCK },
		{ "snapshot-dir", required_argument, NULL, OPT_SNAPSHOT_DIR },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_API_SOCK: cli_set_str(&cfg->api_sock, optarg); break;
		case OPT_NAME: cli_set_str(&cfg->name, optarg); break;
		case OPT_PAUSED: *paused = true; break;
		case OPT_VERIFY: ov->verify = true; break;
		case OPT_CLONE: ov->clone = true; break;
		case OPT_CLOCK:
			if (vm_clock_parse_mode(optarg, &ov->clock)) {
				fprintf(stderr, "vmon: --clock takes realtime or continue, not '%s'\n", optarg);
				return -EINVAL;
			}
			break;
		case OPT_CONSOLE2: ov->b.console2 = optarg; break;
		case OPT_VSOCK: ov->b.vsock = optarg; break;
		case OPT_DISK_DIR: ov->disk_dir = optarg; break;
		case OPT_SECCOMP:
			if (vm_runner_parse_seccomp(cfg, optarg))
				return -EINVAL;
			break;
		case OPT_LANDLOCK:
			if (vm_runner_parse_landlock(cfg, optarg))
				return -EINVAL;
			break;
		case OPT_SNAPSHOT_DIR: cli_set_str(&cfg->snapshot_dir, optarg); break;
		case OPT_NET:
			if (backend_overrides_add_net(&ov->b, optarg))
				return -EINVAL;
			break;
		case OPT_DISK:
			if (backend_overrides_add_disk(&ov->b, optarg))
				return -EINVAL;
			break;
		case OPT_LOG_FILE: cli_set_str(&cfg->log_file, optarg); break;
		case OPT_LOG_LEVEL:
			if (cli_check_log_level(optarg))
				return -EINVAL;
			cli_set_str(&cfg->log_level, optarg);
			break;
		case 'h': usage(stdout); exit(0);
		default:
			cli_bad_option("restore", argv);
			return -EINVAL;
		}
	}
	return cli_dir_operand("restore", "vmon restore DIR", argc, argv, dir);
}

struct restore_ctx {
	struct snapshot_image *img;
	const struct clone_identity *id;
	uint64_t t0;
	bool paused;
};

static int restore_setup(struct vm *vm, const struct vm_config *cfg, void *arg)
{
	struct restore_ctx *ctx = arg;
	/*
	 * The devices of the saved configuration, created as `vmon run` creates them, so they take the
	 * same PCI slots. Host sides start afresh: slirp drops the guest's open connections (new ones
	 * work), vsock tells the guest its connections were reset, the second console listens again;
	 * disk images must be as the VM left them.
	 */
	int rc = vm_runner_create_vm(vm, cfg, snapshot_has_rng(ctx->img));
	if (rc)
		return rc;
	char err[512];
	if ((rc = snapshot_restore(vm, ctx->img, err, sizeof(err)))) {
		log_error("restore", "%s", err);
		return rc;
	}
	if ((rc = clone_identity_apply(vm, ctx->id)))
		return rc;
	if (ctx->paused)
		atomic_store(&vm->pause_requested, true);
	log_info("restore", "VM restored in %.1f ms; %s", (double)(monotonic_ns() - ctx->t0) / 1e6,
		 ctx->paused ? "it stays paused until vmon ctl resume" : "continuing it");
	return 0;
}

int cli_restore(int argc, char **argv)
{
	uint64_t t0 = monotonic_ns();
	struct vm_config cfg;
	config_init_defaults(&cfg);
	const char *dir = NULL;
	bool paused = false;
	struct overrides ov = { .disk_dir = NULL };
	if (parse_args(argc, argv, &cfg, &dir, &paused, &ov) || vm_runner_prepare(&cfg)) {
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
	if (ov.verify) {
		uint64_t v0 = monotonic_ns();
		if ((rc = mem_state_verify(img.mem_path, img.ram_size, err, sizeof(err)))) {
			log_error("restore", "%s", err);
			snapshot_close(&img);
			config_free(&cfg);
			return EXIT_USAGE;
		}
		log_info("restore", "guest memory matches the snapshot's checksum (checked in %.1f ms)",
			 (double)(monotonic_ns() - v0) / 1e6);
	}
	bool keep[CONFIG_MAX_DISKS], user_mac[CONFIG_MAX_NICS];
	for (unsigned int i = 0; i < CONFIG_MAX_DISKS; i++)
		keep[i] = ov.b.ndisks > 0; /* --disk given: the user's images replace the snapshot's layers */
	for (unsigned int i = 0; i < CONFIG_MAX_NICS; i++)
		user_mac[i] = ov.b.nnets > 0; /* --net given: a mac= in it is the clone's */
	img.clock = ov.clock;
	struct clone_identity id;
	if (backend_overrides_apply(&cfg, &ov.b, "the snapshot's VM") ||
	    ((rc = clone_identity_choose(&id, &cfg, ov.clone, user_mac, ov.b.vsock != NULL, err, sizeof(err))) &&
	     (log_error("restore", "%s", err), true)) ||
	    ((rc = snapshot_disks_new_overlays(&img, &cfg, ov.disk_dir ? ov.disk_dir : dir, keep, err, sizeof(err))) &&
	     (log_error("restore", "%s", err), true))) {
		snapshot_close(&img);
		config_free(&cfg);
		return EXIT_USAGE;
	}
	if (cfg.memory_hugepages) {
		/* Reserving hugepages only to map the memory file in their place would take them for nothing. */
		log_info("restore", "the snapshot's VM had hugepages=on; the restored VM runs on its memory file, mapped "
				    "in 4 KiB pages, and reports hugepages=off");
		cfg.memory_hugepages = false;
	}
	struct restore_ctx ctx = { .img = &img, .id = &id, .t0 = t0, .paused = paused };
	int status = vm_runner_main(&cfg, &(struct vm_runner_steps){ .setup = restore_setup, .arg = &ctx });
	snapshot_close(&img);
	config_free(&cfg);
	return status;
}
