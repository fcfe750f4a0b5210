#include "arch/x86/probe_vm.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "lib/util.h"

#define PTE_P  0x1ULL
#define PTE_RW 0x2ULL
#define PTE_US 0x4ULL

#define CR0_PE 0x1ULL
#define CR0_MP 0x2ULL
#define CR0_ET 0x10ULL
#define CR0_NE 0x20ULL
#define CR0_WP 0x10000ULL
#define CR0_AM 0x40000ULL
#define CR0_PG 0x80000000ULL
#define CR4_PAE 0x20ULL
#define CR4_OSFXSR 0x200ULL
#define CR4_OSXMMEXCPT 0x400ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL

/* The probe VM's own RAM, never migrated: written without marking (guest_mem_wrote()). */
static uint64_t *guest_u64(struct probe_vm *pv, uint64_t gpa)
{
	return gpa_to_host_write(&pv->mem, gpa, 8);
}

static void write_page_tables(struct probe_vm *pv)
{
	/* Upper levels allow user access; each 4K PTE decides (probe_vm_set_user). */
	*guest_u64(pv, PROBE_VM_PML4) = PROBE_VM_PDPT | PTE_P | PTE_RW | PTE_US;
	*guest_u64(pv, PROBE_VM_PDPT) = PROBE_VM_PD | PTE_P | PTE_RW | PTE_US;
	*guest_u64(pv, PROBE_VM_PD) = PROBE_VM_PT | PTE_P | PTE_RW | PTE_US;
	for (uint64_t gpa = 0x1000; gpa < PROBE_VM_RAM_SIZE; gpa += 0x1000)
		*guest_u64(pv, PROBE_VM_PT + (gpa >> 12) * 8) = gpa | PTE_P | PTE_RW;
}

static void write_gdt_tss(struct probe_vm *pv)
{
	static const uint64_t gdt[] = {
		0,
		0x00cf9b000000ffffULL, /* 0x08 kernel 32-bit code (unused, as in Linux) */
		0x00af9b000000ffffULL, /* 0x10 kernel 64-bit code */
		0x00cf93000000ffffULL, /* 0x18 kernel data */
		0x00cffb000000ffffULL, /* 0x23 user 32-bit code */
		0x00cff3000000ffffULL, /* 0x2b user data */
		0x00affb000000ffffULL, /* 0x33 user 64-bit code */
		0,
	};
	guest_mem_write(&pv->mem, PROBE_VM_GDT, gdt, sizeof(gdt));
	uint64_t base = PROBE_VM_TSS, limit = 0x67;
	uint64_t tss_lo = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ULL << 40) |
			  (((base >> 24) & 0xff) << 56);
	uint64_t tss_hi = base >> 32;
	guest_mem_write(&pv->mem, PROBE_VM_GDT + PROBE_VM_SEL_TSS, &tss_lo, 8);
	guest_mem_write(&pv->mem, PROBE_VM_GDT + PROBE_VM_SEL_TSS + 8, &tss_hi, 8);
	uint64_t rsp0 = PROBE_VM_KSTACK_TOP;
	uint16_t iomap = 0x68;
	guest_mem_write(&pv->mem, PROBE_VM_TSS + 4, &rsp0, 8);
	guest_mem_write(&pv->mem, PROBE_VM_TSS + 102, &iomap, 2);
}

static struct kvm_segment seg(uint16_t sel, uint8_t type, bool code64)
{
	return (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type, .present = 1,
		.dpl = (uint8_t)(sel & 3), .db = code64 ? 0 : 1, .s = 1, .l = code64 ? 1 : 0, .g = 1,
	};
}

