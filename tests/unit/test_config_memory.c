/* --memory SIZE[,merge=on][,hugepages=on] and "memory" in the JSON config: what a user writes and gets. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config_json.h"
#include "config/config_memory.h"
#include "lib/util.h"

static void sizes_and_settings_are_parsed(void **state)
{
	(void)state;
	struct vm_config c;
	config_init_defaults(&c);
	char err[256] = "";
	assert_false(c.memory_merge);
	assert_false(c.memory_hugepages);
	assert_int_equal(config_memory_parse("512M,merge=on", &c, err, sizeof(err)), 0);
	assert_int_equal(c.memory, 512 * MiB);
	assert_true(c.memory_merge);
	assert_false(c.memory_hugepages);
	/* A later --memory (after the config file's) changes only what it names. */
	assert_int_equal(config_memory_parse("1G", &c, err, sizeof(err)), 0);
	assert_int_equal(c.memory, GiB);
	assert_true(c.memory_merge);
	assert_int_equal(config_memory_parse("2G,merge=off,hugepages=on", &c, err, sizeof(err)), 0);
	assert_int_equal(c.memory, 2 * GiB);
	assert_false(c.memory_merge);
	assert_true(c.memory_hugepages);
	assert_int_equal(config_validate(&(struct vm_config){ .kernel_path = "/k", .cpus = 1, .memory = c.memory,
							      .memory_hugepages = true },
					 err, sizeof(err)),
			 0);
	config_free(&c);
}

static void bad_values_say_what_is_wrong_and_change_nothing(void **state)
{
	(void)state;
	static const struct {
		const char *spec, *says;
	} cases[] = {
		{ "512M,merge=yes", "--memory: merge takes on or off, not 'yes'" },
		{ "512M,hugepages", "--memory: hugepages takes on or off, not ''" },
		{ "512M,sharing=on", "--memory: unknown setting 'sharing'; use --memory SIZE[,merge=on|off][,hugepages=on|off]" },
		{ "merge=on", "--memory: 'merge=on' is not a size: give e.g. 256M or 2G, then any of merge=on, hugepages=on" },
		/* getopt hands the next word to --memory: it must not pass for a value. */
		{ "--disk", "--memory: '--disk' is not a size: give e.g. 256M or 2G, then any of merge=on, hugepages=on" },
		{ "", "--memory: '' is not a size" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct vm_config c;
		config_init_defaults(&c);
		uint64_t before = c.memory;
		char err[256] = "";
		assert_int_equal(config_memory_parse(cases[i].spec, &c, err, sizeof(err)), -EINVAL);
		if (strncmp(err, cases[i].says, strlen(cases[i].says)))
			fail_msg("%s: got '%s', want '%s'", cases[i].spec, err, cases[i].says);
		assert_int_equal(c.memory, before);
		assert_false(c.memory_merge || c.memory_hugepages);
		config_free(&c);
	}
}

static void merge_and_hugepages_together_are_refused(void **state)
{
	(void)state;
	struct vm_config c;
	config_init_defaults(&c);
	c.kernel_path = strdup("/k");
	char err[256] = "";
	assert_int_equal(config_memory_parse("1G,merge=on,hugepages=on", &c, err, sizeof(err)), 0);
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "--memory (\"memory\"): merge=on and hugepages=on cannot be combined: the host's KSM "
				 "never merges hugetlbfs pages; choose one");
	config_free(&c);
}

static int apply(struct vm_config *c, const char *json, char *err, size_t len)
{
	return config_json_apply_text(c, json, "vm.json", err, len);
}

static void json_takes_a_number_a_string_or_an_object(void **state)
{
	(void)state;
	struct vm_config c;
	config_init_defaults(&c);
	char err[512] = "";
	assert_int_equal(apply(&c, "{\"memory\": \"1G,hugepages=on\"}", err, sizeof(err)), 0);
	assert_int_equal(c.memory, GiB);
	assert_true(c.memory_hugepages);
	assert_int_equal(apply(&c, "{\"memory\": {\"size\": \"256M\", \"merge\": true}}", err, sizeof(err)), 0);
	assert_int_equal(c.memory, 256 * MiB);
	assert_true(c.memory_merge);
	assert_false(c.memory_hugepages); /* a JSON value says all of it */
	assert_int_equal(apply(&c, "{\"memory\": {\"size\": 134217728, \"hugepages\": true}}", err, sizeof(err)), 0);
	assert_int_equal(c.memory, 128 * MiB);
	assert_false(c.memory_merge);
	assert_true(c.memory_hugepages);
	assert_int_equal(apply(&c, "{\"memory\": 67108864}", err, sizeof(err)), 0);
	assert_int_equal(c.memory, 64 * MiB);
	assert_false(c.memory_merge || c.memory_hugepages);
	/* The combination is refused from the config file as from the command line. */
	c.kernel_path = strdup("/k");
	assert_int_equal(apply(&c, "{\"memory\": {\"size\": \"1G\", \"merge\": true, \"hugepages\": true}}", err,
			       sizeof(err)),
			 0);
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "cannot be combined: the host's KSM never merges hugetlbfs pages"));
	config_free(&c);
}

