#include "vm/vcpu.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86/cpuid.h"
#include "arch/x86/emulate.h"
#include "arch/x86/msr.h"
#include "arch/x86/vcpu_arch.h"
#include "lib/util.h"
#include "lib/log.h"
#include "sandbox/sandbox.h"
#include "vm/vm.h"

/* Sent to a vCPU thread to interrupt KVM_RUN, by another thread or by its own throttle timer. */
#define VCPU_KICK_SIGNAL SIGUSR1

/* The run area of the vCPU this thread runs (NULL on other threads). */
static __thread struct kvm_run *kick_run;

/*
 * A kick from another thread sets immediate_exit itself; a throttle tick comes from a timer, so
 * the handler sets it, or a tick landing just before KVM_RUN would be lost for a whole period.
 */
static void kick_handler(int sig)
{
	(void)sig;
	if (kick_run)
		kick_run->immediate_exit = 1;
}

static void install_kick_handler(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
}

int vcpu_create(struct vm *vm, unsigned int id, struct vcpu **out)
{
	struct vcpu *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (v->fd < 0) {
		int rc = -errno;
		log_error("vcpu", "cannot create vCPU %u: %s", id, strerror(-rc));
		free(v);
		return rc;
	}
	v->run = mmap(NULL, (size_t)vm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		int rc = -errno;
		log_error("vcpu", "cannot map vCPU %u's run area: %s", id, strerror(-rc));
		close(v->fd);
		free(v);
		return rc;
	}
	int rc = cpuid_apply_to_vcpu(v->fd, vm->cpuid, id, vm->cfg->cpus);
	if (rc) {
		log_error("vcpu", "KVM refused the CPUID policy for vCPU %u: %s", id, strerror(-rc));
		goto fail;
	}
	rc = msr_setup_vcpu(vm->kvm_fd, v->fd, id);
	if (rc) {
		log_error("vcpu", "cannot set the initial MSRs of vCPU %u: %s", id, strerror(-rc));
		goto fail;
	}
	rc = x86_vcpu_arch_init(v);
	if (rc)
		goto fail;
	*out = v;
	return 0;
fail:
	munmap(v->run, (size_t)vm->vcpu_mmap_size);
	close(v->fd);
	free(v);
	return rc;
}

void vcpu_destroy(struct vcpu *v)
{
	if (!v)
		return;
	if (v->arch)
		x86_vcpu_arch_free(v);
	munmap(v->run, (size_t)v->vm->vcpu_mmap_size);
	close(v->fd);
	free(v);
}

static void count(struct vcpu *v, enum vcpu_exit_kind k) { atomic_fetch_add(&v->exits[k], 1); }

static void handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint32_t size = run->io.size;
	uint64_t total = (uint64_t)size * run->io.count;
	/* KVM fills these, but a bad value would make us read outside the shared run page. */
	if (size == 0 || size > 4 || run->io.data_offset + total > (uint64_t)v->vm->vcpu_mmap_size) {
		vm_request_stop(v->vm, VM_STOP_ERROR, "vCPU %u: malformed port-I/O exit (size %u, count %u)", v->id,
				size, run->io.count);
		return;
	}
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	for (uint32_t i = 0; i < run->io.count; i++, data += size) {
		if (run->io.direction == KVM_EXIT_IO_OUT)
			bus_write(&v->vm->pio, run->io.port, data, size);
		else
			bus_read(&v->vm->pio, run->io.port, data, size);
	}
}

static void handle_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint32_t len = run->mmio.len;
	if (len == 0 || len > sizeof(run->mmio.data)) {
		vm_request_stop(v->vm, VM_STOP_ERROR, "vCPU %u: malformed MMIO exit (len %u)", v->id, len);
		return;
	}
	if (run->mmio.is_write)
		bus_write(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
	else
		bus_read(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
}

static uint64_t guest_rip(struct vcpu *v)
{
	struct kvm_regs regs;
	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0)
		return 0;
	return regs.rip;
}

