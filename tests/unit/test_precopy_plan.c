/*
 * Pre-copy convergence planning (src/migration/precopy_plan.c) on scripted guests: a model
 * link and a model guest that dirties pages at a rate the vCPU throttle slows down, run round
 * by round as the migration would, checked against what a user is promised (the downtime
 * target, auto-converge step by step, post-copy instead of throttling, a clear failure).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "migration/precopy_plan.h"

#define PAGE 4096.0
#define MIB (1024.0 * 1024.0)

struct model {
	double ram_pages;
	double link;        /* bytes per second */
	double dirty_rate;  /* pages per second the guest dirties unthrottled */
	double working_set; /* at most this many distinct pages dirtied in a round */
};

struct run {
	struct precopy_decision d[64];
	unsigned int rounds;
};

/* Runs the migration of a model guest until the plan stops asking for rounds. */
static void simulate(const struct precopy_params *p, const struct model *m, struct run *out)
{
	struct precopy_plan pl;
	precopy_plan_init(&pl, p);
	double to_send = m->ram_pages;
	uint32_t throttle = 0;
	memset(out, 0, sizeof(*out));
	for (;;) {
		double secs = to_send * PAGE / m->link;
		double dirtied = m->dirty_rate * (1.0 - throttle / 100.0) * secs;
		if (dirtied > m->working_set)
			dirtied = m->working_set;
		struct precopy_round r = { .bytes_sent = (uint64_t)(to_send * PAGE),
					   .duration_ns = (uint64_t)(secs * 1e9),
					   .pages_dirtied = (uint64_t)dirtied };
		assert_true(out->rounds < 64);
		struct precopy_decision d = precopy_plan_round(&pl, &r);
		out->d[out->rounds++] = d;
		assert_true(strlen(d.reason) > 0);
		if (d.action != PRECOPY_NEXT_ROUND)
			return;
		throttle = d.throttle_pct;
		to_send = (double)r.pages_dirtied;
	}
}

static const struct precopy_decision *last(const struct run *r)
{
	return &r->d[r->rounds - 1];
}

static void an_idle_guest_stops_after_one_or_two_rounds(void **state)
{
	(void)state;
	struct precopy_params p;
	precopy_params_default(&p);
	/* 128 MiB over 1 GiB/s; the guest touches a few hundred pages a second (timers, logs). */
	struct model m = { .ram_pages = 32768, .link = 1024 * MIB, .dirty_rate = 300, .working_set = 1e9 };
	struct run r;
	simulate(&p, &m, &r);
	assert_int_equal(r.rounds, 1);
	assert_int_equal(last(&r)->action, PRECOPY_STOP_AND_COPY);
	assert_true(last(&r)->predicted_downtime_ms <= 300);
	assert_int_equal(last(&r)->throttle_pct, 0);
	/* Over a slow link the first round takes long enough to leave more than 300 ms: one more round. */
	m.link = 10 * MIB;
	m.dirty_rate = 100;
	simulate(&p, &m, &r);
	assert_int_equal(r.rounds, 2);
	assert_int_equal(r.d[0].action, PRECOPY_NEXT_ROUND);
	assert_int_equal(last(&r)->action, PRECOPY_STOP_AND_COPY);
	assert_int_equal(last(&r)->throttle_pct, 0);
	assert_non_null(strstr(last(&r)->reason, "within the 300 ms downtime target"));
}

static void a_guest_dirtying_faster_than_the_link_is_throttled_step_by_step_until_it_converges(void **state)
{
	(void)state;
	struct precopy_params p;
	precopy_params_default(&p);
	/* 128 MiB over 100 MiB/s; the guest rewrites a 64 MiB buffer at 200 MiB/s. */
	struct model m = { .ram_pages = 32768, .link = 100 * MIB, .dirty_rate = 51200, .working_set = 16384 };
	struct run r;
	simulate(&p, &m, &r);
	/*
	 * Round 1 sends all RAM; rounds 2 and 3 do not converge (the guest dirties all 64 MiB again),
	 * so from round 3 on the throttle steps 20, 30, ... until the guest dirties few enough pages
	 * in a round: at 80% it dirties 40 MiB/s, and the 25.6 MiB left take 256 ms.
	 */
	uint32_t want[] = { 0, 0, 20, 30, 40, 50, 60, 70, 80 };
	assert_int_equal(r.rounds, 10);
	for (unsigned int i = 0; i < 9; i++) {
		assert_int_equal(r.d[i].action, PRECOPY_NEXT_ROUND);
		assert_int_equal(r.d[i].throttle_pct, want[i]);
	}
	assert_non_null(strstr(r.d[2].reason, "auto-converge throttles the vCPUs to 20%"));
	assert_int_equal(last(&r)->action, PRECOPY_STOP_AND_COPY);
	assert_int_equal(last(&r)->throttle_pct, 80);
	assert_true(last(&r)->predicted_downtime_ms <= 300);
}

static void with_postcopy_it_switches_after_the_first_round_instead_of_throttling(void **state)
{
	(void)state;
	struct precopy_params p;
	precopy_params_default(&p);
	p.postcopy = true;
	struct model m = { .ram_pages = 32768, .link = 100 * MIB, .dirty_rate = 51200, .working_set = 16384 };
	struct run r;
	simulate(&p, &m, &r);
	assert_int_equal(r.rounds, 1);
	assert_int_equal(last(&r)->action, PRECOPY_POSTCOPY);
	assert_int_equal(last(&r)->throttle_pct, 0);
	assert_non_null(strstr(last(&r)->reason, "post-copy"));
	/* An idle guest with post-copy allowed still finishes with a plain stop and copy. */
	m.dirty_rate = 10;
	simulate(&p, &m, &r);
	assert_int_equal(last(&r)->action, PRECOPY_STOP_AND_COPY);
}

