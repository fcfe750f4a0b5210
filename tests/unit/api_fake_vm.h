/*
 * A struct vm without KVM for the API tests: real lifecycle locks and state, so vm_pause,
 * vm_resume and vm_request_stop run unchanged, and "vCPU" threads that count loop iterations and
 * park exactly where a real vCPU thread does, between exits. Optionally the platform's serial
 * port and i8042, so device metrics and Ctrl-Alt-Del can be observed.
 */
#ifndef VMON_TESTS_API_FAKE_VM_H
#define VMON_TESTS_API_FAKE_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "lib/util.h"
#include "vm/platform.h"
#include "vm/throttle_policy.h"
#include "vm/vcpu.h"
#include "vm/vm.h"

struct fake_vm {
	struct vm vm;
	struct vm_config cfg;
	pthread_t threads[4];
	_Atomic uint64_t progress[4]; /* iterations of each fake vCPU's loop */
	bool threads_started;
};

struct fake_vcpu_arg {
	struct fake_vm *f;
	unsigned int id;
};
static struct fake_vcpu_arg fake_vcpu_args[4];

static inline void *fake_vcpu_thread(void *arg)
{
	struct fake_vcpu_arg *a = arg;
	struct vm *vm = &a->f->vm;
	while (atomic_load(&vm->state) != VM_STOPPED) {
		vm_vcpu_park_if_paused(vm);
		atomic_fetch_add(&a->f->progress[a->id], 1);
		atomic_fetch_add(&vm->vcpus[a->id]->exits[VCPU_EXIT_IO], 1);
		struct timespec ts = { 0, 200 * 1000 };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static inline void fake_vm_init(struct fake_vm *f, unsigned int ncpus, bool with_platform, bool run_threads)
{
	memset(f, 0, sizeof(*f));
	config_init_defaults(&f->cfg);
	f->cfg.kernel_path = strdup("/boot/test-kernel");
	f->cfg.memory = 64 * MiB;
	f->cfg.cpus = ncpus;
	struct vm *vm = &f->vm;
	vm->cfg = &f->cfg;
	vm->kvm_fd = vm->vm_fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_mutex_init(&vm->control_lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	throttle_init(&vm->throttle, THROTTLE_PERIOD_NS);
	vm->ncpus = ncpus;
	vm->vcpus = calloc(ncpus, sizeof(*vm->vcpus));
	for (unsigned int i = 0; i < ncpus; i++) {
		vm->vcpus[i] = calloc(1, sizeof(struct vcpu));
		vm->vcpus[i]->vm = vm;
		vm->vcpus[i]->id = i;
	}
	if (with_platform) {
		struct platform *p = calloc(1, sizeof(*p));
		serial_init(&p->com1, (struct irq_line){ 0 }, NULL, NULL);
		i8042_init(&p->i8042, (struct irq_line){ 0 }, NULL, NULL);
		vm->platform = p;
	}
	vm->started_ns = monotonic_ns();
	atomic_store(&vm->state, VM_RUNNING);
	if (run_threads) {
		for (unsigned int i = 0; i < ncpus && i < 4; i++) {
			fake_vcpu_args[i] = (struct fake_vcpu_arg){ f, i };
			pthread_create(&f->threads[i], NULL, fake_vcpu_thread, &fake_vcpu_args[i]);
		}
		f->threads_started = true;
	}
}

static inline void fake_vm_destroy(struct fake_vm *f)
{
	struct vm *vm = &f->vm;
	vm_request_stop(vm, VM_STOP_SIGNAL, "test over");
	if (f->threads_started)
		for (unsigned int i = 0; i < vm->ncpus && i < 4; i++)
			pthread_join(f->threads[i], NULL);
	struct platform *p = vm->platform;
	if (p) {
		serial_destroy(&p->com1);
		i8042_destroy(&p->i8042);
		free(p);
	}
	for (unsigned int i = 0; i < vm->ncpus; i++)
		free(vm->vcpus[i]);
	free(vm->vcpus);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	pthread_mutex_destroy(&vm->control_lock);
	throttle_destroy(&vm->throttle);
	config_free(&f->cfg);
}

static inline uint64_t fake_progress(struct fake_vm *f)
{
	uint64_t sum = 0;
	for (unsigned int i = 0; i < f->vm.ncpus && i < 4; i++)
		sum += atomic_load(&f->progress[i]);
	return sum;
}

static inline void sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

#endif