static void handle_system_event(struct vcpu *v)
{
	switch (v->run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		vm_request_stop(v->vm, VM_STOP_POWEROFF, "guest powered off");
		break;
	case KVM_SYSTEM_EVENT_RESET:
		vm_request_stop(v->vm, VM_STOP_REBOOT, "guest asked to reboot; vmon stopped the VM");
		break;
	case KVM_SYSTEM_EVENT_CRASH:
		vm_request_stop(v->vm, VM_STOP_PANIC, "guest reported a crash");
		break;
	default:
		vm_request_stop(v->vm, VM_STOP_ERROR, "vCPU %u: unknown system event %u", v->id,
				v->run->system_event.type);
	}
}

static void handle_internal_error(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION) {
		char why[sizeof(v->vm->stop_message)];
		if (x86_handle_emulation_failure(v, why, sizeof(why)))
			vm_request_stop(v->vm, VM_STOP_ERROR, "%s", why);
		return;
	}
	vm_request_stop(v->vm, VM_STOP_ERROR, "vCPU %u: KVM internal error (suberror %u) at RIP 0x%llx", v->id,
			run->internal.suberror, (unsigned long long)guest_rip(v));
}

/* Handles one exit; returns false when the vCPU must stop running. */
static bool handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		count(v, VCPU_EXIT_IO);
		handle_io(v);
		break;
	case KVM_EXIT_MMIO:
		count(v, VCPU_EXIT_MMIO);
		handle_mmio(v);
		break;
	case KVM_EXIT_HLT:
		/* With the in-kernel LAPIC, KVM handles HLT itself; seeing one means the guest stopped for good. */
		count(v, VCPU_EXIT_HLT);
		vm_request_stop(v->vm, VM_STOP_ERROR, "vCPU %u halted at RIP 0x%llx", v->id,
				(unsigned long long)guest_rip(v));
		return false;
	case KVM_EXIT_SHUTDOWN:
		count(v, VCPU_EXIT_SHUTDOWN);
		vm_request_stop(v->vm, VM_STOP_TRIPLE_FAULT,
				"vCPU %u triple-faulted at RIP 0x%llx: the guest crashed (see its console output above)",
				v->id, (unsigned long long)guest_rip(v));
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		count(v, VCPU_EXIT_SYSTEM_EVENT);
		handle_system_event(v);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		count(v, VCPU_EXIT_INTERNAL_ERROR);
		handle_internal_error(v);
		break;
	case KVM_EXIT_FAIL_ENTRY:
		count(v, VCPU_EXIT_OTHER);
		vm_request_stop(v->vm, VM_STOP_ERROR, "vCPU %u: KVM could not enter the guest (reason 0x%llx)", v->id,
				(unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return false;
	default:
		count(v, VCPU_EXIT_OTHER);
		vm_request_stop(v->vm, VM_STOP_ERROR, "vCPU %u: unexpected KVM exit reason %u at RIP 0x%llx", v->id,
				run->exit_reason, (unsigned long long)guest_rip(v));
		return false;
	}
	return true;
}

uint64_t vcpu_hist_bucket_le_ns(unsigned int i)
{
	return i + 1 >= VCPU_HIST_BUCKETS ? UINT64_MAX : VCPU_HIST_BASE_NS << i;
}

