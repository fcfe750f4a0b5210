/* The API's routes as a client sees them: status codes, JSON bodies, and what happens to the VM. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>

#include "api/api_routes.h"
#include "api_fake_vm.h"
#include "devices/i8042.h"
#include "state/clone_identity.h"
#include "virtio/virtio_net.h"
#include "virtio/virtio_vsock.h"
#include "virtio_rig.h"

struct fixture {
	struct fake_vm f;
	struct api_ctx ctx;
};

static int setup_with(void **state, unsigned int ncpus, bool threads)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	fake_vm_init(&fx->f, ncpus, true, threads);
	api_ctx_init(&fx->ctx, &fx->f.vm);
	*state = fx;
	return 0;
}
static int setup(void **state) { return setup_with(state, 2, true); }

static int teardown(void **state)
{
	struct fixture *fx = *state;
	fake_vm_destroy(&fx->f);
	api_ctx_destroy(&fx->ctx);
	free(fx);
	return 0;
}

/* Sends one request; returns the parsed JSON body (or NULL) and the status in *status. */
static json_t *request(struct fixture *fx, const char *method, const char *path, const char *body, unsigned int *status)
{
	struct api_reply r;
	api_handle(&fx->ctx, method, path, body, body ? strlen(body) : 0, false, &r);
	*status = r.status;
	json_error_t jerr;
	json_t *o = json_loadb(r.body, r.len, 0, &jerr);
	free(r.body);
	return o;
}

static const char *str(json_t *o, const char *key) { return json_string_value(json_object_get(o, key)); }

static void test_get_vm_describes_the_vm(void **state)
{
	struct fixture *fx = *state;
	unsigned int st;
	json_t *o = request(fx, "GET", "/vm", NULL, &st);
	assert_int_equal(st, 200);
	assert_string_equal(str(o, "state"), "running");
	assert_int_equal(json_integer_value(json_object_get(o, "vcpus")), 2);
	assert_int_equal(json_integer_value(json_object_get(o, "memory_bytes")), 64 * MiB);
	assert_true(json_real_value(json_object_get(o, "uptime_s")) >= 0.0);
	assert_string_equal(str(json_object_get(o, "config"), "kernel"), "/boot/test-kernel");
	assert_null(json_object_get(o, "stop_reason"));
	assert_string_equal(str(o, "memory_backing"), "memfd");
	assert_int_equal(json_integer_value(json_object_get(o, "memory_page_bytes")), 4096);
	assert_null(json_object_get(o, "ksm")); /* only with merge=on */
	json_decref(o);

	o = request(fx, "GET", "/", NULL, &st);
	assert_int_equal(st, 200);
	assert_true(json_array_size(json_object_get(o, "routes")) >= 5);
	json_decref(o);
}

