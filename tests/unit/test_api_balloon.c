/* GET/PUT /balloon and the balloon's metrics as a client sees them. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>

#include "api/api_metrics.h"
#include "api/api_routes.h"
#include "api_fake_vm.h"
#include "arch/x86/layout.h"
#include "lib/log.h"
#include "virtio/virtio_balloon.h"

struct fixture {
	struct fake_vm f;
	struct api_ctx ctx;
	bool balloon;
};

/* The fake VM's 64 MiB of RAM, its PCI bus and device loop, and a balloon on them. */
static void add_balloon(struct fixture *fx)
{
	struct vm *vm = &fx->f.vm;
	struct platform *p = vm->platform;
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	assert_int_equal(pci_bus_init(&p->pci, &vm->pio, &vm->mmio, LAYOUT_PCI_MMIO_START, LAYOUT_IOAPIC), 0);
	assert_int_equal(event_loop_create(&p->loop), 0);
	assert_int_equal(guest_mem_init(&vm->mem, fx->f.cfg.memory), 0);
	struct virtio_pci_deps deps = { .pci = &p->pci, .loop = p->loop, .mem = &vm->mem, .vm_fd = -1 };
	struct balloon_config cfg;
	config_balloon_defaults(&cfg);
	cfg.enabled = true;
	assert_int_equal(virtio_balloon_create(&deps, &cfg, &p->balloon), 0);
	fx->balloon = true;
}

static int setup_with(void **state, bool balloon)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	fake_vm_init(&fx->f, 1, true, false);
	if (balloon)
		add_balloon(fx);
	api_ctx_init(&fx->ctx, &fx->f.vm);
	*state = fx;
	return 0;
}
static int setup(void **state) { return setup_with(state, true); }
static int setup_no_balloon(void **state) { return setup_with(state, false); }

static int teardown(void **state)
{
	struct fixture *fx = *state;
	struct vm *vm = &fx->f.vm;
	struct platform *p = vm->platform;
	if (fx->balloon) {
		virtio_balloon_destroy(p->balloon);
		event_loop_destroy(p->loop);
		pci_bus_destroy(&p->pci);
		bus_destroy(&vm->pio);
		bus_destroy(&vm->mmio);
		guest_mem_destroy(&vm->mem);
	}
	fake_vm_destroy(&fx->f);
	api_ctx_destroy(&fx->ctx);
	free(fx);
	return 0;
}

static json_t *request(struct fixture *fx, const char *method, const char *body, unsigned int *status)
{
	struct api_reply r;
	api_handle(&fx->ctx, method, "/balloon", body, body ? strlen(body) : 0, false, &r);
	*status = r.status;
	json_error_t jerr;
	json_t *o = json_loadb(r.body, r.len, 0, &jerr);
	free(r.body);
	return o;
}

static json_int_t num(json_t *o, const char *key) { return json_integer_value(json_object_get(o, key)); }

static void test_put_sets_the_memory_the_guest_is_left_with(void **state)
{
	struct fixture *fx = *state;
	unsigned int st;
	json_t *o = request(fx, "GET", NULL, &st);
	assert_int_equal(st, 200);
	assert_int_equal(num(o, "target_mib"), 64);
	assert_int_equal(num(o, "actual_mib"), 64);
	assert_int_equal(num(o, "ram_mib"), 64);
	assert_true(json_is_object(json_object_get(o, "stats")));
	json_decref(o);

	o = request(fx, "PUT", "{\"target_mib\": 24}", &st);
	assert_int_equal(st, 200);
	assert_int_equal(num(o, "target_mib"), 24);
	assert_int_equal(num(o, "actual_mib"), 64); /* no driver has inflated yet */
	json_decref(o);
	o = request(fx, "GET", NULL, &st);
	assert_int_equal(num(o, "target_mib"), 24);
	json_decref(o);

	o = request(fx, "PUT", "{\"target_mib\": 64}", &st); /* all of it: an empty balloon */
	assert_int_equal(st, 200);
	assert_int_equal(num(o, "target_mib"), 64);
	json_decref(o);
	o = request(fx, "PUT", "{\"target_mib\": 0}", &st);
	assert_int_equal(st, 200);
	json_decref(o);
}

static void test_bad_targets_get_400_with_a_reason(void **state)
{
	struct fixture *fx = *state;
	static const struct {
		const char *body, *reason;
	} cases[] = {
		{ "{\"target_mib\": 65}", "above the guest's RAM (64 MiB)" },
		{ "{\"target_mib\": -1}", "cannot be negative" },
		{ "{\"target_mib\": 1.5}", "whole number" },
		{ "{\"target_mib\": \"32\"}", "whole number" },
		{ "{\"target\": 32}", "takes one key" },
		{ "{\"target_mib\": 32, \"x\": 1}", "takes one key" },
		{ "[32]", "takes one key" },
		{ "not json", "needs a JSON object" },
		{ "", "needs a JSON object" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		unsigned int st;
		json_t *o = request(fx, "PUT", cases[i].body, &st);
		assert_int_equal(st, 400);
		const char *err = json_string_value(json_object_get(o, "error"));
		assert_non_null(err);
		if (!strstr(err, cases[i].reason))
			fail_msg("body '%s': '%s' does not say '%s'", cases[i].body, err, cases[i].reason);
		json_decref(o);
	}
	/* None of them changed the target. */
	unsigned int st;
	json_t *o = request(fx, "GET", NULL, &st);
	assert_int_equal(num(o, "target_mib"), 64);
	json_decref(o);
}

static void test_without_a_balloon_both_methods_say_how_to_get_one(void **state)
{
	struct fixture *fx = *state;
	const char *methods[] = { "GET", "PUT" };
	for (int i = 0; i < 2; i++) {
		unsigned int st;
		json_t *o = request(fx, methods[i], "{\"target_mib\": 32}", &st);
		assert_int_equal(st, 409);
		assert_non_null(strstr(json_string_value(json_object_get(o, "error")), "--balloon"));
		json_decref(o);
	}
	size_t len;
	char *text = api_metrics_render(&fx->f.vm, &len);
	assert_null(strstr(text, "vmon_balloon_"));
	free(text);
}

static void test_metrics_show_target_and_actual(void **state)
{
	struct fixture *fx = *state;
	unsigned int st;
	json_decref(request(fx, "PUT", "{\"target_mib\": 16}", &st));
	size_t len;
	char *text = api_metrics_render(&fx->f.vm, &len);
	assert_non_null(strstr(text, "\nvmon_balloon_target_bytes 16777216\n"));
	assert_non_null(strstr(text, "\nvmon_balloon_actual_bytes 67108864\n"));
	assert_non_null(strstr(text, "\nvmon_balloon_discarded_bytes_total 0\n"));
	assert_non_null(strstr(text, "# TYPE vmon_balloon_reported_bytes_total counter\n"));
	free(text);
}

static void test_other_methods_get_405(void **state)
{
	struct fixture *fx = *state;
	unsigned int st;
	json_decref(request(fx, "DELETE", NULL, &st));
	assert_int_equal(st, 405);
}

int main(void)
{
	log_set_level(LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_sets_the_memory_the_guest_is_left_with, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_targets_get_400_with_a_reason, setup, teardown),
		cmocka_unit_test_setup_teardown(test_without_a_balloon_both_methods_say_how_to_get_one, setup_no_balloon,
						teardown),
		cmocka_unit_test_setup_teardown(test_metrics_show_target_and_actual, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_methods_get_405, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
