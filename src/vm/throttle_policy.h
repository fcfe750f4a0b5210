/*
 * The timing of the vCPU throttle (live migration's auto-converge), kept apart from threads and
 * timers so it is tested alone. Time is cut into periods on a grid that starts when the throttle
 * is switched on; every vCPU stays out of the guest for the first pct % of each period. All
 * vCPUs share the grid, so they are held at the same moments: a vCPU spinning on a lock whose
 * holder is held off would otherwise burn its own share for nothing.
 */
#ifndef VMON_VM_THROTTLE_POLICY_H
#define VMON_VM_THROTTLE_POLICY_H

#include <stdint.h>

/* 10 ms: short enough that the guest sees no stall (its timer tick is 1-10 ms), long enough that
 * the 100 interruptions a second cost nothing measurable. */
#define THROTTLE_PERIOD_NS 10000000ULL
/* A vCPU held off all the time would never finish what the migration waits for. */
#define THROTTLE_MAX_PCT 99u

/*
 * How long a vCPU that left the guest since_origin_ns after the grid started must stay out:
 * the rest of the current period's held part, 0 past it, at 0 % or with period_ns 0.
 * pct above THROTTLE_MAX_PCT counts as THROTTLE_MAX_PCT.
 */
uint64_t throttle_hold_ns(uint32_t pct, uint64_t period_ns, uint64_t since_origin_ns);

/* The next period's start strictly after since_origin_ns, counted from the grid's origin. */
uint64_t throttle_next_tick_ns(uint64_t period_ns, uint64_t since_origin_ns);

#endif
