#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api_server.h"
#include "cli/cli.h"
#include "cli/cli_args.h"
#include "cli/vm_runner.h"
#include "config/config.h"
#include "config/config_disk.h"
#include "config/config_json.h"
#include "config/config_memory.h"
#include "devices/console.h"
#include "lib/log.h"
#include "lib/util.h"
#include "vm/platform.h"
#include "vm/registry.h"
#include "vm/vcpu.h"
#include "vm/vm.h"
#include "vm/vm_boot.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vmon run --kernel PATH [options]\n"
		"       vmon run --config FILE [options]\n"
		"\n"
		"Boots a Linux kernel (bzImage or ELF vmlinux) with its serial console on this terminal.\n"
		"Type Ctrl-A then x to stop the VM.\n"
		"\n"
		"  --config FILE        read the configuration from a JSON file (see docs/usage.md);\n"
		"                       options given on the command line override it\n"
		"  --kernel PATH        kernel to boot (bzImage or ELF vmlinux)\n"
		"  --initrd PATH        initial ramdisk (cpio archive)\n"
		"  --cmdline STR        kernel command line (default: \"%s\")\n"
		"  --cpus N             number of vCPUs (default 1)\n"
		"  --memory SIZE[,merge=on][,hugepages=on]\n"
		"                       guest RAM, e.g. 256M or 2G (default 256M); merge=on lets the\n"
		"                       host's KSM share identical pages, hugepages=on backs RAM with\n"
		"                       2 MiB hugepages (both off by default; see docs/usage.md)\n"
		"  --host-workarounds auto|on|off\n"
		"                       workarounds for KVM hosts that are not hardware VT-x/AMD-V\n"
		"                       (default auto: probe the host at start-up; see docs/host-quirks.md)\n"
		"  --no-rng             leave out the virtio entropy device (the guest's /dev/hwrng)\n"
		"  --net user[,hostfwd=tcp:HOSTPORT-:GUESTPORT][,mac=MAC]\n"
		"  --net tap=IFNAME[,mac=MAC]\n"
		"                       a virtio network card (up to 4): user-mode networking (no root\n"
		"                       needed; DHCP, DNS, outbound TCP/UDP, port forwards) or a tap device\n"
		"  --disk PATH[,readonly][,serial=ID]\n"
		"                       a virtio disk (up to 16; /dev/vda, /dev/vdb, ... in order) backed by\n"
		"                       a raw image file or block device; serial: up to 20 characters\n"
		"  --console2 socket=PATH | file=PATH\n"
		"                       a second console, the guest's /dev/hvc0 (virtio-console): vmon\n"
		"                       listens on the Unix socket PATH (one client at a time), or appends\n"
		"                       the guest's output to the file PATH\n"
		"  --vsock cid=N,uds=PATH\n"
		"                       virtio-vsock with guest CID N (>= 3), host side on Unix sockets:\n"
		"                       connect to PATH and write \"CONNECT <port>\\n\" to reach a guest port;\n"
		"                       the guest's connections to CID 2 port P go to PATH_P (docs/usage.md)\n"
		"  --balloon[=deflate_on_oom=on|off,free_page_reporting=on|off,stats_interval=SECONDS]\n"
		"                       a virtio memory balloon: PUT /balloon takes memory back from the\n"
		"                       guest, and free pages the guest reports go back to the host\n"
		"                       (defaults: on, on, 5; the value only after '=')\n"
		"  --api-sock PATH      serve the control API on this Unix socket (see docs/api.md)\n"
		"  --name NAME          a name for the VM, shown by vmon ps and usable with vmon ctl --vm\n"
		"  --seccomp on|log|off system call filters on vmon's threads (default on: a forbidden call\n"
		"                       kills vmon with SIGSYS; log: report it and go on; off: development\n"
		"                       only; see docs/security.md)\n"
		"  --landlock on|off    limit vmon's file access with Landlock where the kernel has it\n"
		"                       (default on; see docs/security.md)\n"
		"  --snapshot-dir DIR   under Landlock, the API writes snapshots only beneath DIR\n"
		"                       (default: /tmp and $TMPDIR)\n"
		"  --log-level LEVEL    error, warn, info or debug (default info)\n"
		"  --log-file PATH      also write the log to PATH as JSON lines\n"
		"  -h, --help           this help\n",
		VM_DEFAULT_CMDLINE);
}

