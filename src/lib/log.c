#include "lib/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum log_level current_level = LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void log_set_level(enum log_level level) { current_level = level; }
enum log_level log_get_level(void) { return current_level; }

int log_parse_level(const char *name)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(name, level_names[i]) == 0)
			return (int)i;
	return -1;
}

void log_msg(enum log_level level, const char *component, const char *fmt, ...)
{
	if (level > current_level)
		return;
	char body[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	/* One write per line so lines from vCPU threads never interleave mid-line. */
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "vmon: %s: %s: %s\n", level_names[level], component, body);
	pthread_mutex_unlock(&log_lock);
}

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#define RATELIMIT_WINDOW_NS 5000000000LL
#define RATELIMIT_BURST 5

bool log_ratelimit_ok(struct log_ratelimit *rl)
{
	long long now = now_ns();
	bool ok;
	pthread_mutex_lock(&log_lock);
	if (now - rl->window_start_ns > RATELIMIT_WINDOW_NS) {
		if (rl->suppressed)
			fprintf(stderr, "vmon: warn: log: %u similar messages suppressed\n", rl->suppressed);
		rl->window_start_ns = now;
		rl->emitted = 0;
		rl->suppressed = 0;
	}
	ok = rl->emitted < RATELIMIT_BURST;
	if (ok)
		rl->emitted++;
	else
		rl->suppressed++;
	pthread_mutex_unlock(&log_lock);
	return ok;
}