/* GET /vm shows the identity the devices hold: every card's MAC, the vsock CID, the generation ID. */
static void test_get_vm_shows_identity(void **state)
{
	struct fixture *fx = *state;
	struct platform *p = fx->f.vm.platform;
	unsigned int st;
	json_t *o = request(fx, "GET", "/vm", NULL, &st);
	json_t *id = json_object_get(o, "identity");
	assert_int_equal(st, 200);
	assert_int_equal(json_array_size(json_object_get(id, "macs")), 0);
	assert_true(json_is_null(json_object_get(id, "vsock_cid")));
	assert_true(json_is_null(json_object_get(id, "generation_id")));
	json_decref(o);

	struct vrig v;
	const struct vrig_spec spec = { .ram = 4u << 20, .device_id = VIRTIO_ID_NET, .queues = 2, .qsize = 16 };
	vrig_init(&v, &spec);
	struct net_backend be[2] = { { .ops = &vrig_null_net_ops }, { .ops = &vrig_null_net_ops } };
	const uint8_t mac0[6] = { 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc }, mac1[6] = { 0x02, 0x11, 0x22, 0x33, 0x44, 0x55 };
	assert_int_equal(virtio_net_create(&v.deps, mac0, &be[0], &p->net[0]), 0);
	assert_int_equal(virtio_net_create(&v.deps, mac0, &be[1], &p->net[1]), 0);
	p->nnets = 2;
	virtio_net_set_mac(p->net[1], mac1, 0); /* what a clone's restore does */
	char dir[] = "/tmp/vmon-api-id-XXXXXX", uds[64];
	assert_non_null(mkdtemp(dir));
	snprintf(uds, sizeof(uds), "%s/v.sock", dir);
	assert_int_equal(virtio_vsock_create(&v.deps, 70000, uds, &p->vsock), 0);
	const uint8_t genid[VMGENID_LEN] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0x4c, 0xde,
					     0x8f, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd };
	vmgenid_init(&p->vmgenid, LAYOUT_VMGENID, (struct irq_line){ 0 });
	assert_int_equal(vmgenid_set(&p->vmgenid, &v.mem, genid), 0);

	o = request(fx, "GET", "/vm", NULL, &st);
	assert_int_equal(st, 200);
	id = json_object_get(o, "identity");
	json_t *macs = json_object_get(id, "macs");
	assert_int_equal(json_array_size(macs), 2);
	assert_string_equal(json_string_value(json_array_get(macs, 0)), "52:54:00:aa:bb:cc");
	assert_string_equal(json_string_value(json_array_get(macs, 1)), "02:11:22:33:44:55");
	assert_int_equal(json_integer_value(json_object_get(id, "vsock_cid")), 70000);
	assert_string_equal(str(id, "generation_id"), "01234567-89ab-4cde-8f01-23456789abcd");
	json_decref(o);

	virtio_vsock_destroy(p->vsock);
	virtio_net_destroy(p->net[0]);
	virtio_net_destroy(p->net[1]);
	p->vsock = NULL;
	p->nnets = 0;
	vrig_free(&v);
	rmdir(dir);
}

/* --memory SIZE,merge=on: GET /vm says so and gives this process's KSM figures. */
static void test_get_vm_reports_ksm_with_merge_on(void **state)
{
	struct fixture *fx = *state;
	char err[256];
	assert_int_equal(guest_mem_init_backed(&fx->f.vm.mem, 16 * MiB, GUEST_MEM_MERGEABLE, err, sizeof(err)), 0);
	fx->f.cfg.memory_merge = true;
	unsigned int st;
	json_t *o = request(fx, "GET", "/vm", NULL, &st);
	assert_int_equal(st, 200);
	assert_string_equal(str(o, "memory_backing"), "merge");
	assert_true(json_is_true(json_object_get(json_object_get(json_object_get(o, "config"), "memory"), "merge")));
	json_t *ksm = json_object_get(o, "ksm");
	assert_true(json_is_integer(json_object_get(ksm, "merging_pages")));
	assert_true(json_is_integer(json_object_get(ksm, "profit_bytes")));
	json_decref(o);
	guest_mem_destroy(&fx->f.vm.mem);
}

static void test_pause_stops_progress_and_resume_continues(void **state)
{
	struct fixture *fx = *state;
	unsigned int st;
	json_t *o = request(fx, "PUT", "/vm/state", "{\"state\": \"paused\"}", &st);
	assert_int_equal(st, 200);
	assert_string_equal(str(o, "state"), "paused");
	json_decref(o);
	uint64_t before = fake_progress(&fx->f);
	sleep_ms(50);
	assert_int_equal(fake_progress(&fx->f), before);

	/* Pausing again is not an error. */
	o = request(fx, "PUT", "/vm/state", "{\"state\": \"paused\"}", &st);
	assert_int_equal(st, 200);
	json_decref(o);

	o = request(fx, "PUT", "/vm/state", "{\"state\":\"running\"}", &st);
	assert_int_equal(st, 200);
	assert_string_equal(str(o, "state"), "running");
	json_decref(o);
	sleep_ms(50);
	assert_true(fake_progress(&fx->f) > before);
}

