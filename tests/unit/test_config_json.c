/* The JSON view of the configuration: what a user's config file sets, and what an error tells them. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config_json.h"

static int apply(struct vm_config *cfg, const char *text, char *err, size_t len)
{
	return config_json_apply_text(cfg, text, "vm.json", err, len);
}

static void test_full_file_sets_every_field(void **state)
{
	(void)state;
	struct vm_config c;
	config_init_defaults(&c);
	char err[512] = "";
	assert_int_equal(apply(&c,
			       "{\"kernel\": \"/k\", \"initrd\": \"/i\", \"cmdline\": \"console=ttyS0 quiet\", \"cpus\": 4,"
			       " \"memory\": \"1G\", \"host_workarounds\": \"off\", \"log_level\": \"debug\","
			       " \"log_file\": \"/tmp/l\", \"api_sock\": \"/tmp/s\", \"name\": \"web-1\", \"rng\": false}",
			       err, sizeof(err)),
			 0);
	assert_string_equal(c.kernel_path, "/k");
	assert_string_equal(c.initrd_path, "/i");
	assert_string_equal(c.cmdline, "console=ttyS0 quiet");
	assert_int_equal(c.cpus, 4);
	assert_int_equal(c.memory, 1ULL << 30);
	assert_int_equal(c.workarounds, HOST_WORKAROUNDS_OFF);
	assert_string_equal(c.log_level, "debug");
	assert_string_equal(c.log_file, "/tmp/l");
	assert_string_equal(c.api_sock, "/tmp/s");
	assert_string_equal(c.name, "web-1");
	assert_false(c.rng);
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	config_free(&c);
}

static void test_absent_keys_keep_values_and_null_unsets(void **state)
{
	(void)state;
	struct vm_config c;
	config_init_defaults(&c);
	char err[512];
	c.initrd_path = strdup("/old-initrd");
	assert_int_equal(apply(&c, "{\"kernel\": \"/k\", \"memory\": 67108864, \"initrd\": null}", err, sizeof(err)), 0);
	assert_int_equal(c.cpus, 1); /* default kept */
	assert_true(c.rng);
	assert_int_equal(c.memory, 64ULL << 20);
	assert_null(c.initrd_path);
	config_free(&c);
}

/* Each bad file: the message names the key and what was expected. */
static void test_errors_name_the_key_and_the_expectation(void **state)
{
	(void)state;
	static const struct {
		const char *json;
		const char *want[2];
	} cases[] = {
		{ "{\"kernal\": \"/k\"}", { "unknown key \"kernal\"", "the keys are kernel, initrd" } },
		{ "{\"cpus\": \"two\"}", { "key \"cpus\"", "expected a whole number" } },
		{ "{\"cpus\": 2.5}", { "key \"cpus\"", "got a fractional number" } },
		{ "{\"cpus\": 0}", { "key \"cpus\": 0 is out of range", "from 1 to 254" } },
		{ "{\"cpus\": 300}", { "key \"cpus\": 300 is out of range", NULL } },
		{ "{\"cpus\": 1e300}", { "key \"cpus\": 1e+300 is out of range", "from 1 to 254" } },
		{ "{\"memory\": true}", { "key \"memory\"", "a size such as \"256M\"" } },
		{ "{\"memory\": \"lots\"}", { "key \"memory\": \"lots\" is not a size", NULL } },
		{ "{\"memory\": -4}", { "key \"memory\": -4 bytes is impossible", NULL } },
		{ "{\"kernel\": 7}", { "key \"kernel\": expected a string, got a whole number", NULL } },
		{ "{\"kernel\": \"\"}", { "key \"kernel\": expected a non-empty string", NULL } },
		{ "{\"host_workarounds\": \"maybe\"}", { "key \"host_workarounds\"", "\"auto\", \"on\" or \"off\"" } },
		{ "{\"log_level\": \"loud\"}", { "key \"log_level\": \"loud\" is not a log level", NULL } },
		{ "{\"rng\": \"no\"}", { "key \"rng\": expected true or false, got a string", NULL } },
		{ "[1, 2]", { "vm.json: expected a JSON object", "got an array" } },
		{ "{\"kernel\": \"/k\",}", { "vm.json is not valid JSON: line 1 column", NULL } },
		{ "{\"cpus\": 1, \"cpus\": 2}", { "not valid JSON", "duplicate" } },
		{ "", { "not valid JSON", NULL } },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vm_config c;
		config_init_defaults(&c);
		char err[512] = "";
		int rc = apply(&c, cases[i].json, err, sizeof(err));
		if (rc != -EINVAL)
			fail_msg("%s: expected -EINVAL, got %d", cases[i].json, rc);
		for (int w = 0; w < 2 && cases[i].want[w]; w++)
			if (!strstr(err, cases[i].want[w]))
				fail_msg("%s: message '%s' lacks '%s'", cases[i].json, err, cases[i].want[w]);
		config_free(&c);
	}
}

