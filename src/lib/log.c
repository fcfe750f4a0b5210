#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level current_level = LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = { "error", "warn", "info", "debug" };
static FILE *json_file; /* under log_lock */

int log_open_json_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	FILE *f = fdopen(fd, "a");
	if (!f) {
		int e = errno;
		close(fd);
		return -e;
	}
	/* Line-buffered: a crash loses at most the line being written. */
	setvbuf(f, NULL, _IOLBF, 0);
	pthread_mutex_lock(&log_lock);
	FILE *old = json_file;
	json_file = f;
	pthread_mutex_unlock(&log_lock);
	if (old)
		fclose(old);
	return 0;
}

void log_close_json_file(void)
{
	pthread_mutex_lock(&log_lock);
	FILE *f = json_file;
	json_file = NULL;
	pthread_mutex_unlock(&log_lock);
	if (f)
		fclose(f);
}

/* Length of the valid UTF-8 sequence at s, or 0 if it is not one. */
static int utf8_len(const unsigned char *s)
{
	int n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
	for (int i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/* Always valid JSON, whatever bytes the message holds: bytes that are not UTF-8 become \u00XX. */
static void json_escaped(FILE *f, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	fputc('"', f);
	while (*s) {
		unsigned char c = *s;
		if (c == '"' || c == '\\') {
			fprintf(f, "\\%c", c);
		} else if (c == '\n') {
			fputs("\\n", f);
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(f, "\\u%04x", c);
		} else if (c >= 0x80) {
			int n = utf8_len(s);
			if (n) {
				fwrite(s, 1, (size_t)n, f);
				s += n;
				continue;
			}
			fprintf(f, "\\u%04x", c);
		} else {
			fputc(c, f);
		}
		s++;
	}
	fputc('"', f);
}

static void write_json_line(enum log_level level, const char *component, const char *body)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[40];
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(json_file, "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"component\":", when, ts.tv_nsec / 1000000,
		level_names[level]);
	json_escaped(json_file, component);
	fprintf(json_file, ",\"pid\":%d,\"msg\":", (int)getpid());
	json_escaped(json_file, body);
	fputs("}\n", json_file);
}

void log_set_level(enum log_level level) { current_level = level; }
enum log_level log_get_level(void) { return current_level; }

int log_parse_level(const char *name)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(name, level_names[i]) == 0)
			return (int)i;
	return -1;
}

/* Formats and writes one line; the level filter is the caller's. */
static void log_vmsg(enum log_level level, const char *component, const char *fmt, va_list ap)
{
	char body[1024];
	vsnprintf(body, sizeof(body), fmt, ap);
	/* One write per line so lines from vCPU threads never interleave mid-line. */
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "vmon: %s: %s: %s\n", level_names[level], component, body);
	if (json_file)
		write_json_line(level, component, body);
	pthread_mutex_unlock(&log_lock);
}

void log_msg(enum log_level level, const char *component, const char *fmt, ...)
{
	if (level > current_level)
		return;
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, component, fmt, ap);
	va_end(ap);
}

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * Counts one line against rl. Returns true if it may go out; *report is then the number of
 * lines suppressed in the window that just ended (to be said first), else 0.
 */
static bool ratelimit_admit(struct log_ratelimit *rl, unsigned int *report)
{
	long long now = now_ns();
	long long interval = (long long)(rl->interval_ms ? rl->interval_ms : LOG_RATELIMIT_INTERVAL_MS) * 1000000LL;
	unsigned int burst = rl->burst ? rl->burst : LOG_RATELIMIT_BURST;
	pthread_mutex_lock(&log_lock);
	*report = 0;
	if (!rl->window_start_ns || now - rl->window_start_ns >= interval) {
		*report = rl->suppressed;
		rl->window_start_ns = now;
		rl->emitted = 0;
		rl->suppressed = 0;
	}
	bool ok = rl->emitted < burst;
	if (ok)
		rl->emitted++;
	else
		rl->suppressed++;
	pthread_mutex_unlock(&log_lock);
	return ok;
}

static void report_suppressed(enum log_level level, const char *component, unsigned int n)
{
	if (n)
		log_msg(level, component, "%u similar messages suppressed", n);
}

void log_msg_ratelimited(struct log_ratelimit *rl, enum log_level level, const char *component, const char *fmt, ...)
{
	/* A filtered-out level costs nothing and uses none of the budget. */
	if (level > current_level)
		return;
	unsigned int n;
	if (!ratelimit_admit(rl, &n))
		return;
	report_suppressed(level, component, n);
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, component, fmt, ap);
	va_end(ap);
}
