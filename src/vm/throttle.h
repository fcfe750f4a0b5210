/*
 * The vCPU throttle: holds every vCPU out of the guest for pct % of wall time, so a guest that
 * dirties memory faster than a live migration sends it slows down (auto-converge).
 *
 * No thread of its own: each vCPU thread, when it first sees the throttle on, makes a POSIX
 * timer that sends the vCPU kick signal to that thread alone at every period's start on the
 * shared grid (throttle_policy.h). The signal ends KVM_RUN like a kick does, and the vCPU then
 * waits out the held part of the period before it re-enters the guest. Kernel timers fire on
 * time however busy the host is, and a thread per VM would need a role and a lifetime of its own.
 * A wait ends early when the VM must stop or pause, or the setting changes.
 */
#ifndef VMON_VM_THROTTLE_H
#define VMON_VM_THROTTLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* One per VM: the setting, and where held vCPUs wait. */
struct throttle {
	_Atomic uint32_t pct;       /* 0: off */
	_Atomic uint64_t origin_ns; /* monotonic time the grid starts, set when pct leaves 0 */
	uint64_t period_ns;
	pthread_mutex_t lock;
	pthread_cond_t cond;        /* CLOCK_MONOTONIC; broadcast by throttle_set and throttle_wake */
};

/* One per vCPU, used by its thread only (held_ns is read by the metrics). */
struct vcpu_throttle {
	timer_t timer;
	bool have_timer;
	bool broken;                /* the timer could not be made: the vCPU runs unthrottled */
	uint64_t armed_origin;      /* the grid the timer follows; 0: disarmed */
	_Atomic uint64_t held_ns;   /* wall time spent held out of the guest */
};

/* 0 or a negative errno. */
int throttle_init(struct throttle *t, uint64_t period_ns);
void throttle_destroy(struct throttle *t);

/* Sets the share of time held off (pct <= THROTTLE_MAX_PCT, 0: off); the caller kicks the vCPUs. */
void throttle_set(struct throttle *t, uint32_t pct);
uint32_t throttle_get(struct throttle *t);
/* Ends every hold now: call after setting what must_leave (below) reads, e.g. a stop or pause. */
void throttle_wake(struct throttle *t);

/*
 * On a vCPU thread whose KVM_RUN was interrupted: follows the setting (makes, arms or disarms
 * the timer that sends signo to this thread) and holds the thread for the rest of the period's
 * held part, or until must_leave(opaque) is true. Costs one load and a branch while the throttle
 * is off and this vCPU never throttled. Returns 0, or a negative errno the first time the timer
 * cannot be made (the vCPU then runs unthrottled).
 */
int vcpu_throttle_on_kick(struct vcpu_throttle *v, struct throttle *t, int signo, bool (*must_leave)(void *),
			  void *opaque);
/* Deletes the timer; on the vCPU thread before it ends. */
void vcpu_throttle_release(struct vcpu_throttle *v);

#endif
