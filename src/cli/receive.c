/*
 * vmon receive: the destination of a live migration. Listens, takes one VM from a source vmon's
 * stream (its configuration, RAM, vCPU and device state), builds it as a restore does, tells the
 * source the guest runs here, and runs it on this terminal.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "api/api_migrate.h"
#include "arch/x86/host_probe.h"
#include "cli/backend_overrides.h"
#include "cli/cli.h"
#include "cli/cli_args.h"
#include "cli/vm_runner.h"
#include "config/config.h"
#include "lib/log.h"
#include "lib/util.h"
#include "migration/migrate_dest.h"
#include "migration/migration_address.h"
#include "migration/postcopy_dest.h"
#include "state/cpu_compat.h"
#include "state/mem_state.h"
#include "state/snapshot.h"
#include "vm/platform.h"
#include "vm/vm.h"

#define COMP "receive"

static void usage(FILE *f)
{
	fprintf(f, "usage: vmon receive --listen tcp:ADDR:PORT [options]\n"
		   "\n"
		   "Waits for one VM migrated by `vmon ctl migrate` (or PUT /vm/migrate) on another vmon, builds\n"
		   "it here from the stream and runs it, with its serial console on this terminal. The VM's\n"
		   "configuration comes from the source. See docs/migration.md.\n"
		   "\n"
		   "  --listen ADDR        where to listen: tcp:0.0.0.0:PORT, tcp:[::]:PORT, tcp:HOST:PORT, with\n"
		   "                       ,tls-cert=FILE,tls-key=FILE,tls-ca=FILE for mutual TLS (required)\n"
		   "  --timeout SECONDS    give up when no source connected within this time (default: wait)\n"
		   "  --api-sock PATH      serve the control API on this Unix socket\n"
		   "  --name NAME          a name for the VM, shown by vmon ps\n"
		   "  --seccomp on|log|off system call filters (as vmon run; default on)\n"
		   "  --landlock on|off    file-access limits (as vmon run; default on)\n"
		   "  --snapshot-dir DIR   where the API may write snapshots (as vmon run)\n"
		   "  --log-level LEVEL    error, warn, info or debug (default info)\n"
		   "  --log-file PATH      also write the log to PATH as JSON lines\n"
		   "  -h, --help           this help\n"
		   "\n"
		   "Host sides of the incoming VM's devices, where this host's differ from the source's (same\n"
		   "number and order as the source VM's; default: the source's):\n"
		   "  --net SPEC           each network card's backend (as vmon run --net), e.g. tap=IF\n"
		   "  --disk SPEC          each disk's image: the same disk on shared storage, under this host's path\n"
		   "  --console2 SPEC      the second console's socket or file\n"
		   "  --vsock SPEC         the vsock device (cid=N,uds=PATH)\n"
		   "\n"
		   "A source that fails before its stream is complete (refused, disconnected) leaves nothing\n"
		   "here and vmon receive waits for the next try.\n");
}

enum { OPT_LISTEN = 256, OPT_TIMEOUT, OPT_API_SOCK, OPT_NAME, OPT_LOG_LEVEL, OPT_LOG_FILE, OPT_NET, OPT_DISK,
       OPT_CONSOLE2, OPT_VSOCK, OPT_SECCOMP, OPT_LANDLOCK, OPT_SNAPSHOT_DIR };

struct receive_args {
	const char *listen;
	int wait_ms; /* --timeout; -1: without limit */
	struct backend_overrides b;
};

static int parse_timeout(const char *s, int *ms)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v <= 0 || v > 86400) {
		fprintf(stderr, "vmon: --timeout takes whole seconds from 1 to 86400, not '%s'\n", s);
		return -EINVAL;
	}
	*ms = (int)(v * 1000);
	return 0;
}

