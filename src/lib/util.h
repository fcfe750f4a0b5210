/* Small helpers used everywhere. */
#ifndef VMON_LIB_UTIL_H
#define VMON_LIB_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((uint64_t)(a)-1))
#define ALIGN_DOWN(x, a) ((x) & ~((uint64_t)(a)-1))

#define KiB (1024ULL)
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)

/*
 * Parses a size such as "512", "256M", "2G", "64k" (binary units, bytes if no suffix).
 * Returns 0 and stores bytes in *out, or -EINVAL / -ERANGE.
 */
int parse_size(const char *s, uint64_t *out);

/*
 * Reads a whole regular file into a malloc'ed buffer, refusing one larger than max bytes with
 * -EFBIG (before allocating: a file's size is not trusted to be sensible). A path that is not
 * a regular file gives -EISDIR for a directory, -EINVAL otherwise; it is opened without
 * blocking, so a FIFO cannot hang the caller. Returns 0 or a negative errno.
 */
int read_file(const char *path, size_t max, uint8_t **data, size_t *len);

/* Monotonic clock in nanoseconds. */
uint64_t monotonic_ns(void);
/* ns (a time on one of the clocks in nanoseconds, or a duration) as a struct timespec. */
struct timespec ns_to_timespec(uint64_t ns);
/*
 * A condition variable whose timed waits run on CLOCK_MONOTONIC, which no one sets: pass it
 * ns_to_timespec(monotonic_ns() + ...). 0 or -errno.
 */
int cond_init_monotonic(pthread_cond_t *c);
/*
 * Writes one sentence into err (errlen bytes) and returns rc: the way functions that know why
 * they fail hand the reason to their caller, as in `return err_fail(err, errlen, -EINVAL, "...")`.
 */
int err_fail(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The host's wall clock (CLOCK_REALTIME) in nanoseconds since the epoch. */
uint64_t realtime_ns(void);

#endif