static void test_bad_input_gets_the_right_status_and_names_the_problem(void **state)
{
	struct fixture *fx = *state;
	static const struct {
		const char *method, *path, *body;
		unsigned int status;
		const char *want;
	} cases[] = {
		{ "PUT", "/vm/state", "{\"state\": ", 400, "malformed JSON in the body of PUT /vm/state at line 1" },
		{ "PUT", "/vm/state", "\"paused\"", 400, "must be a JSON object" },
		{ "PUT", "/vm/state", "", 400, "needs a JSON body" },
		{ "PUT", "/vm/state", " \n", 400, "needs a JSON body" },
		{ "PUT", "/vm/state", "{}", 400, "needs the key \"state\"" },
		{ "PUT", "/vm/state", "{\"state\": \"paused\", \"now\": true}", 400, "unknown key \"now\"" },
		{ "PUT", "/vm/state", "{\"state\": true}", 400, "\"state\" must be a string" },
		{ "PUT", "/vm/state", "{\"state\": \"asleep\"}", 400, "not \"asleep\"" },
		{ "PUT", "/vm/state", "{\"state\": \"paused\", \"state\": \"paused\"}", 400, "duplicate" },
		{ "PUT", "/vm/shutdown", "{\"timeout_s\": 1.5}", 400, "\"timeout_s\" must be a whole number" },
		{ "PUT", "/vm/shutdown", "{\"timeout_s\": 99999}", 400, "out of range" },
		{ "PUT", "/vm/shutdown", "{\"delay\": 1}", 400, "it takes only \"timeout_s\"" },
		{ "PUT", "/vm/stop", "{\"now\": 1}", 400, "it takes no keys" },
		{ "GET", "/vms", NULL, 404, "no such route: GET /vms; the routes are GET /vm" },
		{ "DELETE", "/vm", NULL, 405, "DELETE is not allowed on /vm: use GET" },
		{ "POST", "/metrics", NULL, 405, "use GET" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned int st;
		json_t *o = request(fx, cases[i].method, cases[i].path, cases[i].body, &st);
		const char *err = str(o, "error");
		if (st != cases[i].status || !err || !strstr(err, cases[i].want))
			fail_msg("%s %s '%s': got %u '%s', want %u '%s'", cases[i].method, cases[i].path,
				 cases[i].body ? cases[i].body : "", st, err ? err : "(no error)", cases[i].status, cases[i].want);
		json_decref(o);
	}
	/* None of it touched the VM. */
	assert_int_equal(atomic_load(&fx->f.vm.state), VM_RUNNING);
	assert_int_equal(atomic_load(&fx->ctx.client_errors), sizeof(cases) / sizeof(cases[0]));
}

static void test_405_has_allow_and_413_for_big_bodies(void **state)
{
	struct fixture *fx = *state;
	struct api_reply r;
	api_handle(&fx->ctx, "GET", "/vm/stop", NULL, 0, false, &r);
	assert_int_equal(r.status, 405);
	assert_string_equal(r.allow, "PUT");
	free(r.body);
	api_handle(&fx->ctx, "PUT", "/vm/state", "{", 1, true, &r);
	assert_int_equal(r.status, 413);
	free(r.body);
	api_handle(&fx->ctx, "HEAD", "/metrics", NULL, 0, false, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.content_type, "text/plain"));
	free(r.body);
}