static int parse_args(int argc, char **argv, struct vm_config *cfg, struct receive_args *a)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, OPT_LISTEN },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "api-sock", required_argument, NULL, OPT_API_SOCK },
		{ "name", required_argument, NULL, OPT_NAME },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "log-file", required_argument, NULL, OPT_LOG_FILE },
		{ "net", required_argument, NULL, OPT_NET },
		{ "disk", required_argument, NULL, OPT_DISK },
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
	int c, rc = 0;
	while (!rc && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_LISTEN: a->listen = optarg; break;
		case OPT_TIMEOUT: rc = parse_timeout(optarg, &a->wait_ms); break;
		case OPT_API_SOCK: cli_set_str(&cfg->api_sock, optarg); break;
		case OPT_NAME: cli_set_str(&cfg->name, optarg); break;
		case OPT_LOG_FILE: cli_set_str(&cfg->log_file, optarg); break;
		case OPT_LOG_LEVEL:
			if (!(rc = cli_check_log_level(optarg)))
				cli_set_str(&cfg->log_level, optarg);
			break;
		case OPT_NET: rc = backend_overrides_add_net(&a->b, optarg); break;
		case OPT_DISK: rc = backend_overrides_add_disk(&a->b, optarg); break;
		case OPT_CONSOLE2: a->b.console2 = optarg; break;
		case OPT_VSOCK: a->b.vsock = optarg; break;
		case OPT_SECCOMP: rc = vm_runner_parse_seccomp(cfg, optarg); break;
		case OPT_LANDLOCK: rc = vm_runner_parse_landlock(cfg, optarg); break;
		case OPT_SNAPSHOT_DIR: cli_set_str(&cfg->snapshot_dir, optarg); break;
		case 'h': usage(stdout); exit(0);
		default:
			cli_bad_option("receive", argv);
			return -EINVAL;
		}
	}
	if (rc)
		return rc;
	if (optind < argc) {
		fprintf(stderr, "vmon: unexpected argument '%s' (see vmon receive --help)\n", argv[optind]);
		return -EINVAL;
	}
	if (!a->listen) {
		fprintf(stderr, "vmon: receive needs --listen tcp:ADDR:PORT, where the source's vmon ctl migrate "
				"connects (e.g. --listen tcp:0.0.0.0:4444)\n");
		return -EINVAL;
	}
	return 0;
}

/* What this host can run, for judging a source's hello before any memory moves. */
struct host_view {
	struct snap_cpu cpu;
	uint64_t memory; /* RAM and swap, bytes */
};

static int probe_host_view(struct host_view *h)
{
	int kvm = vm_open_kvm(); /* logs why it cannot */
	if (kvm < 0)
		return kvm;
	struct host_caps caps;
	memset(&caps, 0, sizeof(caps));
	int rc = host_probe_run(kvm, &caps);
	if (rc)
		log_error(COMP, "probing this host's KVM failed: %s", strerror(-rc));
	else if ((rc = cpu_compat_describe_host(&h->cpu, kvm, &caps)))
		log_error(COMP, "KVM_GET_SUPPORTED_CPUID failed: %s", strerror(-rc));
	close(kvm);
	h->memory = vm_host_memory();
	return rc;
}

static int judge_source(void *opaque, const struct mig_config *cfg, char *reason, size_t len)
{
	const struct host_view *h = opaque;
	if (cfg->ram_size > h->memory) {
		snprintf(reason, len, "the guest has %llu MiB of RAM and the destination host only %llu MiB of RAM and swap",
			 (unsigned long long)(cfg->ram_size >> 20), (unsigned long long)(h->memory >> 20));
		return -ENOMEM;
	}
	char why[400];
	if (snap_cpu_check(&cfg->cpu, &h->cpu, why, sizeof(why))) {
		snprintf(reason, len, "the destination host cannot run this guest: %s", why);
		return -EPERM;
	}
	return 0;
}

struct receive_ctx {
	struct migrate_dest *d;
	struct snapshot_image *img;
	struct vm *vm;
	struct postcopy_dest *pc; /* post-copy runs: the rest of RAM comes through it */
	bool answered;
};

