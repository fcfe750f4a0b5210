/*
 * Convergence planning for pre-copy live migration: pure arithmetic over what each round
 * measured, no I/O. After every round the migration tells the plan how many bytes it sent, how
 * long that took and how many pages the guest dirtied meanwhile; the plan keeps smoothed
 * estimates of the link's bandwidth and the guest's dirty rate, predicts the downtime of
 * stopping now, and decides what comes next (docs/migration.md, "Convergence").
 */
#ifndef VMON_MIGRATION_PRECOPY_PLAN_H
#define VMON_MIGRATION_PRECOPY_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#define PRECOPY_PAGE_SIZE 4096u

struct precopy_params {
	uint32_t max_downtime_ms;       /* stop the guest once the rest fits this (default 300) */
	uint32_t bandwidth_mbps;        /* pacing limit in megabits per second; 0: unlimited */
	bool postcopy;                  /* switch to post-copy instead of throttling */
	uint32_t throttle_after_rounds; /* non-converging rounds before auto-converge starts (2) */
	uint32_t throttle_initial_pct;  /* first throttle (20) ... */
	uint32_t throttle_step_pct;     /* ... raised by this per further non-converging round (10) ... */
	uint32_t throttle_max_pct;      /* ... up to this (90) */
	uint32_t max_rounds;            /* give up after this many rounds (30) */
};

/* What one round measured. */
struct precopy_round {
	uint64_t bytes_sent;      /* on the wire, this round */
	uint64_t duration_ns;     /* wall time of the round */
	uint64_t pages_dirtied;   /* pages the guest dirtied during the round: what is left to send */
};

enum precopy_action {
	PRECOPY_NEXT_ROUND,     /* send the dirty pages again, at throttle_pct */
	PRECOPY_STOP_AND_COPY,  /* stop the guest and send the rest: it fits max_downtime_ms */
	PRECOPY_POSTCOPY,       /* switch the guest to the destination and send the rest on demand */
	PRECOPY_FAIL,           /* give up: reason says why */
};

struct precopy_decision {
	enum precopy_action action;
	uint32_t throttle_pct;         /* share of time the vCPUs are held off for the next round, 0-99 */
	uint64_t predicted_downtime_ms;/* to send what is left now, at the estimated bandwidth */
	char reason[512];              /* one sentence: why this action (always set) */
};

struct precopy_plan {
	struct precopy_params p;
	uint32_t rounds;             /* rounds reported so far */
	double bandwidth;            /* smoothed bytes per second, 0 until measured */
	double dirty_rate;           /* smoothed pages per second */
	uint32_t slow_rounds;        /* non-converging rounds since the throttle last changed or started */
	uint32_t throttle_pct;
};

/* The defaults above. */
void precopy_params_default(struct precopy_params *p);
void precopy_plan_init(struct precopy_plan *pl, const struct precopy_params *p);

/* Milliseconds to send pages at the estimated bandwidth (rounded up); UINT64_MAX if not measured. */
uint64_t precopy_predict_downtime_ms(const struct precopy_plan *pl, uint64_t pages);

/* Folds in one round's measurements and decides what comes next. */
struct precopy_decision precopy_plan_round(struct precopy_plan *pl, const struct precopy_round *r);

/*
 * Pacing under bandwidth_mbps: how long to wait before sending more, having sent bytes_sent
 * in elapsed_ns since the transfer started, so the average stays at or below the limit.
 * 0 when unlimited or when behind.
 */
uint64_t precopy_pace_delay_ns(uint32_t bandwidth_mbps, uint64_t bytes_sent, uint64_t elapsed_ns);

#endif