static void test_dump_round_trips(void **state)
{
	(void)state;
	struct vm_config a, b;
	config_init_defaults(&a);
	config_init_defaults(&b);
	a.kernel_path = strdup("/boot/vmlinuz");
	a.cmdline = strdup("console=ttyS0 \"quoted\"");
	a.cpus = 3;
	a.memory = 512ULL << 20;
	a.workarounds = HOST_WORKAROUNDS_ON;
	a.api_sock = strdup("/run/x.sock");
	a.rng = false;
	json_t *o = config_json_dump(&a);
	assert_non_null(o);
	char err[256];
	assert_int_equal(config_json_apply(&b, o, err, sizeof(err)), 0);
	json_decref(o);
	assert_string_equal(b.kernel_path, a.kernel_path);
	assert_string_equal(b.cmdline, a.cmdline);
	assert_null(b.initrd_path);
	assert_int_equal(b.cpus, 3);
	assert_int_equal(b.memory, a.memory);
	assert_int_equal(b.workarounds, HOST_WORKAROUNDS_ON);
	assert_string_equal(b.api_sock, a.api_sock);
	assert_string_equal(b.log_level, "info");
	assert_false(b.rng);
	config_free(&a);
	config_free(&b);
}

/* A FIFO or a device is refused before it is read: --config /dev/zero used to say "Invalid argument". */
static void test_load_file_refuses_what_is_not_a_regular_file(void **state)
{
	(void)state;
	char dir[] = "/tmp/vmon-test-fifo-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char fifo[64];
	snprintf(fifo, sizeof(fifo), "%s/vm.json", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	struct vm_config c;
	config_init_defaults(&c);
	char err[512] = "";
	alarm(10); /* a blocked open fails the test instead of hanging it */
	int rc = config_json_load_file(&c, fifo, err, sizeof(err));
	alarm(0);
	unlink(fifo);
	rmdir(dir);
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(err, "is not a regular file (a FIFO)"));

	assert_int_equal(config_json_load_file(&c, "/dev/zero", err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "config file /dev/zero is not a regular file (a character device)");
	config_free(&c);
}

static void test_load_file(void **state)
{
	(void)state;
	char dir[] = "/tmp/vmon-cfgjson.XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof(path), "%s/vm.json", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("{\n  \"kernel\": \"/k\",\n  \"cpus\": \"x\"\n}\n", f);
	fclose(f);

	struct vm_config c;
	config_init_defaults(&c);
	char err[512];
	assert_int_equal(config_json_load_file(&c, path, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "config file "));
	assert_non_null(strstr(err, "vm.json: key \"cpus\""));

	f = fopen(path, "w");
	fputs("{\n  \"kernel\": \"/k\",\n  \"cpus\": 2\n", f); /* unterminated */
	fclose(f);
	assert_int_equal(config_json_load_file(&c, path, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "line 4"));

	f = fopen(path, "w");
	fwrite("{\0}", 1, 3, f); /* binary */
	fclose(f);
	assert_int_equal(config_json_load_file(&c, path, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a JSON text file"));

	unlink(path);
	assert_int_equal(config_json_load_file(&c, path, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "cannot read config file"));
	rmdir(dir);
	config_free(&c);
}

static void test_validate_names_both_spellings(void **state)
{
	(void)state;
	struct vm_config c;
	config_init_defaults(&c);
	char err[256];
	c.kernel_path = strdup("/k");
	c.api_sock = malloc(200);
	memset(c.api_sock, 'a', 199);
	c.api_sock[199] = 0;
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "--api-sock (\"api_sock\")"));
	free(c.api_sock);
	c.api_sock = NULL;
	c.name = strdup("bad name!");
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a valid VM name"));
	config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_file_sets_every_field),
		cmocka_unit_test(test_absent_keys_keep_values_and_null_unsets),
		cmocka_unit_test(test_errors_name_the_key_and_the_expectation),
		cmocka_unit_test(test_dump_round_trips),
		cmocka_unit_test(test_load_file_refuses_what_is_not_a_regular_file),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_validate_names_both_spellings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
