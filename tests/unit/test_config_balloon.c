/* --balloon and "balloon": the values a user writes and what the VM gets. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "config/config.h"
#include "config/config_json.h"

static void bare_option_gives_the_defaults(void **state)
{
	(void)state;
	struct balloon_config b;
	char err[256];
	config_balloon_defaults(&b);
	assert_false(b.enabled);
	assert_int_equal(config_balloon_parse(NULL, &b, err, sizeof(err)), 0);
	assert_true(b.enabled);
	assert_true(b.deflate_on_oom);
	assert_true(b.free_page_reporting);
	assert_int_equal(b.stats_interval_s, BALLOON_DEFAULT_STATS_INTERVAL_S);
	config_balloon_defaults(&b);
	assert_int_equal(config_balloon_parse("", &b, err, sizeof(err)), 0);
	assert_true(b.enabled);
}

static void settings_are_parsed_and_later_ones_override(void **state)
{
	(void)state;
	struct balloon_config b;
	char err[256];
	config_balloon_defaults(&b);
	assert_int_equal(config_balloon_parse("deflate_on_oom=off,free_page_reporting=off,stats_interval=0", &b, err,
					      sizeof(err)), 0);
	assert_true(b.enabled);
	assert_false(b.deflate_on_oom);
	assert_false(b.free_page_reporting);
	assert_int_equal(b.stats_interval_s, 0);
	/* A second --balloon (or one after the config file's) changes only what it names. */
	assert_int_equal(config_balloon_parse("stats_interval=30", &b, err, sizeof(err)), 0);
	assert_false(b.free_page_reporting);
	assert_int_equal(b.stats_interval_s, 30);
}

static void bad_values_name_the_setting_and_change_nothing(void **state)
{
	(void)state;
	static const struct {
		const char *spec, *says;
	} cases[] = {
		{ "deflate_on_oom=yes", "deflate_on_oom takes on or off" },
		{ "free_page_reporting", "free_page_reporting takes on or off" },
		{ "stats_interval=-1", "whole number of seconds" },
		{ "stats_interval=3601", "whole number of seconds" },
		{ "stats_interval=5s", "whole number of seconds" },
		{ "--disk", "unknown setting '--disk'" },
		{ "size=1G", "unknown setting 'size'" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct balloon_config b;
		char err[256];
		config_balloon_defaults(&b);
		assert_int_equal(config_balloon_parse(cases[i].spec, &b, err, sizeof(err)), -EINVAL);
		if (!strstr(err, cases[i].says))
			fail_msg("'%s': '%s' does not say '%s'", cases[i].spec, err, cases[i].says);
		assert_false(b.enabled);
	}
}

static void json_takes_a_boolean_or_an_object_and_round_trips(void **state)
{
	(void)state;
	struct vm_config cfg;
	char err[256];
	config_init_defaults(&cfg);
	assert_int_equal(config_json_apply_text(&cfg, "{\"balloon\": true}", "test", err, sizeof(err)), 0);
	assert_true(cfg.balloon.enabled);
	assert_true(cfg.balloon.free_page_reporting);
	assert_int_equal(config_json_apply_text(&cfg,
						"{\"balloon\": {\"free_page_reporting\": false, \"stats_interval\": 10}}",
						"test", err, sizeof(err)), 0);
	assert_true(cfg.balloon.enabled);
	assert_false(cfg.balloon.free_page_reporting);
	assert_int_equal(cfg.balloon.stats_interval_s, 10);

	/* What a snapshot header stores reads back as the same balloon. */
	json_t *dump = config_json_dump(&cfg);
	struct vm_config back;
	config_init_defaults(&back);
	assert_int_equal(config_json_apply(&back, dump, err, sizeof(err)), 0);
	assert_true(back.balloon.enabled);
	assert_true(back.balloon.deflate_on_oom);
	assert_false(back.balloon.free_page_reporting);
	assert_int_equal(back.balloon.stats_interval_s, 10);
	json_decref(dump);
	config_free(&back);

	assert_int_equal(config_json_apply_text(&cfg, "{\"balloon\": false}", "test", err, sizeof(err)), 0);
	assert_false(cfg.balloon.enabled);
	dump = config_json_dump(&cfg);
	assert_true(json_is_false(json_object_get(dump, "balloon")));
	json_decref(dump);

	static const char *const bad[] = {
		"{\"balloon\": 1}",
		"{\"balloon\": {\"deflate_on_oom\": \"on\"}}",
		"{\"balloon\": {\"stats_interval\": -2}}",
		"{\"balloon\": {\"size\": 5}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(config_json_apply_text(&cfg, bad[i], "test", err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "balloon"));
	}
	config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bare_option_gives_the_defaults),
		cmocka_unit_test(settings_are_parsed_and_later_ones_override),
		cmocka_unit_test(bad_values_name_the_setting_and_change_nothing),
		cmocka_unit_test(json_takes_a_boolean_or_an_object_and_round_trips),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
