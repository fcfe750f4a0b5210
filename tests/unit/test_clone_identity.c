/* A clone's identity: MAC addresses, the vsock CID choice against the registry, what restore rewrites. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_net.h"
#include "config/config_sockets.h"
#include "lib/util.h"
#include "state/clone_identity.h"
#include "vm/registry.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/vmon-clone-id.XXXXXX");
	assert_non_null(mkdtemp(dir));
	setenv("VMON_RUNTIME_DIR", dir, 1);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	unsetenv("VMON_RUNTIME_DIR");
	return 0;
}

static bool la_unicast(const uint8_t mac[6]) { return (mac[0] & 0x03) == 0x02; }

static void test_mac_is_locally_administered_unicast(void **state)
{
	(void)state;
	for (unsigned int b = 0; b < 256; b++) {
		uint8_t rnd[6] = { (uint8_t)b, 1, 2, 3, 4, 5 }, mac[6];
		clone_mac_from_random(rnd, mac);
		assert_true(la_unicast(mac));
		assert_int_equal(mac[0] & 0xfc, b & 0xfc); /* the other bits stay random */
		assert_memory_equal(mac + 1, rnd + 1, 5);
	}
	/* Different every time, and each one a valid --net mac= value. */
	enum { N = 64 };
	uint8_t macs[N][6];
	for (int i = 0; i < N; i++) {
		assert_int_equal(clone_mac_generate(macs[i]), 0);
		assert_true(la_unicast(macs[i]));
		for (int j = 0; j < i; j++)
			assert_memory_not_equal(macs[i], macs[j], 6);
	}
	char text[18];
	clone_mac_format(macs[0], text);
	assert_int_equal(strlen(text), 17);
}

static void test_net_spec_gets_the_new_mac(void **state)
{
	(void)state;
	const uint8_t mac[6] = { 0x02, 0xab, 0xcd, 0x00, 0x01, 0xff };
	const char *specs[] = { "user", "tap=tap0,mac=52:54:00:12:34:56",
				"user,mac=52:54:00:12:34:56,hostfwd=tcp:8080-:80,host-loopback=on" };
	for (size_t i = 0; i < ARRAY_SIZE(specs); i++) {
		char *s = clone_net_spec_with_mac(specs[i], mac);
		assert_non_null(s);
		struct net_spec ns;
		char err[256];
		assert_int_equal(config_net_parse(s, &ns, err, sizeof(err)), 0);
		assert_true(ns.has_mac);
		assert_memory_equal(ns.mac, mac, 6);
		assert_null(strstr(s, "52:54:00:12:34:56"));
		if (i == 2) {
			assert_int_equal(ns.nfwd, 1);
			assert_true(ns.host_loopback);
		}
		free(s);
	}
}

static void test_cid_choice(void **state)
{
	(void)state;
	/* In range whatever the random number. */
	const uint64_t rnds[] = { 0, 1, UINT64_MAX, 0xfffeffffull, 123456789 };
	for (size_t i = 0; i < ARRAY_SIZE(rnds); i++) {
		uint32_t c = clone_cid_choose(rnds[i], NULL, 0);
		assert_true(c >= CLONE_CID_MIN && c <= CLONE_CID_MAX);
	}
	assert_int_equal(clone_cid_choose(0, NULL, 0), CLONE_CID_MIN);
	/* A CID in use is skipped, also several in a row, and the search wraps at the top. */
	const uint32_t used[] = { CLONE_CID_MIN, CLONE_CID_MIN + 1, CLONE_CID_MAX };
	assert_int_equal(clone_cid_choose(0, used, 3), CLONE_CID_MIN + 2);
	uint64_t top = (uint64_t)CLONE_CID_MAX - CLONE_CID_MIN;
	assert_int_equal(clone_cid_choose(top, used, 3), CLONE_CID_MIN + 2);
}

static void register_vm(const char *vsock, char *path, size_t len)
{
	struct vm_config cfg;
	config_init_defaults(&cfg);
	cfg.kernel_path = strdup("/k");
	cfg.vsock = vsock ? strdup(vsock) : NULL;
	assert_int_equal(registry_register(&cfg, path, len), 0);
	config_free(&cfg);
}

