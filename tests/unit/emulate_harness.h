/*
 * A probe_vm guest run the way vmon's vCPU loop runs a vCPU: emulation failures go to
 * x86_handle_emulation_failure(), so tests see the architectural result whether the host's
 * KVM ran an instruction or vmon emulated it. Shared by the emulation test suites; include it
 * after cmocka.h.
 */
#ifndef VMON_TESTS_UNIT_EMULATE_HARNESS_H
#define VMON_TESTS_UNIT_EMULATE_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "arch/x86/emulate.h"
#include "arch/x86/host_probe.h"
#include "arch/x86/probe_vm.h"
#include "arch/x86/vcpu_arch.h"
#include "vm/vcpu.h"
#include "vm/throttle_policy.h"
#include "vm/vm.h"

#define STR_(x) #x
#define STR(x) STR_(x)

struct harness {
	int kvm_fd;
	struct probe_vm pv;
	struct vm vm;
	struct vcpu vcpu;
	unsigned int failures; /* emulation failures handled */
};

static __attribute__((unused)) struct host_caps host_caps;
static __attribute__((unused)) bool host_caps_done;

static inline const struct host_caps *caps(int kvm_fd)
{
	if (!host_caps_done) {
		assert_int_equal(host_probe_run(kvm_fd, &host_caps), 0);
		host_caps_done = true;
	}
	return &host_caps;
}

static inline void harness_init(struct harness *h)
{
	memset(h, 0, sizeof(*h));
	h->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (h->kvm_fd < 0)
		skip();
	assert_int_equal(probe_vm_create(&h->pv, h->kvm_fd), 0);
	h->vm.kvm_fd = h->kvm_fd;
	h->vm.vm_fd = h->pv.vm_fd;
	h->vm.vcpu_mmap_size = (int)h->pv.run_size;
	h->vm.mem = h->pv.mem;
	h->vm.ncpus = 0; /* no vCPU threads to kick when the VM stops */
	pthread_mutex_init(&h->vm.lock, NULL);
	pthread_cond_init(&h->vm.cond, NULL);
	throttle_init(&h->vm.throttle, THROTTLE_PERIOD_NS);
	h->vcpu.vm = &h->vm;
	h->vcpu.fd = h->pv.vcpu_fd;
	h->vcpu.run = h->pv.run;
	assert_int_equal(x86_vcpu_arch_init(&h->vcpu), 0);
}

/* Host capabilities matter only for the SYSCALL fix; the plain emulation tests run without them. */
static inline void harness_vm_arch(struct harness *h, const struct host_caps *c)
{
	h->vm.host = *c;
	assert_int_equal(x86_vm_arch_init(&h->vm), 0);
}

static inline void harness_destroy(struct harness *h)
{
	x86_vcpu_arch_free(&h->vcpu);
	if (h->vm.arch)
		x86_vm_arch_free(&h->vm);
	pthread_mutex_destroy(&h->vm.lock);
	pthread_cond_destroy(&h->vm.cond);
	throttle_destroy(&h->vm.throttle);
	probe_vm_destroy(&h->pv);
	close(h->kvm_fd);
}

/* Runs like vmon's vCPU loop: emulation failures go to the handler, anything else returns. */
static inline int harness_run(struct harness *h)
{
	for (int i = 0; i < 100; i++) {
		int r = probe_vm_run(&h->pv, 2000);
		if (r == KVM_EXIT_INTERNAL_ERROR && h->pv.run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION) {
			h->failures++;
			/* As the vCPU loop does: the handler says why, the loop stops the VM. */
			char why[sizeof(h->vm.stop_message)];
			if (x86_handle_emulation_failure(&h->vcpu, why, sizeof(why))) {
				vm_request_stop(&h->vm, VM_STOP_ERROR, "%s", why);
				return -1;
			}
			x86_vcpu_after_exit(&h->vcpu);
			continue;
		}
		if (r == KVM_EXIT_IO) {
			x86_vcpu_after_exit(&h->vcpu);
			continue;
		}
		return r;
	}
	return -2;
}

static inline uint64_t kdata(struct harness *h, unsigned int slot)
{
	uint64_t v = 0;
	assert_int_equal(guest_mem_read(&h->pv.mem, PROBE_VM_KDATA + slot * 8, &v, 8), 0);
	return v;
}

static inline void load(struct harness *h, uint64_t gpa, const uint8_t *start, const uint8_t *end)
{
	assert_int_equal(probe_vm_load(&h->pv, gpa, start, (size_t)(end - start)), 0);
}

#define BLOB(name)                                                                                \
	".globl " #name "_start\n .hidden " #name "_start\n .globl " #name "_end\n .hidden " #name "_end\n" #name "_start:\n"
#define BLOB_END(name) #name "_end:\n"
#define KDATA(n) STR(PROBE_VM_KDATA) "+" #n "*8"

#endif
