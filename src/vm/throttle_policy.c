#include "vm/throttle_policy.h"

uint64_t throttle_hold_ns(uint32_t pct, uint64_t period_ns, uint64_t since_origin_ns)
{
	if (pct > THROTTLE_MAX_PCT)
		pct = THROTTLE_MAX_PCT;
	if (pct == 0 || period_ns == 0)
		return 0;
	uint64_t held = period_ns / 100 * pct + period_ns % 100 * pct / 100;
	uint64_t phase = since_origin_ns % period_ns;
	return phase < held ? held - phase : 0;
}

uint64_t throttle_next_tick_ns(uint64_t period_ns, uint64_t since_origin_ns)
{
	if (period_ns == 0)
		return since_origin_ns;
	return (since_origin_ns / period_ns + 1) * period_ns;
}