/*
 * The source's answer, through post-copy's link once post-copy runs (it shares the connection),
 * else as a record of its own: the guest runs here (refusal NULL), or why not.
 */
static int answer(struct receive_ctx *ctx, const char *refusal, char *err, size_t errlen)
{
	ctx->answered = true;
	return ctx->pc ? postcopy_dest_tell(ctx->pc, refusal, err, errlen)
		       : migrate_dest_answer(ctx->d, refusal, err, errlen);
}

/* Refuses the incoming VM with reason (logged here, shown by the source, which resumes it). */
static void refuse(struct receive_ctx *ctx, const char *reason)
{
	log_error(COMP, "%s", reason);
	char err[256];
	answer(ctx, reason, err, sizeof(err));
}

/*
 * Post-copy: the guest's RAM goes into the VM now and is registered with userfaultfd before
 * anything reads it, so every page not here yet faults and is fetched from the source.
 */
static int start_postcopy(struct vm *vm, struct receive_ctx *ctx)
{
	struct migrate_dest *d = ctx->d;
	char err[512];
	int rc = mem_state_adopt(vm, &d->mem, err, sizeof(err));
	ctx->img->ram = NULL;
	if (!rc)
		rc = postcopy_dest_start(&ctx->pc, &vm->mem, d->conn, d->pc_offset, d->pc_discard_runs, d->pc_pending, err,
					 sizeof(err));
	if (rc)
		log_error(COMP, "%s", err);
	else
		guest_mem_watch_lost_pages(&vm->mem);
	return rc;
}

/* The source paused the guest and waits: build it here as a restore would. */
static int receive_setup(struct vm *vm, const struct vm_config *cfg, void *arg)
{
	struct receive_ctx *ctx = arg;
	char err[512];
	ctx->vm = vm;
	int rc = vm_runner_create_vm(vm, cfg, snapshot_has_rng(ctx->img));
	if (!rc && ctx->d->postcopy)
		rc = start_postcopy(vm, ctx);
	if (!rc && (rc = snapshot_restore(vm, ctx->img, err, sizeof(err))))
		log_error(COMP, "%s", err);
	return rc;
}

/* Post-copy ended (on the device event loop): every page is here, or the VM is lost. */
static void on_postcopy_end(void *arg, uint32_t events)
{
	(void)events;
	struct receive_ctx *ctx = arg;
	struct platform *p = ctx->vm->platform;
	event_loop_remove_fd(p->loop, postcopy_dest_event_fd(ctx->pc));
	char err[640];
	if (postcopy_dest_wait(ctx->pc, 0, err, sizeof(err))) {
		vm_request_stop(ctx->vm, VM_STOP_ERROR, "%s", err);
		return;
	}
	struct postcopy_dest_stats st;
	postcopy_dest_get_stats(ctx->pc, &st);
	log_info(COMP, "post-copy complete: every page is here (%llu asked for on a fault, %llu pushed by the source), "
		       "%.0f ms after the switch",
		 (unsigned long long)st.requests, (unsigned long long)(st.pages + st.zero_pages - st.requests),
		 (double)(monotonic_ns() - ctx->d->received_ns) / 1e6);
}

/* Everything is up: the guest runs here once the source knows, and not if it cannot be told (it would resume it). */
static int receive_commit(struct vm *vm, void *arg)
{
	struct receive_ctx *ctx = arg;
	char err[512];
	int rc = answer(ctx, NULL, err, sizeof(err));
	if (!ctx->pc) {
		mig_conn_close(ctx->d->conn);
		ctx->d->conn = NULL;
	}
	if (rc) {
		log_error(COMP, "the source could not be told that the guest runs here, so it keeps it; not starting it "
				"here: %s", err);
		return rc;
	}
	struct platform *p = vm->platform;
	if (ctx->pc && (rc = event_loop_add_fd(p->loop, postcopy_dest_event_fd(ctx->pc), EPOLLIN, on_postcopy_end, ctx))) {
		log_error(COMP, "cannot watch post-copy's end: %s; not starting the guest", strerror(-rc));
		return rc;
	}
	log_info(COMP, "the guest runs here now, %.0f ms after its %s", (double)(monotonic_ns() - ctx->d->received_ns) / 1e6,
		 ctx->pc ? "state arrived (post-copy brings the rest of its RAM)" : "stream ended");
	return 0;
}

