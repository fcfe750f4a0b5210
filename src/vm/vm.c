#include "vm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/cpuid.h"
#include "arch/x86/vcpu_arch.h"
#include "lib/log.h"
#include "lib/util.h"
#include "memory/ksm.h"
#include "memory/kvm_slots.h"
#include "vm/irq_routing.h"
#include "vm/throttle_policy.h"
#include "vm/vcpu.h"

/* Below the MMIO hole; KVM needs three pages for the VMX real-mode TSS and one for the identity map. */
#define KVM_TSS_ADDR 0xfffbd000ULL
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ULL

int vm_open_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (e == ENOENT)
			log_error("vm", "/dev/kvm does not exist: this host has no KVM. Load the kvm_intel or "
					"kvm_amd module, or enable nested virtualization for this machine");
		else if (e == EACCES || e == EPERM)
			log_error("vm", "no permission to open /dev/kvm: add your user to the 'kvm' group "
					"(sudo usermod -aG kvm $USER, then log in again) or run vmon as root");
		else
			log_error("vm", "cannot open /dev/kvm: %s", strerror(e));
		return -e;
	}
	int api = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		log_error("vm", "/dev/kvm speaks KVM API version %d, vmon needs %d", api, KVM_API_VERSION);
		close(fd);
		return -ENOTSUP;
	}
	return fd;
}

uint64_t vm_host_memory(void)
{
	struct sysinfo si;
	if (sysinfo(&si) != 0)
		return UINT64_MAX;
	return ((uint64_t)si.totalram + (uint64_t)si.totalswap) * si.mem_unit;
}

static int check_host_memory(uint64_t want)
{
	uint64_t total = vm_host_memory();
	if (want > total) {
		log_error("vm", "--memory %llu MiB is more than this host has (%llu MiB of RAM and swap): "
				"give a smaller --memory",
			  (unsigned long long)(want / MiB), (unsigned long long)(total / MiB));
		return -ENOMEM;
	}
	return 0;
}

