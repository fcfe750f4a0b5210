/* Leveled logging to stderr with a component prefix. The guest console never goes here. */
#ifndef VMON_LIB_LOG_H
#define VMON_LIB_LOG_H

#include <stdbool.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "error", "warn", "info", "debug"; returns -1 on anything else. */
int log_parse_level(const char *name);

/*
 * Also writes every logged message to path (appended, created 0600 if missing) as one JSON object
 * per line: {"time": RFC 3339 UTC, "level", "component", "pid", "msg"}. Returns 0 or a negative
 * errno. log_close_json_file() stops it; both are safe while other threads log.
 */
int log_open_json_file(const char *path);
void log_close_json_file(void);

void log_msg(enum log_level level, const char *component, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_error(comp, ...) log_msg(LOG_ERROR, comp, __VA_ARGS__)
#define log_warn(comp, ...)  log_msg(LOG_WARN, comp, __VA_ARGS__)
#define log_info(comp, ...)  log_msg(LOG_INFO, comp, __VA_ARGS__)
#define log_debug(comp, ...) log_msg(LOG_DEBUG, comp, __VA_ARGS__)

/*
 * A guest can trigger the same message millions of times. A struct log_ratelimit is the state
 * of one call site (a static next to it, or a field of the device that logs): at most `burst`
 * lines per `interval_ms`, the rest counted; the next line let through after the interval is
 * preceded by one "K similar messages suppressed" line from the same component. Zero-initialised
 * state uses LOG_RATELIMIT_BURST lines per LOG_RATELIMIT_INTERVAL_MS. Thread-safe.
 */
#define LOG_RATELIMIT_BURST 5
#define LOG_RATELIMIT_INTERVAL_MS 5000
struct log_ratelimit {
	unsigned int burst;       /* 0: LOG_RATELIMIT_BURST */
	unsigned int interval_ms; /* 0: LOG_RATELIMIT_INTERVAL_MS */
	long long window_start_ns;
	unsigned int emitted;
	unsigned int suppressed;
};
#define LOG_RATELIMIT_INIT(burst_, interval_ms_) { .burst = (burst_), .interval_ms = (interval_ms_) }

void log_msg_ratelimited(struct log_ratelimit *rl, enum log_level level, const char *component, const char *fmt,
			 ...) __attribute__((format(printf, 4, 5)));

#define log_warn_ratelimited(rl, comp, ...) log_msg_ratelimited(rl, LOG_WARN, comp, __VA_ARGS__)
#define log_info_ratelimited(rl, comp, ...) log_msg_ratelimited(rl, LOG_INFO, comp, __VA_ARGS__)
#define log_debug_ratelimited(rl, comp, ...) log_msg_ratelimited(rl, LOG_DEBUG, comp, __VA_ARGS__)

#endif
