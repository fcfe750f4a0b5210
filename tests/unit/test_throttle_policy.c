/*
 * The throttle's timing (src/vm/throttle_policy.c): how long a vCPU leaving the guest at a given
 * moment stays out, so that over time it is held the share of wall time the migration asked for.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "vm/throttle_policy.h"

#define MS 1000000ULL
#define P (10 * MS)

static void off_never_holds(void **state)
{
	(void)state;
	for (uint64_t t = 0; t < 3 * P; t += MS / 3)
		assert_int_equal(throttle_hold_ns(0, P, t), 0);
	/* No period: nothing to hold against. */
	assert_int_equal(throttle_hold_ns(50, 0, 123), 0);
}

static void a_vcpu_leaving_at_a_periods_start_is_held_pct_of_it(void **state)
{
	(void)state;
	assert_int_equal(throttle_hold_ns(20, P, 0), 2 * MS);
	assert_int_equal(throttle_hold_ns(50, P, 0), 5 * MS);
	assert_int_equal(throttle_hold_ns(90, P, 7 * P), 9 * MS);
	assert_int_equal(throttle_hold_ns(1, P, 0), P / 100);
}

static void a_late_vcpu_is_held_only_for_the_rest_of_the_held_part(void **state)
{
	(void)state;
	/* The tick reached it 2 ms into the period: 3 ms of the 5 are left. */
	assert_int_equal(throttle_hold_ns(50, P, 2 * MS), 3 * MS);
	assert_int_equal(throttle_hold_ns(50, P, 3 * P + 4 * MS), 1 * MS);
	/* Past the held part (a pause kick, a late tick): it runs at once. */
	assert_int_equal(throttle_hold_ns(50, P, 5 * MS), 0);
	assert_int_equal(throttle_hold_ns(50, P, 9 * MS), 0);
	assert_int_equal(throttle_hold_ns(50, P, 2 * P - 1), 0);
}

static void more_than_99_percent_counts_as_99(void **state)
{
	(void)state;
	assert_int_equal(throttle_hold_ns(100, P, 0), 99 * P / 100);
	assert_int_equal(throttle_hold_ns(1000, P, 0), 99 * P / 100);
	assert_int_equal(throttle_hold_ns(99, P, 0), 99 * P / 100);
}

/* A vCPU that leaves the guest at every tick and whenever else: held exactly pct % over many periods. */
static void held_time_over_many_periods_is_pct_of_wall_time(void **state)
{
	(void)state;
	static const uint32_t pcts[] = { 1, 20, 33, 50, 77, 90, 99 };
	for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
		uint64_t t = 0, held = 0, end = 100 * P;
		while (t < end) {
			uint64_t h = throttle_hold_ns(pcts[i], P, t);
			held += h;
			/* After the hold, the guest runs until the next period's tick. */
			t = throttle_next_tick_ns(P, t + h);
		}
		assert_int_equal(held, (uint64_t)pcts[i] * end / 100);
	}
}

/* Not a round number of nanoseconds per percent: no overflow, no drift past the period. */
static void an_odd_period_is_split_without_overflow(void **state)
{
	(void)state;
	uint64_t odd = 1000000007ULL;
	assert_int_equal(throttle_hold_ns(99, odd, 0), odd * 99 / 100);
	uint64_t big = UINT64_MAX / 50;
	assert_true(throttle_hold_ns(99, big, 0) < big);
	assert_true(throttle_hold_ns(99, big, 0) > big / 100 * 98);
}

static void the_next_tick_is_the_next_periods_start(void **state)
{
	(void)state;
	assert_int_equal(throttle_next_tick_ns(P, 0), P);
	assert_int_equal(throttle_next_tick_ns(P, P - 1), P);
	assert_int_equal(throttle_next_tick_ns(P, P), 2 * P);
	assert_int_equal(throttle_next_tick_ns(P, 5 * P + 3), 6 * P);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(off_never_holds),
		cmocka_unit_test(a_vcpu_leaving_at_a_periods_start_is_held_pct_of_it),
		cmocka_unit_test(a_late_vcpu_is_held_only_for_the_rest_of_the_held_part),
		cmocka_unit_test(more_than_99_percent_counts_as_99),
		cmocka_unit_test(held_time_over_many_periods_is_pct_of_wall_time),
		cmocka_unit_test(an_odd_period_is_split_without_overflow),
		cmocka_unit_test(the_next_tick_is_the_next_periods_start),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
