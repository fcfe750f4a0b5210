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
#include "virtio/virtio_net.h"
#include "vm/platform.h"
#include "vm/registry.h"
#include "vm/vm.h"

#include "virtio_rig.h"

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

/* ---- the identity applied to a restored VM's devices ---- */

struct irq_log {
	unsigned int n, gsi;
	int levels[4];
};

static void record_irq(void *opaque, unsigned int gsi, int level)
{
	struct irq_log *l = opaque;
	if (l->n < 4)
		l->levels[l->n] = level;
	l->gsi = gsi;
	l->n++;
}

struct restored {
	struct vrig v;
	struct net_backend be;
	struct platform p;
	struct vm vm;
	struct irq_log irqs;
};

/* A VM whose network card's state was just loaded from a snapshot, as snapshot_restore() leaves it. */
static void restored_vm(struct restored *r)
{
	memset(r, 0, sizeof(*r));
	const struct vrig_spec spec = { .ram = 4u << 20, .device_id = VIRTIO_ID_NET, .queues = 2, .qsize = 16 };
	vrig_init(&r->v, &spec);
	r->be.ops = &vrig_null_net_ops;
	const uint8_t saved_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
	assert_int_equal(virtio_net_create(&r->v.deps, saved_mac, &r->be, &r->p.net[0]), 0);
	r->p.nnets = 1;
	vrig_attach(&r->v);
	start_driver(&r->v, (1ull << VIRTIO_NET_F_MAC) | (1ull << VIRTIO_NET_F_STATUS));
	static uint8_t blob[1 << 16];
	long n = virtio_pci_save(virtio_net_vdev(r->p.net[0]), blob, sizeof(blob));
	assert_true(n > 0);
	assert_int_equal(virtio_pci_load(virtio_net_vdev(r->p.net[0]), blob, (size_t)n), 0);
	vmgenid_init(&r->p.vmgenid, LAYOUT_VMGENID,
		     (struct irq_line){ .set = record_irq, .opaque = &r->irqs, .gsi = LAYOUT_GED_GSI });
	r->vm.platform = &r->p;
	r->vm.mem = r->v.mem;
}

static void restored_free(struct restored *r)
{
	event_loop_stop(r->v.loop);
	virtio_net_destroy(r->p.net[0]);
	vrig_free(&r->v);
}

static void test_clone_identity_reaches_the_devices(void **state)
{
	(void)state;
	struct restored r;
	restored_vm(&r);
	struct clone_identity id = { .clone = true, .nmacs = 1, .macs = { { 0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee } } };
	assert_int_equal(vmgenid_generate(id.genid), 0);
	assert_int_equal(clone_identity_apply(&r.vm, &id), 0);
	/* The generation ID is in guest memory, and the guest was told with one edge on the event device. */
	uint8_t seen[VMGENID_LEN];
	assert_int_equal(guest_mem_read(&r.v.mem, LAYOUT_VMGENID, seen, sizeof(seen)), 0);
	assert_memory_equal(seen, id.genid, VMGENID_LEN);
	assert_int_equal(r.irqs.n, 2);
	assert_int_equal(r.irqs.gsi, LAYOUT_GED_GSI);
	assert_int_equal(r.irqs.levels[0], 1);
	assert_int_equal(r.irqs.levels[1], 0);
	/* The card shows the new MAC, its link down until the bounce brings it up again. */
	for (int i = 0; i < 6; i++)
		assert_int_equal(rd(&r.v, VIRTIO_PCI_DEVICE_OFF + (uint64_t)i, 1), id.macs[0][i]);
	assert_int_equal(rd(&r.v, VIRTIO_PCI_DEVICE_OFF + 6, 2), 0); /* down for CLONE_LINK_DOWN_MS */
	bool up = false;
	for (int i = 0; i < 3000 && !up; i++) {
		up = rd(&r.v, VIRTIO_PCI_DEVICE_OFF + 6, 2) == VIRTIO_NET_S_LINK_UP;
		if (!up)
			usleep(1000);
	}
	assert_true(up);
	/* GET /vm reads what the devices hold. */
	struct vm_identity now;
	vm_identity_read(&r.vm, &now);
	assert_int_equal(now.nmacs, 1);
	assert_memory_equal(now.macs[0], id.macs[0], 6);
	assert_true(now.has_genid);
	assert_memory_equal(now.genid, id.genid, VMGENID_LEN);
	assert_false(now.has_cid);
	restored_free(&r);
}

static void test_plain_restore_keeps_the_mac(void **state)
{
	(void)state;
	struct restored r;
	restored_vm(&r);
	struct clone_identity id = { .clone = false };
	assert_int_equal(vmgenid_generate(id.genid), 0);
	assert_int_equal(clone_identity_apply(&r.vm, &id), 0);
	assert_int_equal(rd(&r.v, VIRTIO_PCI_DEVICE_OFF + 5, 1), 0x56); /* the snapshot's MAC */
	assert_int_equal(rd(&r.v, VIRTIO_PCI_DEVICE_OFF + 6, 2), VIRTIO_NET_S_LINK_UP);
	assert_memory_equal(r.p.vmgenid.id, id.genid, VMGENID_LEN);
	assert_int_equal(r.irqs.n, 2);
	/* A guest booted without the device (an older snapshot) is left alone: no write, no interrupt. */
	r.p.vmgenid.present = false;
	r.irqs.n = 0;
	assert_int_equal(vmgenid_generate(id.genid), 0);
	assert_int_equal(clone_identity_apply(&r.vm, &id), 0);
	assert_int_equal(r.irqs.n, 0);
	assert_memory_not_equal(r.p.vmgenid.id, id.genid, VMGENID_LEN);
	restored_free(&r);
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
		cmocka_unit_test(test_clone_identity_reaches_the_devices),
		cmocka_unit_test(test_plain_restore_keeps_the_mac),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
