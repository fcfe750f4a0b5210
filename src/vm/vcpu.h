/* A vCPU: a thread running KVM_RUN and dispatching every exit. */
#ifndef VMON_VM_VCPU_H
#define VMON_VM_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vm/throttle.h"

struct vm;

/* Exit reasons counted per vCPU; the metrics and the cost of a VMM are read from these. */
enum vcpu_exit_kind {
	VCPU_EXIT_IO = 0,
	VCPU_EXIT_MMIO,
	VCPU_EXIT_HLT,
	VCPU_EXIT_SHUTDOWN,
	VCPU_EXIT_INTERNAL_ERROR,
	VCPU_EXIT_SYSTEM_EVENT,
	VCPU_EXIT_INTR,      /* KVM_RUN interrupted by a signal */
	VCPU_EXIT_OTHER,
	VCPU_EXIT_KIND_COUNT
};

/*
 * Exit handling time histogram: bucket i counts exits handled in under VCPU_HIST_BASE_NS << i
 * nanoseconds; the last bucket counts the rest.
 */
#define VCPU_HIST_BUCKETS 16
#define VCPU_HIST_BASE_NS 250ULL

struct vcpu {
	struct vm *vm;
	unsigned int id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	_Atomic bool started;
	_Atomic uint64_t exits[VCPU_EXIT_KIND_COUNT];
	_Atomic uint64_t run_ns;     /* wall time spent inside KVM_RUN */
	_Atomic uint64_t handle_ns;  /* wall time spent handling exits in vmon */
	_Atomic uint64_t handle_hist[VCPU_HIST_BUCKETS];
	struct vcpu_throttle throttle; /* the vCPU's side of the VM's throttle (auto-converge) */
	void *arch; /* per-vCPU state of the x86 emulation-failure and SYSCALL handling */
};

int vcpu_create(struct vm *vm, unsigned int id, struct vcpu **out);
void vcpu_destroy(struct vcpu *vcpu);

/* Starts the vCPU thread; it runs until the VM stops. */
int vcpu_start(struct vcpu *vcpu);
/* Interrupts KVM_RUN so the thread notices a stop or pause request. */
void vcpu_kick(struct vcpu *vcpu);
void vcpu_join(struct vcpu *vcpu);

/*
 * Makes the calling thread the one running v: the kick signal reaches it and ends its next or
 * current KVM_RUN. The vCPU thread calls it first; tests that drive a vCPU without KVM too.
 */
void vcpu_bind_thread(struct vcpu *v);
/*
 * What the vCPU thread does when KVM_RUN was interrupted (a kick, a throttle tick): counts it and,
 * while the VM is throttled, stays out of the guest for the held part of the period.
 */
void vcpu_interrupted(struct vcpu *v);

const char *vcpu_exit_kind_name(enum vcpu_exit_kind k);
/* Upper bound in ns of histogram bucket i (UINT64_MAX for the last). */
uint64_t vcpu_hist_bucket_le_ns(unsigned int i);

#endif
