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
 * A guest can trigger the same warning millions of times; a ratelimit lets the first few
 * through per interval and counts the rest.
 */
struct log_ratelimit {
	long long window_start_ns;
	unsigned int emitted;
	unsigned int suppressed;
};
bool log_ratelimit_ok(struct log_ratelimit *rl);

#define log_warn_ratelimited(rl, comp, ...)                                                        \
	do {                                                                                       \
		if (log_ratelimit_ok(rl))                                                          \
			log_msg(LOG_WARN, comp, __VA_ARGS__);                                      \
	} while (0)

#endif
