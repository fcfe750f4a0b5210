/* Size parsing and configuration validation: what a user typing options sees. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "config/config.h"
#include "lib/util.h"

static void sizes_parse_like_users_write_them(void **state)
{
	(void)state;
	uint64_t v;
	assert_int_equal(parse_size("256M", &v), 0);
	assert_int_equal(v, 256 * MiB);
	assert_int_equal(parse_size("2G", &v), 0);
	assert_int_equal(v, 2 * GiB);
	assert_int_equal(parse_size("2GiB", &v), 0);
	assert_int_equal(v, 2 * GiB);
	assert_int_equal(parse_size("64k", &v), 0);
	assert_int_equal(v, 64 * KiB);
	assert_int_equal(parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(parse_size("", &v), -EINVAL);
	assert_int_equal(parse_size("M", &v), -EINVAL);
	assert_int_equal(parse_size("-1G", &v), -EINVAL);
	assert_int_equal(parse_size("12X", &v), -EINVAL);
	assert_int_equal(parse_size("1G2", &v), -EINVAL);
	assert_int_equal(parse_size("99999999999999999999", &v), -ERANGE);
	assert_int_equal(parse_size("99999999999T", &v), -ERANGE);
}

static void validation_names_the_problem(void **state)
{
	(void)state;
	struct vm_config c;
	char err[256];
	config_init_defaults(&c);
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "--kernel"));

	c.kernel_path = strdup("/boot/vmlinuz");
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);

	c.cpus = 0;
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "--cpus"));
	c.cpus = 255;
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	c.cpus = 4;

	c.memory = 1 * MiB;
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "--memory"));
	c.memory = 100 * MiB + 4096;
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "2M"));
	c.memory = 2048ULL * GiB;
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sizes_parse_like_users_write_them),
		cmocka_unit_test(validation_names_the_problem),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
