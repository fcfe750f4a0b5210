/*
 * The vCPU throttle as a migration's auto-converge uses it: vm_set_throttle() on a VM whose vCPU
 * threads run the real code around KVM_RUN (the kick signal's handler, vcpu_interrupted(), the
 * per-vCPU timer and hold) with a busy loop in place of the guest. What a user would observe:
 * at 50 % a busy guest gets about half the wall time and the metrics say the rest was held; off,
 * it gets all of it and is not interrupted at all; pause, resume and stop answer at once while
 * a vCPU is held, and a paused VM stays paused when the throttle changes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>

#include "api/api_metrics.h"
#include "api_fake_vm.h"
#include "fake_vcpu_loop.h"
#include "migration/migrate_vm.h"
#include "vm/throttle_policy.h"

#define MS 1000000ULL

struct rig {
	struct fake_vm f;
	struct fake_vcpu_loop loops[2];
	unsigned int n;
};

/* A VM of n busy vCPUs; period_ns replaces the 10 ms period where a test needs long holds. */
static void rig_start(struct rig *r, unsigned int n, uint64_t period_ns)
{
	r->n = n;
	fake_vm_init(&r->f, n, false, false);
	if (period_ns != THROTTLE_PERIOD_NS) {
		throttle_destroy(&r->f.vm.throttle);
		assert_int_equal(throttle_init(&r->f.vm.throttle, period_ns), 0);
	}
	for (unsigned int i = 0; i < n; i++)
		assert_int_equal(fake_vcpu_loop_start(&r->loops[i], &r->f.vm, i, false), 0);
}

static void rig_stop(struct rig *r)
{
	vm_request_stop(&r->f.vm, VM_STOP_SIGNAL, "test over");
	for (unsigned int i = 0; i < r->n; i++)
		fake_vcpu_loop_join(&r->loops[i]);
	fake_vm_destroy(&r->f);
}

static uint64_t guest_ns(struct rig *r, unsigned int i) { return fake_vcpu_loop_guest_ns(&r->loops[i]); }
static uint64_t signal_exits(struct rig *r, unsigned int i)
{
	return atomic_load(&r->f.vm.vcpus[i]->exits[VCPU_EXIT_INTR]);
}

/* The value of a metrics sample, as a scraper reads it; -1 when absent. */
static double metric(struct vm *vm, const char *series)
{
	size_t len, n = strlen(series);
	char *text = api_metrics_render(vm, &len);
	assert_non_null(text);
	double v = -1;
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, series, n) && p[n] == ' ')
			v = strtod(p + n + 1, NULL);
	free(text);
	return v;
}

/* The share of wall time vCPU i spent in the guest over the next ms milliseconds. */
static double guest_share(struct rig *r, unsigned int i, unsigned int ms)
{
	uint64_t g0 = guest_ns(r, i), t0 = monotonic_ns();
	sleep_ms(ms);
	return (double)(guest_ns(r, i) - g0) / (double)(monotonic_ns() - t0);
}

static void at_50_percent_a_busy_guest_gets_about_half_the_wall_time(void **state)
{
	(void)state;
	struct rig r;
	rig_start(&r, 1, THROTTLE_PERIOD_NS);
	double held0 = metric(&r.f.vm, "vmon_vcpu_throttle_seconds_total{vcpu=\"0\"}");
	assert_true(held0 == 0);
	assert_int_equal(vm_set_throttle(&r.f.vm, 50), 0);
	assert_true(metric(&r.f.vm, "vmon_vcpu_throttle_percent") == 50);
	uint64_t exits0 = signal_exits(&r, 0), t0 = monotonic_ns();
	double share = guest_share(&r, 0, 1000);
	double wall = (double)(monotonic_ns() - t0) / 1e9;
	double held = metric(&r.f.vm, "vmon_vcpu_throttle_seconds_total{vcpu=\"0\"}") - held0;
	uint64_t ticks = signal_exits(&r, 0) - exits0;
	print_message("50%%: guest share %.3f, held %.3f s of %.3f s, %llu interruptions\n", share, held, wall,
		      (unsigned long long)ticks);
	assert_true(share > 0.30 && share < 0.70);
	assert_true(held / wall > 0.30 && held / wall < 0.70);
	/* One tick per 10 ms period, give or take scheduling: about 100 in a second. */
	assert_true(ticks >= 50 && ticks <= 200);
	rig_stop(&r);
}