enum {
	OPT_KERNEL = 256,
	OPT_INITRD,
	OPT_CMDLINE,
	OPT_CPUS,
	OPT_MEMORY,
	OPT_WORKAROUNDS,
	OPT_LOG_LEVEL,
	OPT_LOG_FILE,
	OPT_API_SOCK,
	OPT_NAME,
	OPT_CONFIG,
	OPT_NO_RNG,
	OPT_NET,
	OPT_DISK,
	OPT_CONSOLE2,
	OPT_VSOCK,
	OPT_SECCOMP,
	OPT_LANDLOCK,
	OPT_SNAPSHOT_DIR,
	OPT_BALLOON,
};


/* A whole number that does not fit is out of range, not "not a whole number". */
static int parse_cpus(const char *arg, unsigned int *cpus)
{
	if (!*arg || strspn(arg, "0123456789") != strlen(arg)) {
		fprintf(stderr, "vmon: --cpus takes a whole number, not '%s'\n", arg);
		return -EINVAL;
	}
	errno = 0;
	unsigned long long n = strtoull(arg, NULL, 10);
	if (errno == ERANGE || n < 1 || n > CONFIG_MAX_CPUS) {
		fprintf(stderr, "vmon: --cpus %s is out of range: give a number from 1 to %d\n", arg, CONFIG_MAX_CPUS);
		return -EINVAL;
	}
	*cpus = (unsigned int)n;
	return 0;
}

/*
 * Two passes over the options: the first only reads --config, so that the file sets the
 * configuration and every other option given on the command line overrides it, wherever the
 * options stand.
 */