/* Before the VM is torn down, while its RAM is mapped: a source still waiting is refused, post-copy ends. */
static void receive_stopped(struct vm *vm, void *arg)
{
	(void)vm;
	struct receive_ctx *ctx = arg;
	if (!ctx->answered && ctx->pc)
		refuse(ctx, "the destination could not build the VM or start its devices: see the destination's log");
	postcopy_dest_free(ctx->pc);
	ctx->pc = NULL;
}

static int receive_vm(struct vm_config *cfg, struct receive_args *a, struct host_view *host, struct mig_listener **l)
{
	struct migrate_dest_params p = {
		.vmon_version = api_migrate_vmon_version, .accept_wait_ms = a->wait_ms, .check = judge_source, .opaque = host,
	};
	struct migrate_dest d;
	char err[512];
	log_info(COMP, "waiting for a migration on %s (port %u)", a->listen, mig_listener_port(*l));
	if (migrate_dest_receive(&d, *l, &p, err, sizeof(err))) {
		log_error(COMP, "%s", err);
		return EXIT_USAGE;
	}
	/* One VM per vmon receive: a second source finds nothing listening. */
	mig_listener_close(*l);
	*l = NULL;
	int status = EXIT_USAGE;
	struct snapshot_image img;
	struct receive_ctx ctx = { .d = &d, .img = &img };
	if (snapshot_open_received(&img, &d.state, &d.mem, cfg, err, sizeof(err))) {
		refuse(&ctx, err);
	} else if (backend_overrides_apply(cfg, &a->b, "the incoming VM")) {
		refuse(&ctx, "the destination's --net/--disk/--console2/--vsock do not fit the incoming VM: see the "
			     "destination's log");
		snapshot_close(&img);
	} else {
		if (cfg->memory_merge || cfg->memory_hugepages)
			log_info(COMP, "the source's VM had %s; the received guest RAM is an ordinary memfd here",
				 cfg->memory_hugepages ? "hugepages=on" : "merge=on");
		cfg->memory_merge = cfg->memory_hugepages = false;
		status = vm_runner_main(cfg, &(struct vm_runner_steps){ .setup = receive_setup, .commit = receive_commit,
									  .stopped = receive_stopped, .arg = &ctx });
		snapshot_close(&img);
		if (!ctx.answered)
			refuse(&ctx, "the destination could not build the VM or start its devices: see the destination's log");
	}
	migrate_dest_free(&d);
	return status;
}

int cli_receive(int argc, char **argv)
{
	struct vm_config cfg;
	config_init_defaults(&cfg);
	struct receive_args a = { .wait_ms = -1 };
	struct mig_address addr;
	char err[512];
	if (parse_args(argc, argv, &cfg, &a) || vm_runner_prepare(&cfg)) {
		config_free(&cfg);
		return EXIT_USAGE;
	}
	if (mig_address_parse(a.listen, &addr, err, sizeof(err))) {
		fprintf(stderr, "vmon: --listen: %s\n", err);
		config_free(&cfg);
		return EXIT_USAGE;
	}
	struct host_view host;
	struct mig_listener *l;
	if (probe_host_view(&host)) {
		config_free(&cfg);
		return EXIT_USAGE;
	}
	if (mig_listener_open(&l, &addr, err, sizeof(err))) {
		log_error(COMP, "%s", err);
		config_free(&cfg);
		return EXIT_USAGE;
	}
	int status = receive_vm(&cfg, &a, &host, &l);
	mig_listener_close(l);
	config_free(&cfg);
	return status;
}
