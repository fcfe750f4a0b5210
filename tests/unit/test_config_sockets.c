/* --console2 and --vsock: parsing, validation messages, and the JSON config round trip. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_json.h"
#include "config/config_sockets.h"

static void console2_takes_socket_or_file(void **state)
{
	(void)state;
	struct console2_spec cs;
	char err[256];
	assert_int_equal(config_console2_parse("socket=/run/vm.console", &cs, err, sizeof(err)), 0);
	assert_false(cs.is_file);
	assert_string_equal(cs.path, "/run/vm.console");
	assert_int_equal(config_console2_parse("file=/var/log/vm,1.log", &cs, err, sizeof(err)), 0);
	assert_true(cs.is_file);
	assert_string_equal(cs.path, "/var/log/vm,1.log"); /* the rest of the value is the path */
	assert_int_equal(cs.max_size, CONSOLE2_DEFAULT_MAX_SIZE);
	assert_int_equal(cs.max_size, 64u << 20);
	assert_int_equal(config_console2_parse("file=/var/log/vm,1.log,max_size=1M", &cs, err, sizeof(err)), 0);
	assert_string_equal(cs.path, "/var/log/vm,1.log");
	assert_int_equal(cs.max_size, 1u << 20);
	assert_int_equal(config_console2_parse("file=/vm.log,max_size=lots", &cs, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "max_size=lots is not a size"));
	assert_int_equal(config_console2_parse("file=/vm.log,max_size=0", &cs, err, sizeof(err)), -EINVAL);
	assert_int_equal(config_console2_parse("file=,max_size=4k", &cs, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "empty path"));

	assert_int_equal(config_console2_parse("tcp=1234", &cs, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "socket=PATH"));
	assert_int_equal(config_console2_parse("socket=", &cs, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "--console2"));
	char longpath[200];
	memset(longpath, 'a', sizeof(longpath));
	memcpy(longpath, "socket=/", 8);
	longpath[sizeof(longpath) - 1] = 0;
	assert_int_equal(config_console2_parse(longpath, &cs, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "shorter path"));
}

static void vsock_needs_a_guest_cid_and_a_socket(void **state)
{
	(void)state;
	struct vsock_spec vs;
	char err[256];
	assert_int_equal(config_vsock_parse("cid=3,uds=/tmp/v.sock", &vs, err, sizeof(err)), 0);
	assert_int_equal(vs.cid, 3);
	assert_string_equal(vs.uds, "/tmp/v.sock");
	assert_int_equal(config_vsock_parse("uds=/tmp/v.sock,cid=4294967294", &vs, err, sizeof(err)), 0);
	assert_int_equal(vs.cid, 4294967294u);

	const char *bad[] = { "cid=2,uds=/x", "cid=0,uds=/x", "cid=4294967295,uds=/x", "cid=-3,uds=/x", "cid=3x,uds=/x",
			      "cid=3", "uds=/x", "cid=3,uds=", "cid=3,uds=/x,port=5", "", "cid=3,,uds=/x" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		assert_int_equal(config_vsock_parse(bad[i], &vs, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "--vsock"));
	}
	/* Room must remain for "_<port>" in a sockaddr_un. */
	char spec[200] = "cid=3,uds=/";
	size_t n = strlen(spec);
	memset(spec + n, 'p', CONFIG_MAX_VSOCK_UDS);
	spec[n + CONFIG_MAX_VSOCK_UDS - 1] = 0; /* exactly the limit, with the leading '/' */
	assert_int_equal(config_vsock_parse(spec, &vs, err, sizeof(err)), 0);
	spec[n + CONFIG_MAX_VSOCK_UDS - 1] = 'p';
	spec[n + CONFIG_MAX_VSOCK_UDS] = 0;
	assert_int_equal(config_vsock_parse(spec, &vs, err, sizeof(err)), -EINVAL);
}

static void validate_and_json_use_the_same_strings(void **state)
{
	(void)state;
	struct vm_config cfg;
	config_init_defaults(&cfg);
	char err[400];
	assert_int_equal(config_json_apply_text(&cfg,
						"{\"kernel\": \"/k\", \"console2\": \"socket=/tmp/c.sock\", "
						"\"vsock\": \"cid=7,uds=/tmp/v.sock\"}",
						"test", err, sizeof(err)),
			 0);
	assert_int_equal(config_validate(&cfg, err, sizeof(err)), 0);
	json_t *o = config_json_dump(&cfg);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "console2")), "socket=/tmp/c.sock");
	assert_string_equal(json_string_value(json_object_get(o, "vsock")), "cid=7,uds=/tmp/v.sock");
	/* What the dump wrote reads back the same (snapshots store the configuration this way). */
	struct vm_config again;
	config_init_defaults(&again);
	char *text = json_dumps(o, 0);
	assert_int_equal(config_json_apply_text(&again, text, "dump", err, sizeof(err)), 0);
	assert_string_equal(again.vsock, cfg.vsock);
	assert_string_equal(again.console2, cfg.console2);
	free(text);
	json_decref(o);
	config_free(&again);

	free(cfg.vsock);
	cfg.vsock = strdup("cid=1,uds=/tmp/v.sock");
	assert_int_equal(config_validate(&cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "cid=1 is not a guest CID"));
	assert_int_equal(config_json_apply_text(&cfg, "{\"vsock\": 3}", "test", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "\"vsock\""));
	config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(console2_takes_socket_or_file),
		cmocka_unit_test(vsock_needs_a_guest_cid_and_a_socket),
		cmocka_unit_test(validate_and_json_use_the_same_strings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