static void test_stop_while_paused(void **state)
{
	struct fixture *fx = *state;
	unsigned int st;
	json_decref(request(fx, "PUT", "/vm/state", "{\"state\": \"paused\"}", &st));
	assert_int_equal(st, 200);
	json_t *o = request(fx, "PUT", "/vm/stop", NULL, &st);
	assert_int_equal(st, 200);
	assert_string_equal(str(o, "state"), "stopped");
	json_decref(o);
	/* The parked vCPUs leave: joining them does not hang. */
	for (unsigned int i = 0; i < fx->f.vm.ncpus; i++)
		pthread_join(fx->f.threads[i], NULL);
	fx->f.threads_started = false;
	assert_string_equal(fx->f.vm.stop_message, "stopped through the API (PUT /vm/stop)");

	/* Afterwards: stop again is fine, pause and shutdown are conflicts. */
	json_decref(request(fx, "PUT", "/vm/stop", "{}", &st));
	assert_int_equal(st, 200);
	o = request(fx, "PUT", "/vm/state", "{\"state\": \"paused\"}", &st);
	assert_int_equal(st, 409);
	assert_non_null(strstr(str(o, "error"), "has stopped"));
	json_decref(o);
	o = request(fx, "PUT", "/vm/shutdown", NULL, &st);
	assert_int_equal(st, 409);
	json_decref(o);
	o = request(fx, "GET", "/vm", NULL, &st);
	assert_string_equal(str(o, "stop_reason"), "signal");
	json_decref(o);
}

static void test_shutdown_types_ctrl_alt_del_then_stops_at_the_timeout(void **state)
{
	struct fixture *fx = *state;
	unsigned int st;
	json_t *o = request(fx, "PUT", "/vm/shutdown", "{\"timeout_s\": 1}", &st);
	assert_int_equal(st, 202);
	assert_int_equal(json_integer_value(json_object_get(o, "timeout_s")), 1);
	assert_non_null(strstr(str(o, "message"), "Ctrl-Alt-Del sent"));
	json_decref(o);
	struct platform *p = fx->f.vm.platform;
	/* The translated set-1 sequence is waiting on the keyboard: Ctrl first. */
	uint8_t b = 0;
	i8042_ops.read(&p->i8042, 0, &b, 1);
	assert_int_equal(b, 0x1d);
	assert_int_equal(atomic_load(&p->i8042.keys_injected), 8);

	/* A second request changes nothing. */
	o = request(fx, "PUT", "/vm/shutdown", "{\"timeout_s\": 100}", &st);
	assert_int_equal(st, 202);
	assert_int_equal(json_integer_value(json_object_get(o, "timeout_s")), 1);
	json_decref(o);

	/* This "guest" ignores the keys: the watchdog stops it after a second. */
	uint64_t deadline = monotonic_ns() + 5000000000ULL;
	while (atomic_load(&fx->f.vm.state) != VM_STOPPED && monotonic_ns() < deadline)
		sleep_ms(20);
	assert_int_equal(atomic_load(&fx->f.vm.state), VM_STOPPED);
	assert_non_null(strstr(fx->f.vm.stop_message, "did not shut down within 1 s"));
}

static void test_shutdown_resumes_a_paused_vm(void **state)
{
	struct fixture *fx = *state;
	unsigned int st;
	json_decref(request(fx, "PUT", "/vm/state", "{\"state\": \"paused\"}", &st));
	json_t *o = request(fx, "PUT", "/vm/shutdown", NULL, &st);
	assert_int_equal(st, 202);
	assert_string_equal(str(o, "state"), "running");
	assert_int_equal(json_integer_value(json_object_get(o, "timeout_s")), API_DEFAULT_SHUTDOWN_TIMEOUT_S);
	json_decref(o);
	/* Teardown must not wait 30 s for the watchdog: api_ctx_destroy cancels it. */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_get_vm_describes_the_vm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_vm_shows_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_vm_reports_ksm_with_merge_on, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_stops_progress_and_resume_continues, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_input_gets_the_right_status_and_names_the_problem, setup, teardown),
		cmocka_unit_test_setup_teardown(test_405_has_allow_and_413_for_big_bodies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_while_paused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_types_ctrl_alt_del_then_stops_at_the_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_resumes_a_paused_vm, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