static int set_initial_state(struct probe_vm *pv)
{
	struct kvm_sregs sregs;
	if (ioctl(pv->vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	sregs.cs = seg(PROBE_VM_SEL_KCODE, 11, true);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = seg(PROBE_VM_SEL_KDATA, 3, false);
	sregs.tr = (struct kvm_segment){ .base = PROBE_VM_TSS, .limit = 0x67, .selector = PROBE_VM_SEL_TSS,
					 .type = 11, .present = 1 };
	sregs.ldt = (struct kvm_segment){ .limit = 0xffff, .type = 2, .present = 1 };
	sregs.gdt.base = PROBE_VM_GDT;
	sregs.gdt.limit = 0x4f;
	sregs.idt.base = PROBE_VM_IDT;
	sregs.idt.limit = 0xfff;
	sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG;
	sregs.cr3 = PROBE_VM_PML4;
	sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	sregs.efer = EFER_LME | EFER_LMA;
	if (ioctl(pv->vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	struct kvm_regs regs = { .rip = PROBE_VM_KCODE, .rsp = PROBE_VM_KSTACK_TOP, .rflags = 0x2 };
	if (ioctl(pv->vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}

struct kvm_cpuid2 *probe_vm_supported_cpuid(int kvm_fd)
{
	for (unsigned int n = 64; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c)
			return NULL;
		c->nent = n;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
			return c;
		int e = errno;
		free(c);
		if (e != E2BIG) {
			errno = e;
			return NULL;
		}
	}
	errno = E2BIG;
	return NULL;
}

int probe_vm_set_cpuid(struct probe_vm *pv, const struct kvm_cpuid2 *cpuid)
{
	if (ioctl(pv->vcpu_fd, KVM_SET_CPUID2, cpuid) < 0)
		return -errno;
	return 0;
}

int probe_vm_create(struct probe_vm *pv, int kvm_fd)
{
	memset(pv, 0, sizeof(*pv));
	pv->vm_fd = pv->vcpu_fd = -1;
	pv->run = MAP_FAILED;
	pv->mem.fd = -1;

	int rc = guest_mem_init(&pv->mem, PROBE_VM_RAM_SIZE);
	if (rc)
		return rc;
	pv->vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (pv->vm_fd < 0)
		goto fail_errno;
	struct kvm_userspace_memory_region region = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = PROBE_VM_RAM_SIZE,
		.userspace_addr = (uint64_t)(uintptr_t)pv->mem.regions[0].host,
	};
	if (ioctl(pv->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		goto fail_errno;
	/* VMX needs a TSS region below 4 GiB outside guest RAM even when it is never used. */
	ioctl(pv->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000UL);
	int mmap_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (mmap_size <= 0)
		goto fail_errno;
	pv->vcpu_fd = ioctl(pv->vm_fd, KVM_CREATE_VCPU, 0UL);
	if (pv->vcpu_fd < 0)
		goto fail_errno;
	pv->run_size = (size_t)mmap_size;
	pv->run = mmap(NULL, pv->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, pv->vcpu_fd, 0);
	if (pv->run == MAP_FAILED)
		goto fail_errno;

	struct kvm_cpuid2 *cpuid = probe_vm_supported_cpuid(kvm_fd);
	if (!cpuid)
		goto fail_errno;
	rc = probe_vm_set_cpuid(pv, cpuid);
	free(cpuid);
	if (rc)
		goto fail;

	write_page_tables(pv);
	write_gdt_tss(pv);
	rc = set_initial_state(pv);
	if (rc)
		goto fail;
	return 0;

fail_errno:
	rc = -errno;
fail:
	probe_vm_destroy(pv);
	return rc;
}

void probe_vm_destroy(struct probe_vm *pv)
{
	if (pv->run != MAP_FAILED && pv->run)
		munmap(pv->run, pv->run_size);
	if (pv->vcpu_fd >= 0)
		close(pv->vcpu_fd);
	if (pv->vm_fd >= 0)
		close(pv->vm_fd);
	guest_mem_destroy(&pv->mem);
	pv->run = MAP_FAILED;
	pv->vcpu_fd = pv->vm_fd = -1;
}

int probe_vm_load(struct probe_vm *pv, uint64_t gpa, const void *bytes, size_t len)
{
	return guest_mem_write(&pv->mem, gpa, bytes, len);
}

int probe_vm_set_user(struct probe_vm *pv, uint64_t gpa, size_t len)
{
	if (len == 0 || gpa + len > PROBE_VM_RAM_SIZE || gpa < 0x1000)
		return -EINVAL;
	for (uint64_t p = ALIGN_DOWN(gpa, 0x1000); p < gpa + len; p += 0x1000)
		*guest_u64(pv, PROBE_VM_PT + (p >> 12) * 8) |= PTE_US;
	return 0;
}

int probe_vm_set_gate(struct probe_vm *pv, unsigned int vec, uint64_t handler, unsigned int dpl)
{
	if (vec > 255 || dpl > 3)
		return -EINVAL;
	uint64_t lo = (handler & 0xffff) | ((uint64_t)PROBE_VM_SEL_KCODE << 16) |
		      ((0x8EULL | ((uint64_t)dpl << 5)) << 40) | (((handler >> 16) & 0xffff) << 48);
	uint64_t hi = handler >> 32;
	int rc = guest_mem_write(&pv->mem, PROBE_VM_IDT + vec * 16, &lo, 8);
	return rc ? rc : guest_mem_write(&pv->mem, PROBE_VM_IDT + vec * 16 + 8, &hi, 8);
}

/*
 * A watchdog thread interrupts KVM_RUN with SIGUSR1 until the run returns. It keeps kicking
 * because a signal that lands just before the ioctl enters the guest would be lost.
 */
struct watchdog {
	pthread_t target;
	unsigned int timeout_ms;
	_Atomic bool done;
	_Atomic bool fired;
};

static void *watchdog_thread(void *arg)
{
	struct watchdog *w = arg;
	uint64_t deadline = monotonic_ns() + (uint64_t)w->timeout_ms * 1000000ULL;
	while (!atomic_load(&w->done)) {
		struct timespec ts = { 0, 1000000 }; /* 1 ms */
		nanosleep(&ts, NULL);
		if (!atomic_load(&w->done) && monotonic_ns() >= deadline) {
			atomic_store(&w->fired, true);
			pthread_kill(w->target, SIGUSR1);
		}
	}
	return NULL;
}

static void noop_handler(int sig) { (void)sig; }

/* vmon's vCPU code uses the same no-op SIGUSR1 handler; install it only if none is there. */
static void ensure_kick_handler(void)
{
	struct sigaction old;
	if (sigaction(SIGUSR1, NULL, &old) == 0 && old.sa_handler == SIG_DFL && !(old.sa_flags & SA_SIGINFO)) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = noop_handler;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGUSR1, &sa, NULL);
	}
}

int probe_vm_run(struct probe_vm *pv, unsigned int timeout_ms)
{
	ensure_kick_handler();
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_UNBLOCK, &set, &old);

	struct watchdog w = { .target = pthread_self(), .timeout_ms = timeout_ms };
	pthread_t thr;
	int rc = pthread_create(&thr, NULL, watchdog_thread, &w);
	if (rc) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		return -rc;
	}
	for (;;) {
		if (ioctl(pv->vcpu_fd, KVM_RUN, 0) == 0) {
			rc = (int)pv->run->exit_reason;
			break;
		}
		if (errno != EINTR && errno != EAGAIN) {
			rc = -errno;
			break;
		}
		if (atomic_load(&w.fired)) {
			rc = -ETIMEDOUT;
			break;
		}
	}
	atomic_store(&w.done, true);
	pthread_join(thr, NULL);
	/* A last kick may be pending; it is consumed by the no-op handler when unblocked here. */
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}
