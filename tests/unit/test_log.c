/* Logging as an operator reads it: the level filter, the JSON-lines file, rate-limited lines. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"

static void test_json_lines_are_valid_json_whatever_the_message(void **state)
{
	(void)state;
	char path[] = "/tmp/vmon-log.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(log_open_json_file(path), 0);
	log_set_level(LOG_INFO);
	log_info("api", "a \"quoted\" word, a back\\slash, a\nnewline, a tab\t, caf\xc3\xa9, a bad byte \xff");
	log_warn("vm", "second");
	log_debug("vm", "filtered out at info level");
	log_close_json_file();
	log_info("vm", "after closing: not in the file");

	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char line[2048];
	int n = 0;
	while (fgets(line, sizeof(line), f)) {
		json_error_t err;
		json_t *o = json_loads(line, 0, &err);
		if (!o)
			fail_msg("line %d is not JSON (%s): %s", n + 1, err.text, line);
		assert_non_null(json_string_value(json_object_get(o, "time")));
		assert_int_equal(json_integer_value(json_object_get(o, "pid")), getpid());
		if (n == 0) {
			assert_string_equal(json_string_value(json_object_get(o, "level")), "info");
			assert_string_equal(json_string_value(json_object_get(o, "component")), "api");
			const char *msg = json_string_value(json_object_get(o, "msg"));
			assert_non_null(strstr(msg, "a \"quoted\" word, a back\\slash, a\nnewline"));
			assert_non_null(strstr(msg, "caf\xc3\xa9"));
			assert_non_null(strstr(msg, "bad byte \xc3\xbf")); /* the stray byte as U+00FF */
		} else {
			assert_string_equal(json_string_value(json_object_get(o, "level")), "warn");
			assert_string_equal(json_string_value(json_object_get(o, "msg")), "second");
		}
		json_decref(o);
		n++;
	}
	fclose(f);
	unlink(path);
	assert_int_equal(n, 2);
}

static void test_open_failure_is_reported(void **state)
{
	(void)state;
	assert_true(log_open_json_file("/nonexistent-dir/vmon.log") < 0);
}

/* A fresh JSON log file; its path goes to path (at least 32 bytes). */
static void open_capture(char *path)
{
	strcpy(path, "/tmp/vmon-log.XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(log_open_json_file(path), 0);
}

/* Stops capturing and returns the "msg" of every line, as "level component: msg", n of them. */
static char **close_capture(const char *path, int *n)
{
	log_close_json_file();
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char **out = NULL;
	char line[2048];
	*n = 0;
	while (fgets(line, sizeof(line), f)) {
		json_t *o = json_loads(line, 0, NULL);
		assert_non_null(o);
		out = realloc(out, sizeof(*out) * (size_t)(*n + 1));
		assert_non_null(out);
		assert_true(asprintf(&out[*n], "%s %s: %s", json_string_value(json_object_get(o, "level")),
				     json_string_value(json_object_get(o, "component")),
				     json_string_value(json_object_get(o, "msg"))) > 0);
		(*n)++;
		json_decref(o);
	}
	fclose(f);
	unlink(path);
	return out;
}

static void free_lines(char **lines, int n)
{
	for (int i = 0; i < n; i++)
		free(lines[i]);
	free(lines);
}

static void test_a_flood_is_cut_to_the_burst_and_the_rest_counted(void **state)
{
	(void)state;
	char path[32];
	open_capture(path);
	log_set_level(LOG_INFO);
	static struct log_ratelimit rl = LOG_RATELIMIT_INIT(3, 100);
	for (int i = 0; i < 20; i++)
		log_info_ratelimited(&rl, "dev", "guest event %d", i);
	struct timespec pause = { .tv_nsec = 150 * 1000000L };
	nanosleep(&pause, NULL);
	log_info_ratelimited(&rl, "dev", "guest event after the interval");
	log_info_ratelimited(&rl, "dev", "and one more");
	int n;
	char **lines = close_capture(path, &n);
	assert_int_equal(n, 6);
	assert_string_equal(lines[0], "info dev: guest event 0");
	assert_string_equal(lines[2], "info dev: guest event 2");
	assert_string_equal(lines[3], "info dev: 17 similar messages suppressed");
	assert_string_equal(lines[4], "info dev: guest event after the interval");
	assert_string_equal(lines[5], "info dev: and one more"); /* nothing was suppressed in between */
	free_lines(lines, n);
}

static void test_call_sites_have_their_own_budget_and_defaults(void **state)
{
	(void)state;
	char path[32];
	open_capture(path);
	log_set_level(LOG_INFO);
	static struct log_ratelimit a, b; /* zero: the default burst */
	for (int i = 0; i < 100; i++)
		log_warn_ratelimited(&a, "a", "flood");
	log_warn_ratelimited(&b, "b", "another site still speaks");
	/* A level that is filtered out does not use the budget either. */
	static struct log_ratelimit c = LOG_RATELIMIT_INIT(1, 60000);
	log_debug_ratelimited(&c, "c", "not shown at info level");
	log_set_level(LOG_DEBUG);
	log_debug_ratelimited(&c, "c", "shown at debug level");
	log_set_level(LOG_INFO);
	int n;
	char **lines = close_capture(path, &n);
	assert_int_equal(n, LOG_RATELIMIT_BURST + 2);
	assert_string_equal(lines[LOG_RATELIMIT_BURST - 1], "warn a: flood");
	assert_string_equal(lines[LOG_RATELIMIT_BURST], "warn b: another site still speaks");
	assert_string_equal(lines[LOG_RATELIMIT_BURST + 1], "debug c: shown at debug level");
	free_lines(lines, n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_lines_are_valid_json_whatever_the_message),
		cmocka_unit_test(test_open_failure_is_reported),
		cmocka_unit_test(test_a_flood_is_cut_to_the_burst_and_the_rest_counted),
		cmocka_unit_test(test_call_sites_have_their_own_budget_and_defaults),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