static int parse_args(int argc, char **argv, struct vm_config *cfg, bool config_pass)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, OPT_KERNEL },
		{ "initrd", required_argument, NULL, OPT_INITRD },
		{ "cmdline", required_argument, NULL, OPT_CMDLINE },
		{ "cpus", required_argument, NULL, OPT_CPUS },
		{ "memory", required_argument, NULL, OPT_MEMORY },
		{ "host-workarounds", required_argument, NULL, OPT_WORKAROUNDS },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "log-file", required_argument, NULL, OPT_LOG_FILE },
		{ "api-sock", required_argument, NULL, OPT_API_SOCK },
		{ "name", required_argument, NULL, OPT_NAME },
		{ "config", required_argument, NULL, OPT_CONFIG },
		{ "no-rng", no_argument, NULL, OPT_NO_RNG },
		{ "net", required_argument, NULL, OPT_NET },
		{ "disk", required_argument, NULL, OPT_DISK },
		{ "console2", required_argument, NULL, OPT_CONSOLE2 },
		{ "vsock", required_argument, NULL, OPT_VSOCK },
		{ "seccomp", required_argument, NULL, OPT_SECCOMP },
		{ "landlock", required_argument, NULL, OPT_LANDLOCK },
		{ "snapshot-dir", required_argument, NULL, OPT_SNAPSHOT_DIR },
		{ "balloon", optional_argument, NULL, OPT_BALLOON },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	optind = 1;
	opterr = 0;
	int c;
	bool cli_nets = false; /* the first --net replaces the config file's list */
	bool cli_disks = false; /* likewise for --disk */
	/* The leading ':' tells a missing value (':') from an unknown option ('?'). */
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (config_pass) {
			if (c == OPT_CONFIG) {
				char err[512];
				if (config_json_load_file(cfg, optarg, err, sizeof(err))) {
					fprintf(stderr, "vmon: %s\n", err);
					return -EINVAL;
				}
			}
			continue;
		}
		switch (c) {
		case OPT_CONFIG: break; /* read in the first pass */
		case OPT_NO_RNG: cfg->rng = false; break;
		case OPT_CONSOLE2: cli_set_str(&cfg->console2, optarg); break;
		case OPT_VSOCK: cli_set_str(&cfg->vsock, optarg); break;
		case OPT_BALLOON: {
			char err[256];
			if (config_balloon_parse(optarg, &cfg->balloon, err, sizeof(err))) {
				fprintf(stderr, "vmon: %s\n", err);
				return -EINVAL;
			}
			break;
		}
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
			if (!cli_nets) {
				for (unsigned int i = 0; i < cfg->nnets; i++)
					free(cfg->nets[i]);
				cfg->nnets = 0;
				cli_nets = true;
			}
			if (cfg->nnets >= CONFIG_MAX_NICS) {
				fprintf(stderr, "vmon: --net is given more than %d times: vmon supports at most %d network cards\n",
					CONFIG_MAX_NICS, CONFIG_MAX_NICS);
				return -EINVAL;
			}
			cfg->nets[cfg->nnets++] = strdup(optarg);
			break;
		case OPT_DISK: {
			if (!cli_disks) {
				for (unsigned int i = 0; i < cfg->ndisks; i++)
					config_disk_free(&cfg->disks[i]);
				cfg->ndisks = 0;
				cli_disks = true;
			}
			if (cfg->ndisks >= CONFIG_MAX_DISKS) {
				fprintf(stderr, "vmon: --disk is given more than %d times: vmon supports at most %d disks\n",
					CONFIG_MAX_DISKS, CONFIG_MAX_DISKS);
				return -EINVAL;
			}
			char err[512];
			if (config_disk_parse(optarg, &cfg->disks[cfg->ndisks], err, sizeof(err))) {
				fprintf(stderr, "vmon: %s\n", err);
				return -EINVAL;
			}
			cfg->ndisks++;
			break;
		}
		case OPT_LOG_FILE: cli_set_str(&cfg->log_file, optarg); break;
		case OPT_API_SOCK: cli_set_str(&cfg->api_sock, optarg); break;
		case OPT_NAME: cli_set_str(&cfg->name, optarg); break;
		case OPT_KERNEL: free(cfg->kernel_path); cfg->kernel_path = strdup(optarg); break;
		case OPT_INITRD: free(cfg->initrd_path); cfg->initrd_path = strdup(optarg); break;
		case OPT_CMDLINE: free(cfg->cmdline); cfg->cmdline = strdup(optarg); break;
		case OPT_CPUS:
			if (parse_cpus(optarg, &cfg->cpus))
				return -EINVAL;
			break;
		case OPT_MEMORY: {
			char err[256];
			if (config_memory_parse(optarg, cfg, err, sizeof(err))) {
				fprintf(stderr, "vmon: %s\n", err);
				return -EINVAL;
			}
			break;
		}
		case OPT_WORKAROUNDS: {
			int w = config_parse_workarounds(optarg);
			if (w < 0) {
				fprintf(stderr, "vmon: --host-workarounds takes auto, on or off, not '%s'\n", optarg);
				return -EINVAL;
			}
			cfg->workarounds = (enum host_workarounds)w;
			break;
		}
		case OPT_LOG_LEVEL:
			if (log_parse_level(optarg) < 0) {
				fprintf(stderr, "vmon: --log-level takes error, warn, info or debug, not '%s'\n", optarg);
				return -EINVAL;
			}
			free(cfg->log_level);
			cfg->log_level = strdup(optarg);
			break;
		case 'h': usage(stdout); exit(0);
		case ':':
			fprintf(stderr, "vmon: option '%s' needs a value (see vmon run --help)\n", argv[optind - 1]);
			return -EINVAL;
		default:
			if (optopt && optopt < 256)
				fprintf(stderr, "vmon: unknown option '-%c' (see vmon run --help)\n", optopt);
			else
				fprintf(stderr, "vmon: unknown option '%s' (see vmon run --help)\n", argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (!config_pass && optind < argc) {
		fprintf(stderr, "vmon: unexpected argument '%s' (see vmon run --help)\n", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

/* `vmon run` builds the VM from scratch: devices, then the kernel and boot tables. */
static int boot_setup(struct vm *vm, const struct vm_config *cfg, void *arg)
{
	(void)arg;
	int rc = vm_runner_create_vm(vm, cfg, cfg->rng);
	return rc ? rc : vm_boot_setup(vm);
}

int cli_run(int argc, char **argv)
{
	struct vm_config cfg;
	config_init_defaults(&cfg);
	char err[512];
	if (parse_args(argc, argv, &cfg, true) || parse_args(argc, argv, &cfg, false) ||
	    (config_validate(&cfg, err, sizeof(err)) && fprintf(stderr, "vmon: %s\n", err)) ||
	    vm_runner_prepare(&cfg)) {
		config_free(&cfg);
		return EXIT_USAGE;
	}
	int status = vm_runner_main(&cfg, &(struct vm_runner_steps){ .setup = boot_setup });
	config_free(&cfg);
	return status;
}