static int setup_memory(struct vm *vm)
{
	int rc = check_host_memory(vm->cfg->memory);
	if (rc)
		return rc;
	enum guest_mem_backing backing = vm->cfg->memory_hugepages ? GUEST_MEM_HUGETLB
					 : vm->cfg->memory_merge  ? GUEST_MEM_MERGEABLE
								  : GUEST_MEM_MEMFD;
	char err[400];
	rc = guest_mem_init_backed(&vm->mem, vm->cfg->memory, backing, err, sizeof(err));
	if (rc) {
		log_error("vm", "cannot allocate %llu MiB of guest memory: %s", (unsigned long long)(vm->cfg->memory / MiB),
			  err);
		return rc;
	}
	if (backing == GUEST_MEM_MERGEABLE)
		ksm_log_host_state();
	else if (backing == GUEST_MEM_HUGETLB)
		log_info("vm", "guest RAM: %llu MiB in 2 MiB hugepages", (unsigned long long)(vm->cfg->memory / MiB));
	/* Before any slot is registered: decides how the dirty log of a later migration is read. */
	vm->dirty_manual_protect = kvm_slots_manual_protect(vm->vm_fd);
	for (int i = 0; i < vm->mem.nregions; i++) {
		const struct guest_mem_region *r = &vm->mem.regions[i];
		rc = kvm_slot_set(vm->vm_fd, &vm->mem, i, false, false);
		if (rc) {
			log_error("vm", "KVM refused guest memory region %d (%llu MiB at 0x%llx): %s", i,
				  (unsigned long long)(r->size / MiB), (unsigned long long)r->gpa, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

static int setup_gsi_routing(struct vm *vm);

static int setup_irqchip(struct vm *vm)
{
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0) {
		log_error("vm", "KVM_SET_TSS_ADDR failed: %s", strerror(errno));
		return -errno;
	}
	uint64_t idmap = KVM_IDENTITY_MAP_ADDR;
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0) {
		log_error("vm", "KVM_SET_IDENTITY_MAP_ADDR failed: %s", strerror(errno));
		return -errno;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		log_error("vm", "cannot create the in-kernel interrupt controllers (KVM_CREATE_IRQCHIP): %s",
			  strerror(errno));
		return -errno;
	}
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		log_error("vm", "cannot create the in-kernel PIT (KVM_CREATE_PIT2): %s", strerror(errno));
		return -errno;
	}
	return setup_gsi_routing(vm);
}

/* The PC's legacy routes; the platform's struct irq_routing repeats them when it adds MSI routes. */
static int setup_gsi_routing(struct vm *vm)
{
	return irq_routing_commit_legacy(vm->vm_fd);
}

static int probe_host(struct vm *vm)
{
	memset(&vm->host, 0, sizeof(vm->host));
	if (vm->cfg->workarounds == HOST_WORKAROUNDS_OFF)
		return 0;
	int rc = host_probe_run(vm->kvm_fd, &vm->host);
	if (rc) {
		log_error("vm", "probing the host's KVM failed: %s", strerror(-rc));
		return rc;
	}
	if (vm->cfg->workarounds == HOST_WORKAROUNDS_ON) {
		vm->host.emulator_limited = true;
		vm->host.syscall_broken = true;
		vm->host.hypercall_broken = true;
	}
	return 0;
}

int vm_create(struct vm *vm, const struct vm_config *cfg)
{
	memset(vm, 0, sizeof(*vm));
	vm->cfg = cfg;
	vm->kvm_fd = vm->vm_fd = -1;
	vm->mem.fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_mutex_init(&vm->control_lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	atomic_store(&vm->state, VM_CREATED);
	int rc = throttle_init(&vm->throttle, THROTTLE_PERIOD_NS);
	if (rc) {
		log_error("vm", "cannot set up the vCPU throttle: %s", strerror(-rc));
		return rc;
	}

	rc = vm_open_kvm();
	if (rc < 0)
		return rc;
	vm->kvm_fd = rc;

	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->vcpu_mmap_size <= 0) {
		log_error("vm", "KVM_GET_VCPU_MMAP_SIZE failed: %s", strerror(errno));
		return -errno;
	}
	if ((rc = probe_host(vm)))
		return rc;

	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		rc = -errno;
		log_error("vm", "KVM_CREATE_VM failed: %s", strerror(-rc));
		return rc;
	}
	if ((rc = setup_irqchip(vm)) || (rc = setup_memory(vm)))
		return rc;

	struct kvm_cpuid2 *supported = cpuid_get_supported(vm->kvm_fd);
	if (!supported) {
		rc = -errno;
		log_error("vm", "KVM_GET_SUPPORTED_CPUID failed: %s", strerror(-rc));
		return rc;
	}
	vm->cpuid = cpuid_policy_build(supported, cfg->cpus, &vm->host);
	free(supported);
	if (!vm->cpuid)
		return -ENOMEM;

	if ((rc = x86_vm_arch_init(vm)))
		return rc;

	vm->vcpus = calloc(cfg->cpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return -ENOMEM;
	for (unsigned int i = 0; i < cfg->cpus; i++) {
		if ((rc = vcpu_create(vm, i, &vm->vcpus[i])))
			return rc;
		vm->ncpus++;
	}
	return 0;
}

void vm_destroy(struct vm *vm)
{
	for (unsigned int i = 0; i < vm->ncpus; i++)
		vcpu_destroy(vm->vcpus[i]);
	free(vm->vcpus);
	vm->vcpus = NULL;
	vm->ncpus = 0;
	if (vm->arch)
		x86_vm_arch_free(vm);
	free(vm->cpuid);
	vm->cpuid = NULL;
	guest_mem_destroy(&vm->mem);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->vm_fd = vm->kvm_fd = -1;
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	pthread_mutex_destroy(&vm->control_lock);
	throttle_destroy(&vm->throttle);
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, const char *fmt, ...)
{
	pthread_mutex_lock(&vm->lock);
	bool first = atomic_load(&vm->stop_reason) == VM_STOP_NONE;
	if (first) {
		atomic_store(&vm->stop_reason, reason);
		if (fmt) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(vm->stop_message, sizeof(vm->stop_message), fmt, ap);
			va_end(ap);
		}
		atomic_store(&vm->state, VM_STOPPED);
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
	if (!first)
		return;
	throttle_wake(&vm->throttle);
	for (unsigned int i = 0; i < vm->ncpus; i++)
		vcpu_kick(vm->vcpus[i]);
}

int vm_set_throttle(struct vm *vm, uint32_t pct)
{
	if (pct > THROTTLE_MAX_PCT)
		return -EINVAL;
	if (throttle_get(&vm->throttle) == pct)
		return 0;
	throttle_set(&vm->throttle, pct);
	/* Each vCPU arms or disarms its own timer when it sees the new setting. */
	for (unsigned int i = 0; i < vm->ncpus; i++)
		vcpu_kick(vm->vcpus[i]);
	return 0;
}

/* A vCPU in a long emulated stretch may take a while to reach an exit on slow hosts. */
#define PAUSE_TIMEOUT_S 10

void vm_vcpu_park_if_paused(struct vm *vm)
{
	if (!atomic_load(&vm->pause_requested))
		return;
	pthread_mutex_lock(&vm->lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->cond);
	while (atomic_load(&vm->pause_requested) && atomic_load(&vm->state) != VM_STOPPED)
		pthread_cond_wait(&vm->cond, &vm->lock);
	vm->parked--;
	pthread_mutex_unlock(&vm->lock);
}

void vm_freeze_clock(struct vm *vm)
{
	struct kvm_clock_data clock = { 0 };
	uint64_t now = realtime_ns();
	vm->clock_saved = ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) == 0;
	vm->paused_clock = clock.clock;
	/* KVM's own reading of the host's wall clock is taken at the same instant as the kvmclock's. */
	vm->paused_realtime = (clock.flags & KVM_CLOCK_REALTIME) ? clock.realtime : now;
}