static void a_guest_that_never_converges_fails_at_the_round_cap_with_the_numbers(void **state)
{
	(void)state;
	struct precopy_params p;
	precopy_params_default(&p);
	p.throttle_max_pct = 50;
	p.max_rounds = 12;
	struct model m = { .ram_pages = 32768, .link = 100 * MIB, .dirty_rate = 51200, .working_set = 16384 };
	struct run r;
	simulate(&p, &m, &r);
	assert_int_equal(r.rounds, 12);
	assert_int_equal(last(&r)->action, PRECOPY_FAIL);
	/* The throttle stepped to its cap and stayed there. */
	assert_int_equal(r.d[5].throttle_pct, 50);
	assert_int_equal(r.d[10].throttle_pct, 50);
	assert_int_equal(last(&r)->throttle_pct, 50);
	print_message("%s\n", last(&r)->reason);
	assert_non_null(strstr(last(&r)->reason, "did not converge in 12 rounds"));
	assert_non_null(strstr(last(&r)->reason, "the link carries 100.0 MiB/s"));
	assert_non_null(strstr(last(&r)->reason, "throttled 50%"));
}

static void the_downtime_prediction_matches_hand_computed_values(void **state)
{
	(void)state;
	struct precopy_params p;
	precopy_params_default(&p);
	struct precopy_plan pl;
	precopy_plan_init(&pl, &p);
	/* Nothing measured yet: no promise can be made, except for nothing to send. */
	assert_int_equal(precopy_predict_downtime_ms(&pl, 1000), UINT64_MAX);
	assert_int_equal(precopy_predict_downtime_ms(&pl, 0), 0);
	/* 100 MiB in 2 s: 50 MiB/s. 1000 pages = 4096000 bytes / 52428800 B/s = 78.125 ms, rounded up. */
	struct precopy_round r1 = { .bytes_sent = 100 * 1048576ull, .duration_ns = 2000000000ull, .pages_dirtied = 1000 };
	struct precopy_decision d = precopy_plan_round(&pl, &r1);
	assert_int_equal(d.predicted_downtime_ms, 79);
	assert_int_equal(d.action, PRECOPY_STOP_AND_COPY);
	/* Then 100 MiB in 1 s: smoothed halfway, 75 MiB/s; 1000 pages take 52.08 ms -> 53. */
	struct precopy_round r2 = { .bytes_sent = 100 * 1048576ull, .duration_ns = 1000000000ull, .pages_dirtied = 1000 };
	d = precopy_plan_round(&pl, &r2);
	assert_int_equal(d.predicted_downtime_ms, 53);
	/* 19200 pages (75 MiB) at 75 MiB/s: exactly 1000 ms. */
	assert_int_equal(precopy_predict_downtime_ms(&pl, 19200), 1000);
}

static void a_round_that_converges_does_not_count_toward_throttling(void **state)
{
	(void)state;
	struct precopy_params p;
	precopy_params_default(&p);
	p.max_downtime_ms = 10;
	struct precopy_plan pl;
	precopy_plan_init(&pl, &p);
	/* 100 MiB/s; round 1 sends 128 MiB; then alternating slow and converging rounds. */
	struct precopy_round all = { .bytes_sent = 128 * 1048576ull, .duration_ns = 1280000000ull, .pages_dirtied = 8000 };
	struct precopy_round slow = { .bytes_sent = 8000 * 4096ull, .duration_ns = 312500000ull, .pages_dirtied = 8000 };
	struct precopy_round fast = { .bytes_sent = 8000 * 4096ull, .duration_ns = 312500000ull, .pages_dirtied = 3000 };
	assert_int_equal(precopy_plan_round(&pl, &all).throttle_pct, 0);
	assert_int_equal(precopy_plan_round(&pl, &slow).throttle_pct, 0);
	struct precopy_decision d = precopy_plan_round(&pl, &fast);
	assert_int_equal(d.action, PRECOPY_NEXT_ROUND);
	assert_int_equal(d.throttle_pct, 0);
	/* The second slow round: two in all, and auto-converge starts. */
	slow.bytes_sent = 3000 * 4096ull;
	assert_int_equal(precopy_plan_round(&pl, &slow).throttle_pct, 20);
}

static void pacing_keeps_the_average_at_the_bandwidth_limit(void **state)
{
	(void)state;
	/* 100 Mbit/s: 12.5 MB take 1 s; after 0.4 s the sender waits 0.6 s. */
	assert_int_equal(precopy_pace_delay_ns(100, 12500000, 400000000), 600000000);
	/* Behind schedule, or unlimited: no wait. */
	assert_int_equal(precopy_pace_delay_ns(100, 12500000, 1500000000), 0);
	assert_int_equal(precopy_pace_delay_ns(0, 1ull << 40, 0), 0);
	/* 1 TiB at 1 Mbit/s: no overflow, about 102 days. */
	assert_int_equal(precopy_pace_delay_ns(1, 1ull << 40, 0), (1ull << 40) * 8000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(an_idle_guest_stops_after_one_or_two_rounds),
		cmocka_unit_test(a_guest_dirtying_faster_than_the_link_is_throttled_step_by_step_until_it_converges),
		cmocka_unit_test(with_postcopy_it_switches_after_the_first_round_instead_of_throttling),
		cmocka_unit_test(a_guest_that_never_converges_fails_at_the_round_cap_with_the_numbers),
		cmocka_unit_test(the_downtime_prediction_matches_hand_computed_values),
		cmocka_unit_test(a_round_that_converges_does_not_count_toward_throttling),
		cmocka_unit_test(pacing_keeps_the_average_at_the_bandwidth_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
