/*
 * vCPU threads without KVM that run the real vCPU loop's code around KVM_RUN: the thread binds
 * itself as vmon's vCPU thread does (the kick signal and its handler), parks while the VM is
 * paused, and "runs the guest" by spinning until its run area's immediate_exit is set, which is
 * what ends KVM_RUN early: a kick from another thread or, through the real signal handler, the
 * throttle's timer. It then calls vcpu_interrupted() as the loop does after an EINTR. The wall
 * time spent spinning is the time the guest would have had.
 */
#ifndef VMON_TESTS_FAKE_VCPU_LOOP_H
#define VMON_TESTS_FAKE_VCPU_LOOP_H

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "lib/util.h"
#include "sandbox/sandbox.h"
#include "vm/throttle.h"
#include "vm/vcpu.h"
#include "vm/vm.h"

struct fake_vcpu_loop {
	struct vcpu *v;
	struct kvm_run *run;
	pthread_t thread;
	bool confine;                /* enter the vcpu role first, as vmon's vCPU threads do */
	pthread_mutex_t lock;
	uint64_t guest_ns;           /* wall time spent "in the guest", under lock ... */
	uint64_t entered_ns;         /* ... plus the time since this, when not 0 */
	_Atomic bool running;        /* bound and kickable */
};

/* Wall time spent "in the guest" so far, the stretch in progress included. */
static inline uint64_t fake_vcpu_loop_guest_ns(struct fake_vcpu_loop *l)
{
	pthread_mutex_lock(&l->lock);
	uint64_t ns = l->guest_ns + (l->entered_ns ? monotonic_ns() - l->entered_ns : 0);
	pthread_mutex_unlock(&l->lock);
	return ns;
}

static inline void *fake_vcpu_loop_thread(void *arg)
{
	struct fake_vcpu_loop *l = arg;
	struct vcpu *v = l->v;
	struct vm *vm = v->vm;
	if (l->confine)
		sandbox_enter(SANDBOX_VCPU);
	vcpu_bind_thread(v);
	v->thread = pthread_self();
	atomic_store(&v->started, true);
	atomic_store(&l->running, true);
	while (atomic_load(&vm->state) != VM_STOPPED) {
		vm_vcpu_park_if_paused(vm);
		if (atomic_load(&vm->state) == VM_STOPPED)
			break;
		pthread_mutex_lock(&l->lock);
		l->entered_ns = monotonic_ns();
		pthread_mutex_unlock(&l->lock);
		while (!*(volatile __u8 *)&v->run->immediate_exit)
			;
		pthread_mutex_lock(&l->lock);
		l->guest_ns += monotonic_ns() - l->entered_ns;
		l->entered_ns = 0;
		pthread_mutex_unlock(&l->lock);
		vcpu_interrupted(v);
	}
	vcpu_throttle_release(&v->throttle);
	return NULL;
}

/* Starts a loop for vm's vCPU id and waits until it can be kicked. 0 or an errno. */
static inline int fake_vcpu_loop_start(struct fake_vcpu_loop *l, struct vm *vm, unsigned int id, bool confine)
{
	l->v = vm->vcpus[id];
	l->run = calloc(1, sizeof(*l->run));
	if (!l->run)
		return ENOMEM;
	l->v->run = l->run;
	l->confine = confine;
	pthread_mutex_init(&l->lock, NULL);
	l->guest_ns = l->entered_ns = 0;
	atomic_store(&l->running, false);
	int rc = pthread_create(&l->thread, NULL, fake_vcpu_loop_thread, l);
	if (rc)
		return rc;
	while (!atomic_load(&l->running))
		sched_yield();
	return 0;
}

/* After the VM was stopped: joins the thread and frees the run area. */
static inline void fake_vcpu_loop_join(struct fake_vcpu_loop *l)
{
	pthread_join(l->thread, NULL);
	atomic_store(&l->v->started, false);
	l->v->run = NULL;
	free(l->run);
	l->run = NULL;
	pthread_mutex_destroy(&l->lock);
}

#endif
