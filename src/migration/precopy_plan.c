#include "migration/precopy_plan.h"

#include <stdio.h>
#include <string.h>

/*
 * Weight of the newest round in the smoothed estimates: half, so one odd round (a burst of
 * dirtying, a stall on the link) moves them without taking them over.
 */
#define SMOOTHING 0.5

/*
 * A round converges when the guest dirtied at most half of what the round sent: the dirty set
 * then at least halves per round. Above that, more rounds barely shrink it.
 */
#define CONVERGING_SHARE 0.5

#define MIB (1024.0 * 1024.0)

void precopy_params_default(struct precopy_params *p)
{
	*p = (struct precopy_params){
		.max_downtime_ms = 300,
		.bandwidth_mbps = 0,
		.postcopy = false,
		.throttle_after_rounds = 2,
		.throttle_initial_pct = 20,
		.throttle_step_pct = 10,
		.throttle_max_pct = 90,
		.max_rounds = 30,
	};
}

void precopy_plan_init(struct precopy_plan *pl, const struct precopy_params *p)
{
	memset(pl, 0, sizeof(*pl));
	pl->p = *p;
	if (pl->p.throttle_max_pct > 99)
		pl->p.throttle_max_pct = 99; /* a vCPU held off all the time would never finish */
}

static double smooth(double old, double sample, bool first)
{
	return first ? sample : old + SMOOTHING * (sample - old);
}

uint64_t precopy_predict_downtime_ms(const struct precopy_plan *pl, uint64_t pages)
{
	if (pages == 0)
		return 0;
	if (pl->bandwidth <= 0)
		return UINT64_MAX;
	double ms = (double)pages * PRECOPY_PAGE_SIZE * 1000.0 / pl->bandwidth;
	if (ms >= (double)UINT64_MAX)
		return UINT64_MAX;
	uint64_t whole = (uint64_t)ms;
	return (double)whole < ms ? whole + 1 : whole; /* rounded up: a promise of downtime is not undercut */
}

static uint32_t next_throttle(const struct precopy_plan *pl)
{
	if (pl->throttle_pct == 0)
		return pl->p.throttle_initial_pct < pl->p.throttle_max_pct ? pl->p.throttle_initial_pct
									   : pl->p.throttle_max_pct;
	uint32_t t = pl->throttle_pct + pl->p.throttle_step_pct;
	return t < pl->p.throttle_max_pct ? t : pl->p.throttle_max_pct;
}

struct precopy_decision precopy_plan_round(struct precopy_plan *pl, const struct precopy_round *r)
{
	struct precopy_decision d = { .action = PRECOPY_NEXT_ROUND };
	bool first = pl->rounds == 0;
	pl->rounds++;
	if (r->duration_ns > 0) {
		double secs = (double)r->duration_ns / 1e9;
		if (r->bytes_sent > 0)
			pl->bandwidth = smooth(pl->bandwidth, (double)r->bytes_sent / secs, pl->bandwidth <= 0);
		pl->dirty_rate = smooth(pl->dirty_rate, (double)r->pages_dirtied / secs, first);
	}
	uint64_t left = r->pages_dirtied;
	d.predicted_downtime_ms = precopy_predict_downtime_ms(pl, left);
	double left_mib = (double)left * PRECOPY_PAGE_SIZE / MIB;
	double bw_mib = pl->bandwidth / MIB, dirty_mib = pl->dirty_rate * PRECOPY_PAGE_SIZE / MIB;

	if (d.predicted_downtime_ms <= pl->p.max_downtime_ms) {
		d.action = PRECOPY_STOP_AND_COPY;
		d.throttle_pct = pl->throttle_pct;
		snprintf(d.reason, sizeof(d.reason),
			 "round %u left %.1f MiB, which takes about %llu ms at %.1f MiB/s: within the %u ms downtime target",
			 pl->rounds, left_mib, (unsigned long long)d.predicted_downtime_ms, bw_mib, pl->p.max_downtime_ms);
		return d;
	}
	if (pl->p.postcopy) {
		d.action = PRECOPY_POSTCOPY;
		snprintf(d.reason, sizeof(d.reason),
			 "round %u left %.1f MiB (about %llu ms at %.1f MiB/s, over the %u ms target): switching to post-copy",
			 pl->rounds, left_mib, (unsigned long long)d.predicted_downtime_ms, bw_mib, pl->p.max_downtime_ms);
		return d;
	}
	if (pl->rounds >= pl->p.max_rounds) {
		d.action = PRECOPY_FAIL;
		d.throttle_pct = pl->throttle_pct;
		snprintf(d.reason, sizeof(d.reason),
			 "migration did not converge in %u rounds: the guest dirties %.1f MiB/s (vCPUs throttled %u%%) and "
			 "the link carries %.1f MiB/s, so the last %.1f MiB would stop the guest for about %llu ms, over the "
			 "%u ms target; allow a longer downtime, a faster link, or post-copy",
			 pl->rounds, dirty_mib, pl->throttle_pct, bw_mib, left_mib,
			 (unsigned long long)d.predicted_downtime_ms, pl->p.max_downtime_ms);
		return d;
	}
	/* The first round sends all of RAM: what the guest dirtied meanwhile says little yet. */
	bool converging = first || (double)left * PRECOPY_PAGE_SIZE <= CONVERGING_SHARE * (double)r->bytes_sent;
	if (!converging)
		pl->slow_rounds++;
	bool raise = !converging && pl->throttle_pct < pl->p.throttle_max_pct &&
		     (pl->throttle_pct > 0 || pl->slow_rounds >= pl->p.throttle_after_rounds);
	if (raise) {
		pl->throttle_pct = next_throttle(pl);
		pl->slow_rounds = 0;
		snprintf(d.reason, sizeof(d.reason),
			 "round %u: the guest dirties %.1f MiB/s against %.1f MiB/s of link, %.1f MiB left: auto-converge "
			 "throttles the vCPUs to %u%%",
			 pl->rounds, dirty_mib, bw_mib, left_mib, pl->throttle_pct);
	} else {
		snprintf(d.reason, sizeof(d.reason),
			 "round %u left %.1f MiB (about %llu ms at %.1f MiB/s, over the %u ms target): another round",
			 pl->rounds, left_mib, (unsigned long long)d.predicted_downtime_ms, bw_mib, pl->p.max_downtime_ms);
	}
	d.throttle_pct = pl->throttle_pct;
	return d;
}

uint64_t precopy_pace_delay_ns(uint32_t bandwidth_mbps, uint64_t bytes_sent, uint64_t elapsed_ns)
{
	if (bandwidth_mbps == 0)
		return 0;
	/* bytes * 8 bits at bandwidth_mbps * 10^6 bits per second, in ns: bytes * 8000 / mbps. */
	unsigned __int128 due = (unsigned __int128)bytes_sent * 8000u / bandwidth_mbps;
	if (due <= elapsed_ns)
		return 0;
	due -= elapsed_ns;
	return due > UINT64_MAX ? UINT64_MAX : (uint64_t)due;
}