static void at_90_percent_the_guest_gets_about_a_tenth(void **state)
{
	(void)state;
	struct rig r;
	rig_start(&r, 1, THROTTLE_PERIOD_NS);
	assert_int_equal(vm_set_throttle(&r.f.vm, 90), 0);
	double share = guest_share(&r, 0, 1000);
	print_message("90%%: guest share %.3f\n", share);
	assert_true(share > 0.02 && share < 0.25);
	rig_stop(&r);
}

static void off_the_guest_gets_all_the_time_and_is_not_interrupted(void **state)
{
	(void)state;
	struct rig r;
	rig_start(&r, 1, THROTTLE_PERIOD_NS);
	/* Never throttled. */
	uint64_t e0 = signal_exits(&r, 0);
	sleep_ms(300);
	assert_int_equal(signal_exits(&r, 0), e0);
	/* Throttled, then off again: the timer is disarmed and the guest has the CPU to itself. */
	assert_int_equal(vm_set_throttle(&r.f.vm, 50), 0);
	sleep_ms(200);
	assert_int_equal(vm_set_throttle(&r.f.vm, 0), 0);
	assert_true(metric(&r.f.vm, "vmon_vcpu_throttle_percent") == 0);
	sleep_ms(50);
	e0 = signal_exits(&r, 0);
	double share = guest_share(&r, 0, 500);
	print_message("off: guest share %.3f\n", share);
	assert_true(share > 0.95);
	assert_int_equal(signal_exits(&r, 0), e0);
	rig_stop(&r);
}

static void out_of_range_is_refused(void **state)
{
	(void)state;
	struct rig r;
	rig_start(&r, 1, THROTTLE_PERIOD_NS);
	assert_int_equal(vm_set_throttle(&r.f.vm, 100), -EINVAL);
	assert_int_equal(vm_set_throttle(&r.f.vm, 99), 0);
	assert_true(metric(&r.f.vm, "vmon_vcpu_throttle_percent") == 99);
	rig_stop(&r);
}

/* With a 1 s period at 90 %, each hold lasts 900 ms: any answer well under that did not wait it out. */
#define LONG_PERIOD (1000 * MS)

static uint64_t elapsed_ms(uint64_t since) { return (monotonic_ns() - since) / MS; }

static void pause_resume_and_stop_do_not_wait_for_a_hold_to_end(void **state)
{
	(void)state;
	struct rig r;
	rig_start(&r, 2, LONG_PERIOD);
	assert_int_equal(vm_set_throttle(&r.f.vm, 90), 0);
	sleep_ms(100); /* both vCPUs are held now, for 800 ms more */
	assert_true(atomic_load(&r.f.vm.vcpus[0]->throttle.held_ns) == 0); /* counted when a hold ends */

	uint64_t t0 = monotonic_ns();
	assert_int_equal(vm_pause(&r.f.vm), 0);
	uint64_t pause_ms = elapsed_ms(t0);
	/* Paused: the guest does not run, although the throttle's timer keeps ticking. */
	uint64_t g0 = guest_ns(&r, 0) + guest_ns(&r, 1);
	sleep_ms(1200);
	assert_int_equal(guest_ns(&r, 0) + guest_ns(&r, 1), g0);

	t0 = monotonic_ns();
	assert_int_equal(vm_resume(&r.f.vm), 0);
	uint64_t resume_ms = elapsed_ms(t0);
	/* Resumed mid-period, past its held part: the guest runs until the next period starts. */
	sleep_ms(50);
	t0 = monotonic_ns();
	while (guest_ns(&r, 0) == 0 && elapsed_ms(t0) < 2000)
		sleep_ms(5);
	assert_true(guest_ns(&r, 0) > 0);

	/* Stop while held: 100 ms into the next period's hold. */
	uint64_t now = monotonic_ns(), origin = atomic_load(&r.f.vm.throttle.origin_ns);
	uint64_t next = origin + throttle_next_tick_ns(LONG_PERIOD, now - origin);
	sleep_ms((unsigned int)((next - now) / MS) + 100);
	t0 = monotonic_ns();
	vm_request_stop(&r.f.vm, VM_STOP_SIGNAL, "test over");
	for (unsigned int i = 0; i < r.n; i++)
		fake_vcpu_loop_join(&r.loops[i]);
	uint64_t stop_ms = elapsed_ms(t0);
	print_message("while held: pause %llu ms, resume %llu ms, stop %llu ms (a hold lasts 900 ms)\n",
		      (unsigned long long)pause_ms, (unsigned long long)resume_ms, (unsigned long long)stop_ms);
	assert_true(pause_ms < 300);
	assert_true(resume_ms < 300);
	assert_true(stop_ms < 300);
	/* Held twice: from the setting to the pause, and from the last tick to the stop. */
	assert_true(atomic_load(&r.f.vm.vcpus[0]->throttle.held_ns) >= 150 * MS);
	fake_vm_destroy(&r.f);
}