static void record_handling_time(struct vcpu *v, uint64_t ns)
{
	unsigned int b = 0;
	while (b + 1 < VCPU_HIST_BUCKETS && ns >= vcpu_hist_bucket_le_ns(b))
		b++;
	atomic_fetch_add_explicit(&v->handle_hist[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&v->handle_ns, ns, memory_order_relaxed);
}

void vcpu_bind_thread(struct vcpu *v)
{
	install_kick_handler();
	kick_run = v->run;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

/* A throttled vCPU stops waiting as soon as the VM must stop or pause. */
static bool hold_must_end(void *opaque)
{
	struct vm *vm = opaque;
	return atomic_load(&vm->pause_requested) || atomic_load(&vm->state) == VM_STOPPED;
}

void vcpu_interrupted(struct vcpu *v)
{
	v->run->immediate_exit = 0;
	count(v, VCPU_EXIT_INTR);
	int rc = vcpu_throttle_on_kick(&v->throttle, &v->vm->throttle, VCPU_KICK_SIGNAL, hold_must_end, v->vm);
	if (rc)
		log_error("vcpu", "vCPU %u cannot make its throttle timer (%s): it runs unthrottled, so a migration "
				  "that needs auto-converge may not converge",
			  v->id, strerror(-rc));
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	sandbox_enter(SANDBOX_VCPU);
	vcpu_bind_thread(v);
	/* Throttled before this thread started: the first KVM_RUN ends at once to arm the timer. */
	if (throttle_get(&vm->throttle))
		v->run->immediate_exit = 1;
	/* Benchmarks read this line's time as "first guest instruction". */
	log_debug("vcpu", "vCPU %u: entering the guest", v->id);

	while (atomic_load(&vm->state) != VM_STOPPED) {
		vm_vcpu_park_if_paused(vm);
		if (atomic_load(&vm->state) == VM_STOPPED)
			break;
		uint64_t t0 = monotonic_ns();
		int r = ioctl(v->fd, KVM_RUN, 0);
		uint64_t t1 = monotonic_ns();
		atomic_fetch_add_explicit(&v->run_ns, t1 - t0, memory_order_relaxed);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				vcpu_interrupted(v);
				continue;
			}
			int e = errno;
			char why[PATH_MAX + 256];
			/* EFAULT: KVM could not get a page of guest RAM, as when its file has shrunk. */
			if (e == EFAULT && guest_mem_explain_fault(&vm->mem, why, sizeof(why)))
				vm_request_stop(vm, VM_STOP_ERROR, "vCPU %u: %s", v->id, why);
			else
				vm_request_stop(vm, VM_STOP_ERROR, "vCPU %u: KVM_RUN failed: %s", v->id, strerror(e));
			break;
		}
		bool go_on = handle_exit(v);
		if (go_on)
			x86_vcpu_after_exit(v);
		record_handling_time(v, monotonic_ns() - t1);
		if (!go_on)
			break;
	}
	vcpu_throttle_release(&v->throttle);
	return NULL;
}

int vcpu_start(struct vcpu *v)
{
	install_kick_handler();
	/* The kick signal stays blocked everywhere except while a vCPU thread runs, see vcpu_thread. */
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	int rc = pthread_create(&v->thread, NULL, vcpu_thread, v);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		log_error("vcpu", "cannot start the thread of vCPU %u: %s", v->id, strerror(rc));
		return -rc;
	}
	atomic_store(&v->started, true);
	return 0;
}

void vcpu_kick(struct vcpu *v)
{
	if (!v || !atomic_load(&v->started))
		return;
	/* immediate_exit covers a kick that lands just before the thread enters KVM_RUN. */
	v->run->immediate_exit = 1;
	pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

void vcpu_join(struct vcpu *v)
{
	if (v && atomic_exchange(&v->started, false))
		pthread_join(v->thread, NULL);
}

const char *vcpu_exit_kind_name(enum vcpu_exit_kind k)
{
	static const char *const names[VCPU_EXIT_KIND_COUNT] = {
		[VCPU_EXIT_IO] = "io",
		[VCPU_EXIT_MMIO] = "mmio",
		[VCPU_EXIT_HLT] = "hlt",
		[VCPU_EXIT_SHUTDOWN] = "shutdown",
		[VCPU_EXIT_INTERNAL_ERROR] = "internal_error",
		[VCPU_EXIT_SYSTEM_EVENT] = "system_event",
		[VCPU_EXIT_INTR] = "signal",
		[VCPU_EXIT_OTHER] = "other",
	};
	return k < VCPU_EXIT_KIND_COUNT ? names[k] : "unknown";
}