static void json_errors_name_the_key(void **state)
{
	(void)state;
	static const struct {
		const char *json, *says;
	} cases[] = {
		{ "{\"memory\": {\"merge\": true}}", "vm.json: key \"memory\": the object needs \"size\"" },
		{ "{\"memory\": {\"size\": \"1G\", \"merge\": \"on\"}}",
		  "vm.json: key \"memory\".\"merge\": expected true or false, got a string" },
		{ "{\"memory\": {\"size\": \"1G\", \"ksm\": true}}",
		  "vm.json: unknown key \"ksm\" in \"memory\": the keys are size, merge, hugepages" },
		{ "{\"memory\": {\"size\": -1}}", "vm.json: key \"memory\".\"size\": -1 bytes is impossible" },
		{ "{\"memory\": \"1G,merge=maybe\"}", "vm.json: key \"memory\": merge takes on or off, not 'maybe'" },
		{ "{\"memory\": \"lots,merge=on\"}", "vm.json: key \"memory\": 'lots' is not a size" },
		{ "{\"memory\": [1]}", "vm.json: key \"memory\": expected a size such as \"256M\", a number of bytes or an "
				       "object" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct vm_config c;
		config_init_defaults(&c);
		char err[512] = "";
		assert_int_equal(apply(&c, cases[i].json, err, sizeof(err)), -EINVAL);
		if (strncmp(err, cases[i].says, strlen(cases[i].says)))
			fail_msg("%s: got '%s', want '%s'", cases[i].json, err, cases[i].says);
		config_free(&c);
	}
}

/* The dump loads back the same; without settings it stays the plain number older readers know. */
static void dump_round_trips(void **state)
{
	(void)state;
	struct vm_config a, b;
	config_init_defaults(&a);
	json_t *plain = config_memory_to_json(&a);
	assert_true(json_is_integer(plain));
	assert_int_equal(config_memory_size_of_json(plain), a.memory);
	json_decref(plain);

	a.memory = 768 * MiB;
	a.memory_hugepages = true;
	json_t *o = config_json_dump(&a);
	assert_non_null(o);
	json_t *m = json_object_get(o, "memory");
	assert_true(json_is_object(m));
	assert_int_equal(config_memory_size_of_json(m), 768 * MiB);
	config_init_defaults(&b);
	char err[256];
	assert_int_equal(config_json_apply(&b, o, err, sizeof(err)), 0);
	assert_int_equal(b.memory, 768 * MiB);
	assert_true(b.memory_hugepages);
	assert_false(b.memory_merge);
	json_decref(o);
	config_free(&a);
	config_free(&b);
}

/* vmon run with argv; returns its exit status and what it wrote on stderr. */
static int run_cli(char **argv, int argc, char *out, size_t outlen)
{
	char path[] = "/tmp/vmon-test-cli-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	int status = cli_run(argc, argv);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	ssize_t n = pread(fd, out, outlen - 1, 0);
	out[n > 0 ? n : 0] = 0;
	close(fd);
	unlink(path);
	return status;
}

static void the_command_line_refuses_before_starting_anything(void **state)
{
	(void)state;
	char out[1024];
	char *both[] = { "run", "--kernel", "/nonexistent", "--memory", "1G,merge=on,hugepages=on", NULL };
	assert_int_equal(run_cli(both, 5, out, sizeof(out)), EXIT_USAGE);
	assert_string_equal(out, "vmon: --memory (\"memory\"): merge=on and hugepages=on cannot be combined: the host's "
				 "KSM never merges hugetlbfs pages; choose one\n");
	char *swallow[] = { "run", "--kernel", "/nonexistent", "--memory", "--disk", "x.img", NULL };
	assert_int_equal(run_cli(swallow, 6, out, sizeof(out)), EXIT_USAGE);
	assert_string_equal(out, "vmon: --memory: '--disk' is not a size: give e.g. 256M or 2G, then any of merge=on, "
				 "hugepages=on\n");
	char *odd[] = { "run", "--kernel", "/nonexistent", "--memory", "33M,hugepages=on", NULL };
	assert_int_equal(run_cli(odd, 5, out, sizeof(out)), EXIT_USAGE);
	assert_string_equal(out, "vmon: --memory (\"memory\") must be a multiple of 2M (e.g. 256M, 1G)\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sizes_and_settings_are_parsed),
		cmocka_unit_test(bad_values_say_what_is_wrong_and_change_nothing),
		cmocka_unit_test(merge_and_hugepages_together_are_refused),
		cmocka_unit_test(json_takes_a_number_a_string_or_an_object),
		cmocka_unit_test(json_errors_name_the_key),
		cmocka_unit_test(dump_round_trips),
		cmocka_unit_test(the_command_line_refuses_before_starting_anything),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
