/* --disk values and the "disks" key of the JSON config, both ways. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "config/config_disk.h"
#include "config/config_json.h"

static void parses_the_option(void **state)
{
	(void)state;
	struct disk_config d;
	char err[256];
	assert_int_equal(config_disk_parse("/img/a.raw", &d, err, sizeof(err)), 0);
	assert_string_equal(d.path, "/img/a.raw");
	assert_false(d.readonly);
	assert_null(d.serial);
	config_disk_free(&d);

	assert_int_equal(config_disk_parse("b.img,serial=data-1,readonly", &d, err, sizeof(err)), 0);
	assert_string_equal(d.path, "b.img");
	assert_true(d.readonly);
	assert_string_equal(d.serial, "data-1");
	config_disk_free(&d);

	assert_int_equal(config_disk_parse("c.img,serial=12345678901234567890", &d, err, sizeof(err)), 0);
	assert_int_equal(d.format, DISK_FORMAT_AUTO); /* probed when opened */
	config_disk_free(&d);

	assert_int_equal(config_disk_parse("vm.qcow2,format=qcow2", &d, err, sizeof(err)), 0);
	assert_int_equal(d.format, DISK_FORMAT_QCOW2);
	config_disk_free(&d);
	assert_int_equal(config_disk_parse("vm.img,format=raw,readonly", &d, err, sizeof(err)), 0);
	assert_int_equal(d.format, DISK_FORMAT_RAW);
	assert_true(d.readonly);
	config_disk_free(&d);
}

static void refuses_bad_values(void **state)
{
	(void)state;
	static const struct {
		const char *spec, *want;
	} cases[] = {
		{ "", "needs an image path" },
		{ ",readonly", "needs an image path" },
		{ "a.img,ro", "unknown setting" },
		{ "a.img,serial=", "serial=" },
		{ "a.img,serial=123456789012345678901", "1 to 20 printable ASCII" },
		{ "a.img,serial=tab\there", "printable" },
		{ "a.img,format=vmdk", "the formats are raw and qcow2" },
		{ "a.img,format=", "the formats are raw and qcow2" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct disk_config d;
		char err[256] = "";
		if (config_disk_parse(cases[i].spec, &d, err, sizeof(err)) != -EINVAL)
			fail_msg("'%s' was accepted", cases[i].spec);
		if (!strstr(err, cases[i].want))
			fail_msg("'%s': message '%s' lacks '%s'", cases[i].spec, err, cases[i].want);
		assert_null(d.path);
	}
}

static void validation_catches_the_same_image_twice(void **state)
{
	(void)state;
	struct vm_config c;
	config_init_defaults(&c);
	c.kernel_path = strdup("/k");
	char err[256];
	assert_int_equal(config_disk_parse("a.img", &c.disks[0], err, sizeof(err)), 0);
	assert_int_equal(config_disk_parse("b.img,readonly", &c.disks[1], err, sizeof(err)), 0);
	c.ndisks = 2;
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	assert_int_equal(config_disk_parse("a.img,readonly", &c.disks[2], err, sizeof(err)), 0);
	c.ndisks = 3;
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "a.img is given twice"));
	config_free(&c);
}

static void json_round_trip(void **state)
{
	(void)state;
	struct vm_config a, b;
	config_init_defaults(&a);
	config_init_defaults(&b);
	char err[256];
	assert_int_equal(config_json_apply_text(&a,
						"{\"kernel\": \"/k\", \"disks\": [{\"path\": \"root.img\"}, "
						"{\"path\": \"data.img\", \"readonly\": true, \"serial\": \"d1\", "
						"\"format\": \"qcow2\"}]}",
						"test", err, sizeof(err)),
			 0);
	assert_int_equal(a.ndisks, 2);
	assert_string_equal(a.disks[0].path, "root.img");
	assert_false(a.disks[0].readonly);
	assert_null(a.disks[0].serial);
	assert_true(a.disks[1].readonly);
	assert_string_equal(a.disks[1].serial, "d1");
	json_t *o = config_json_dump(&a);
	assert_non_null(o);
	assert_int_equal(config_json_apply(&b, o, err, sizeof(err)), 0);
	json_decref(o);
	assert_int_equal(b.ndisks, 2);
	assert_string_equal(b.disks[1].path, "data.img");
	assert_true(b.disks[1].readonly);
	assert_string_equal(b.disks[1].serial, "d1");
	assert_int_equal(b.disks[1].format, DISK_FORMAT_QCOW2);
	assert_int_equal(b.disks[0].format, DISK_FORMAT_AUTO);
	/* A later list replaces the earlier one. */
	assert_int_equal(config_json_apply_text(&b, "{\"disks\": []}", "test", err, sizeof(err)), 0);
	assert_int_equal(b.ndisks, 0);
	config_free(&a);
	config_free(&b);
}

static void json_errors_name_the_key(void **state)
{
	(void)state;
	static const struct {
		const char *json, *want;
	} cases[] = {
		{ "{\"disks\": \"a.img\"}", "expected an array" },
		{ "{\"disks\": [\"a.img\"]}", "must be an object" },
		{ "{\"disks\": [{}]}", "has no \"path\"" },
		{ "{\"disks\": [{\"path\": \"\"}]}", "non-empty string" },
		{ "{\"disks\": [{\"path\": \"a\", \"readonly\": \"yes\"}]}", "true or false" },
		{ "{\"disks\": [{\"path\": \"a\", \"serial\": 5}]}", "\"serial\"" },
		{ "{\"disks\": [{\"path\": \"a\", \"ro\": true}]}", "unknown key \"ro\"" },
		{ "{\"disks\": [{\"path\": \"a\", \"format\": \"vmdk\"}]}", "\"raw\" or \"qcow2\"" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vm_config c;
		config_init_defaults(&c);
		char err[512] = "";
		if (config_json_apply_text(&c, cases[i].json, "test", err, sizeof(err)) != -EINVAL)
			fail_msg("%s was accepted", cases[i].json);
		if (!strstr(err, cases[i].want) || !strstr(err, "disks"))
			fail_msg("%s: message '%s' lacks '%s' or the key", cases[i].json, err, cases[i].want);
		assert_int_equal(c.ndisks, 0);
		config_free(&c);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parses_the_option),
		cmocka_unit_test(refuses_bad_values),
		cmocka_unit_test(validation_catches_the_same_image_twice),
		cmocka_unit_test(json_round_trip),
		cmocka_unit_test(json_errors_name_the_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