static void restore_clock(struct vm *vm)
{
	if (!vm->clock_saved)
		return;
	struct kvm_clock_data clock = { .clock = vm->paused_clock };
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
		log_warn("vm", "cannot restore the guest clock after a pause: %s", strerror(errno));
	vm->clock_saved = false;
}

int vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->control_lock);
	pthread_mutex_lock(&vm->lock);
	int now = atomic_load(&vm->state);
	if (now != VM_RUNNING) {
		pthread_mutex_unlock(&vm->lock);
		pthread_mutex_unlock(&vm->control_lock);
		return now == VM_PAUSED ? -EALREADY : -EBUSY;
	}
	atomic_store(&vm->pause_requested, true);
	pthread_mutex_unlock(&vm->lock);
	throttle_wake(&vm->throttle);
	for (unsigned int i = 0; i < vm->ncpus; i++)
		vcpu_kick(vm->vcpus[i]);

	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += PAUSE_TIMEOUT_S;
	int rc = 0;
	pthread_mutex_lock(&vm->lock);
	while (vm->parked < vm->ncpus && atomic_load(&vm->state) != VM_STOPPED && rc == 0)
		rc = pthread_cond_timedwait(&vm->cond, &vm->lock, &deadline);
	if (atomic_load(&vm->state) == VM_STOPPED) {
		rc = -EBUSY;
	} else if (vm->parked < vm->ncpus) {
		atomic_store(&vm->pause_requested, false);
		pthread_cond_broadcast(&vm->cond);
		log_warn("vm", "pause timed out: %u of %u vCPUs stopped within %d s; the VM keeps running",
			 vm->parked, vm->ncpus, PAUSE_TIMEOUT_S);
		rc = -ETIMEDOUT;
	} else {
		vm_freeze_clock(vm);
		if (vm->io_pause)
			vm->io_pause(vm);
		atomic_store(&vm->state, VM_PAUSED);
		rc = 0;
	}
	pthread_mutex_unlock(&vm->lock);
	pthread_mutex_unlock(&vm->control_lock);
	return rc;
}

int vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->control_lock);
	pthread_mutex_lock(&vm->lock);
	int now = atomic_load(&vm->state);
	int rc = now == VM_RUNNING ? -EALREADY : -EBUSY;
	if (now == VM_PAUSED) {
		if (vm->io_resume)
			vm->io_resume(vm);
		restore_clock(vm);
		atomic_store(&vm->state, VM_RUNNING);
		atomic_store(&vm->pause_requested, false);
		pthread_cond_broadcast(&vm->cond);
		rc = 0;
	}
	pthread_mutex_unlock(&vm->lock);
	pthread_mutex_unlock(&vm->control_lock);
	return rc;
}

const char *vm_state_name(enum vm_state s)
{
	switch (s) {
	case VM_CREATED: return "created";
	case VM_RUNNING: return "running";
	case VM_PAUSED: return "paused";
	case VM_STOPPED: return "stopped";
	}
	return "unknown";
}

void vm_irq_set(void *opaque, unsigned int gsi, int level)
{
	struct vm *vm = opaque;
	struct kvm_irq_level irq = { .irq = gsi, .level = (uint32_t)level };
	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0) {
		static struct log_ratelimit rl;
		log_warn_ratelimited(&rl, "vm", "KVM_IRQ_LINE gsi %u failed: %s", gsi, strerror(errno));
	}
}

const char *vm_stop_reason_name(enum vm_stop_reason r)
{
	switch (r) {
	case VM_STOP_NONE: return "none";
	case VM_STOP_POWEROFF: return "poweroff";
	case VM_STOP_REBOOT: return "reboot";
	case VM_STOP_SIGNAL: return "signal";
	case VM_STOP_TRIPLE_FAULT: return "triple-fault";
	case VM_STOP_PANIC: return "panic";
	case VM_STOP_ERROR: return "error";
	case VM_STOP_MIGRATED: return "migrated";
	}
	return "unknown";
}