static void a_paused_vm_stays_paused_when_the_throttle_changes(void **state)
{
	(void)state;
	struct rig r;
	rig_start(&r, 2, THROTTLE_PERIOD_NS);
	assert_int_equal(vm_pause(&r.f.vm), 0);
	uint64_t g0 = guest_ns(&r, 0) + guest_ns(&r, 1);
	assert_int_equal(vm_set_throttle(&r.f.vm, 30), 0);
	sleep_ms(200);
	assert_int_equal(vm_set_throttle(&r.f.vm, 0), 0);
	sleep_ms(100);
	assert_int_equal(guest_ns(&r, 0) + guest_ns(&r, 1), g0);
	assert_int_equal(atomic_load(&r.f.vm.state), VM_PAUSED);
	/* Resumed, unthrottled: the guest has the CPU again. */
	assert_int_equal(vm_resume(&r.f.vm), 0);
	double share = guest_share(&r, 1, 300);
	assert_true(share > 0.90);
	rig_stop(&r);
}

/* What the pre-copy engine calls on a real VM: auto-converge's steps reach the vCPUs, and 0 lifts them. */
static void the_migration_engines_vm_operations_throttle_the_vcpus(void **state)
{
	(void)state;
	struct rig r;
	rig_start(&r, 1, THROTTLE_PERIOD_NS);
	struct kvm_cpuid2 *none = calloc(1, sizeof(*none)); /* migrate_vm_describe() reads the CPUID table */
	r.f.vm.cpuid = none;
	struct migrate_vm_ctx ctx;
	struct migrate_source_vm desc;
	migrate_vm_describe(&r.f.vm, "test", &ctx, &desc);
	assert_non_null(desc.ops->set_throttle);
	desc.ops->set_throttle(desc.ctx, 60);
	assert_true(metric(&r.f.vm, "vmon_vcpu_throttle_percent") == 60);
	double share = guest_share(&r, 0, 500);
	print_message("through the migration's operations at 60%%: guest share %.3f\n", share);
	/* Clearly throttled (unthrottled it is 1.0); wake-up delays on a busy host hold it longer. */
	assert_true(share > 0.1 && share < 0.7);
	desc.ops->set_throttle(desc.ctx, 0);
	assert_true(metric(&r.f.vm, "vmon_vcpu_throttle_percent") == 0);
	sleep_ms(20);
	assert_true(guest_share(&r, 0, 200) > 0.95);
	r.f.vm.cpuid = NULL;
	free(none);
	rig_stop(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(at_50_percent_a_busy_guest_gets_about_half_the_wall_time),
		cmocka_unit_test(at_90_percent_the_guest_gets_about_a_tenth),
		cmocka_unit_test(off_the_guest_gets_all_the_time_and_is_not_interrupted),
		cmocka_unit_test(out_of_range_is_refused),
		cmocka_unit_test(pause_resume_and_stop_do_not_wait_for_a_hold_to_end),
		cmocka_unit_test(a_paused_vm_stays_paused_when_the_throttle_changes),
		cmocka_unit_test(the_migration_engines_vm_operations_throttle_the_vcpus),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
