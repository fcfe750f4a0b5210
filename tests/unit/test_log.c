/* Logging as an operator reads it: the level filter and the JSON-lines file. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_lines_are_valid_json_whatever_the_message),
		cmocka_unit_test(test_open_failure_is_reported),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
