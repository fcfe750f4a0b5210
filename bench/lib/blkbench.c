/*
 * Runs inside the benchmark's Linux guest: 4 KiB requests at queue depth 1 on a block device,
 * with O_DIRECT so each one reaches the virtio-blk device. Four patterns (sequential and
 * random, read and write), the same count each; one line per pattern:
 *
 *   BENCH-BLK <pattern> ops=<n> seconds=<s> mib_s=<MiB/s> lat_us=<mean us per request>
 *
 * then "BENCH-BLK-DONE". Random offsets come from a fixed seed, so every run asks for the same
 * blocks. Built with gcc -static by bench/Makefile and appended to the default initramfs by
 * bench/lib/fig_blk.py.
 *
 *   blkbench DEVICE [OPS]     (OPS default 256; the device must hold at least 4 MiB)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* xorshift64: the same offsets on every run and every VMM. */
static uint64_t next_random(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static int run(int fd, const char *name, int write, int random, long ops, uint64_t blocks, void *buf)
{
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	double t0 = now();
	for (long i = 0; i < ops; i++) {
		uint64_t block = random ? next_random(&seed) % blocks : (uint64_t)i % blocks;
		off_t off = (off_t)(block * BLOCK);
		ssize_t n = write ? pwrite(fd, buf, BLOCK, off) : pread(fd, buf, BLOCK, off);
		if (n != BLOCK) {
			printf("BENCH-BLK %s error=%s\n", name, n < 0 ? strerror(errno) : "short transfer");
			return -1;
		}
	}
	double secs = now() - t0;
	printf("BENCH-BLK %s ops=%ld seconds=%.4f mib_s=%.4f lat_us=%.1f\n", name, ops, secs,
	       secs > 0 ? ops * (double)BLOCK / (1 << 20) / secs : 0.0, secs * 1e6 / (double)ops);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: blkbench DEVICE [OPS]\n");
		return 2;
	}
	long ops = argc > 2 ? strtol(argv[2], NULL, 10) : 256;
	int fd = open(argv[1], O_RDWR | O_DIRECT);
	uint64_t bytes = 0;
	if (fd < 0 || ioctl(fd, BLKGETSIZE64, &bytes) < 0) {
		printf("BENCH-BLK error=%s: %s\n", argv[1], strerror(errno));
		printf("BENCH-BLK-DONE\n");
		return 1;
	}
	uint64_t blocks = bytes / BLOCK;
	void *buf;
	if (ops <= 0 || blocks < 1024 || posix_memalign(&buf, BLOCK, BLOCK)) {
		printf("BENCH-BLK error=%s is too small or the arguments are wrong\n", argv[1]);
		printf("BENCH-BLK-DONE\n");
		return 1;
	}
	memset(buf, 0x5a, BLOCK);
	int rc = 0;
	rc |= run(fd, "seq_read", 0, 0, ops, blocks, buf);
	rc |= run(fd, "seq_write", 1, 0, ops, blocks, buf);
	rc |= run(fd, "rand_read", 0, 1, ops, blocks, buf);
	rc |= run(fd, "rand_write", 1, 1, ops, blocks, buf);
	fsync(fd);
	close(fd);
	free(buf);
	printf("BENCH-BLK-DONE\n");
	return rc ? 1 : 0;
}
