/* The guest clock a restore sets: the time on disk added by default, never backwards, unchanged with continue. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>

#include "state/vm_clock.h"

#define S 1000000000ull

static void test_realtime_without_kvm_support_adds_elapsed(void **state)
{
	(void)state;
	struct vm_clock_plan p;
	/* Snapshot at wall time 1000 s with kvmclock 50 s; restored 60 s later. */
	vm_clock_plan(VM_CLOCK_REALTIME, 50 * S, 1000 * S, 1060 * S, false, &p);
	assert_false(p.kvm_realtime);
	assert_false(p.unknown_age);
	assert_int_equal(p.advanced_ns, 60 * S);
	assert_int_equal(p.clock, 110 * S);
}

static void test_realtime_with_kvm_support_lets_kvm_add(void **state)
{
	(void)state;
	struct vm_clock_plan p;
	vm_clock_plan(VM_CLOCK_REALTIME, 50 * S, 1000 * S, 1060 * S, true, &p);
	assert_true(p.kvm_realtime);
	assert_int_equal(p.realtime, 1000 * S); /* KVM adds the time since this instant itself */
	assert_int_equal(p.clock, 50 * S);
	assert_int_equal(p.advanced_ns, 0);
}

static void test_never_backwards(void **state)
{
	(void)state;
	struct vm_clock_plan p;
	/* The host's clock is behind the snapshot's (set back, or another host): nothing is added. */
	vm_clock_plan(VM_CLOCK_REALTIME, 50 * S, 1000 * S, 900 * S, false, &p);
	assert_int_equal(p.clock, 50 * S);
	assert_int_equal(p.advanced_ns, 0);
	/* A kvmclock near the top does not wrap around. */
	vm_clock_plan(VM_CLOCK_REALTIME, UINT64_MAX - 5, 1000 * S, 1060 * S, false, &p);
	assert_int_equal(p.clock, UINT64_MAX);
}

static void test_continue_and_old_snapshots_unchanged(void **state)
{
	(void)state;
	struct vm_clock_plan p;
	vm_clock_plan(VM_CLOCK_CONTINUE, 50 * S, 1000 * S, 1060 * S, true, &p);
	assert_int_equal(p.clock, 50 * S);
	assert_false(p.kvm_realtime);
	assert_int_equal(p.advanced_ns, 0);
	vm_clock_plan(VM_CLOCK_CONTINUE, 50 * S, 1000 * S, 1060 * S, false, &p);
	assert_int_equal(p.clock, 50 * S);
	/* A snapshot that does not say when it was taken continues, and says so. */
	vm_clock_plan(VM_CLOCK_REALTIME, 50 * S, 0, 1060 * S, false, &p);
	assert_int_equal(p.clock, 50 * S);
	assert_true(p.unknown_age);
}

/* The TSC moves by the same time at the vCPU's rate, without overflow for years on disk. */
static void test_tsc_ticks(void **state)
{
	(void)state;
	assert_int_equal(vm_clock_tsc_ticks(1 * S, 2000000), 2000000000ull);
	assert_int_equal(vm_clock_tsc_ticks(60 * S, 2899999), 60ull * 2899999000ull);
	assert_int_equal(vm_clock_tsc_ticks(0, 3000000), 0);
	const uint64_t ten_years = 10ull * 365 * 24 * 3600 * S;
	assert_int_equal(vm_clock_tsc_ticks(ten_years, 4000000), ten_years / 1000000 * 4000000);
}

static void test_parse_mode(void **state)
{
	(void)state;
	enum vm_clock_mode m = VM_CLOCK_CONTINUE;
	assert_int_equal(vm_clock_parse_mode("realtime", &m), 0);
	assert_int_equal(m, VM_CLOCK_REALTIME);
	assert_int_equal(vm_clock_parse_mode("continue", &m), 0);
	assert_int_equal(m, VM_CLOCK_CONTINUE);
	assert_int_equal(vm_clock_parse_mode("now", &m), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_realtime_without_kvm_support_adds_elapsed),
		cmocka_unit_test(test_realtime_with_kvm_support_lets_kvm_add),
		cmocka_unit_test(test_never_backwards),
		cmocka_unit_test(test_continue_and_old_snapshots_unchanged),
		cmocka_unit_test(test_tsc_ticks),
		cmocka_unit_test(test_parse_mode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