/* The CIDs of running VMs come from the registry, and picked CIDs avoid them and each other. */
static void test_cids_avoid_running_vms(void **state)
{
	(void)state;
	char path[4096];
	register_vm("cid=70000,uds=/tmp/x.sock", path, sizeof(path));
	uint32_t *inuse;
	int n = clone_cids_in_use(&inuse);
	assert_int_equal(n, 1);
	assert_int_equal(inuse[0], 70000);
	free(inuse);
	uint32_t cids[16];
	assert_int_equal(clone_cids_pick(cids, 16), 0);
	for (int i = 0; i < 16; i++) {
		assert_int_not_equal(cids[i], 70000);
		assert_true(cids[i] >= CLONE_CID_MIN);
		for (int j = 0; j < i; j++)
			assert_int_not_equal(cids[i], cids[j]);
	}
	registry_unregister(path);
}

static void cfg_with_devices(struct vm_config *cfg)
{
	config_init_defaults(cfg);
	cfg->kernel_path = strdup("/k");
	cfg->nets[0] = strdup("user,mac=52:54:00:12:34:56");
	cfg->nets[1] = strdup("user");
	cfg->nnets = 2;
	cfg->vsock = strdup("cid=5,uds=/tmp/guest.sock");
}

static void test_clone_gets_new_macs_and_cid(void **state)
{
	(void)state;
	struct vm_config cfg;
	cfg_with_devices(&cfg);
	struct clone_identity id;
	char err[256];
	assert_int_equal(clone_identity_choose(&id, &cfg, true, NULL, false, err, sizeof(err)), 0);
	assert_true(id.clone);
	assert_int_equal(id.nmacs, 2);
	assert_memory_not_equal(id.macs[0], id.macs[1], 6);
	for (int i = 0; i < 2; i++) {
		struct net_spec ns;
		assert_int_equal(config_net_parse(cfg.nets[i], &ns, err, sizeof(err)), 0);
		assert_memory_equal(ns.mac, id.macs[i], 6); /* the registry and GET /vm's config show it */
		assert_true(la_unicast(ns.mac));
	}
	assert_true(id.has_cid);
	assert_true(id.cid >= CLONE_CID_MIN);
	struct vsock_spec vs;
	assert_int_equal(config_vsock_parse(cfg.vsock, &vs, err, sizeof(err)), 0);
	assert_int_equal(vs.cid, id.cid);
	char want[128];
	snprintf(want, sizeof(want), "/tmp/guest.sock.%u", id.cid);
	assert_string_equal(vs.uds, want); /* its own socket: clones do not take each other's */
	config_free(&cfg);
}

static void test_user_choices_and_plain_restore(void **state)
{
	(void)state;
	struct vm_config cfg;
	cfg_with_devices(&cfg);
	struct clone_identity id, id2;
	char err[256];
	/* A plain restore keeps MAC and CID but gets a new generation ID. */
	assert_int_equal(clone_identity_choose(&id, &cfg, false, NULL, false, err, sizeof(err)), 0);
	assert_false(id.clone);
	assert_string_equal(cfg.nets[0], "user,mac=52:54:00:12:34:56");
	assert_string_equal(cfg.vsock, "cid=5,uds=/tmp/guest.sock");
	assert_int_equal(clone_identity_choose(&id2, &cfg, false, NULL, false, err, sizeof(err)), 0);
	assert_memory_not_equal(id.genid, id2.genid, VMGENID_LEN);
	/* --net with a mac= and --vsock given: the clone takes them. */
	const bool user_mac[CONFIG_MAX_NICS] = { true, true };
	assert_int_equal(clone_identity_choose(&id, &cfg, true, user_mac, true, err, sizeof(err)), 0);
	const uint8_t given[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
	assert_memory_equal(id.macs[0], given, 6);
	assert_true(la_unicast(id.macs[1])); /* no mac= in the second: generated */
	assert_int_equal(id.cid, 5);
	assert_string_equal(cfg.vsock, "cid=5,uds=/tmp/guest.sock");
	config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mac_is_locally_administered_unicast),
		cmocka_unit_test(test_net_spec_gets_the_new_mac),
		cmocka_unit_test(test_cid_choice),
		cmocka_unit_test_setup_teardown(test_cids_avoid_running_vms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clone_gets_new_macs_and_cid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_user_choices_and_plain_restore, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
