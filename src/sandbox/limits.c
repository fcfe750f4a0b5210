/* Process-wide resource limits, sized from the configuration once set-up is done. */
#include "sandbox/sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>

#include "api/api_server.h"
#include "backends/disk_image.h"
#include "lib/log.h"
#include "virtio/virtio_vsock.h"

#define COMP "sandbox"

/* Snapshots, the API's own descriptors, log files: what set-up cannot count ahead. */
#define FD_HEADROOM 64
/* libslirp opens one host socket per guest connection (TCP, UDP, ICMP). */
#define FDS_PER_USER_NET 256
/* The snapshot's state file and the memory file's trailer, beyond the guest RAM. */
#define SNAPSHOT_EXTRA_BYTES (64ULL << 20)

static int count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -errno;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static uint64_t max_fds(const struct vm_config *cfg, int open_fds)
{
	uint64_t n = (uint64_t)open_fds + FD_HEADROOM + API_CONNECTION_LIMIT;
	for (unsigned int i = 0; i < cfg->nnets; i++)
		if (!strncmp(cfg->nets[i], "user", 4))
			n += FDS_PER_USER_NET;
	if (cfg->vsock)
		n += VIRTIO_VSOCK_MAX_CONNS;
	return n;
}

/*
 * The largest file vmon writes: a snapshot's memory file (the guest RAM plus a little), or a
 * disk image: a raw one the guest writes in place and never past its end, a qcow2 one grows
 * up to about its virtual size (block devices have no file-size limit). The second console's
 * file and the log files stop growing there too.
 */
static uint64_t max_file_size(const struct vm_config *cfg)
{
	uint64_t n = cfg->memory + SNAPSHOT_EXTRA_BYTES;
	for (unsigned int i = 0; i < cfg->ndisks; i++) {
		uint64_t d = disk_image_max_file_size(cfg->disks[i].path, cfg->disks[i].format);
		if (d > n)
			n = d;
	}
	return n;
}

/* Lowers soft and hard limit together (never raises them): the guest cannot get them back. */
static int lower_limit(int resource, const char *what, uint64_t want)
{
	struct rlimit rl;
	if (getrlimit(resource, &rl) < 0)
		return -errno;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
		want = rl.rlim_max;
	rl.rlim_max = want;
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > want)
		rl.rlim_cur = want;
	if (setrlimit(resource, &rl) < 0) {
		int rc = -errno;
		log_error(COMP, "cannot set %s to %llu: %s", what, (unsigned long long)want, strerror(-rc));
		return rc;
	}
	log_debug(COMP, "%s set to %llu", what, (unsigned long long)rl.rlim_cur);
	return 0;
}

int sandbox_limit_resources(const struct vm_config *cfg)
{
	/* A write past RLIMIT_FSIZE fails with EFBIG instead of killing vmon with SIGXFSZ. */
	signal(SIGXFSZ, SIG_IGN);
	int open_fds = count_open_fds();
	if (open_fds < 0) {
		log_error(COMP, "cannot count the open file descriptors in /proc/self/fd: %s", strerror(-open_fds));
		return open_fds;
	}
	int rc = lower_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", max_fds(cfg, open_fds));
	return rc ? rc : lower_limit(RLIMIT_FSIZE, "RLIMIT_FSIZE", max_file_size(cfg));
}
