/*
 * The VM object: KVM handles, guest memory, buses, vCPUs, and the lifecycle state machine
 * (created -> running <-> paused -> stopped).
 */
#ifndef VMON_VM_VM_H
#define VMON_VM_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "arch/x86/host_probe.h"
#include "bus/bus.h"
#include "config/config.h"
#include "memory/guest_mem.h"
#include "vm/throttle.h"

struct vcpu;
struct kvm_cpuid2;

enum vm_state { VM_CREATED = 0, VM_RUNNING, VM_PAUSED, VM_STOPPED };

/* Why the VM stopped; decides vmon's exit status and final message. */
enum vm_stop_reason {
	VM_STOP_NONE = 0,
	VM_STOP_POWEROFF,    /* guest powered off: exit 0 */
	VM_STOP_REBOOT,      /* guest asked to reboot: exit 0, with a message */
	VM_STOP_SIGNAL,      /* SIGINT/SIGTERM or the console escape: exit 0 */
	VM_STOP_TRIPLE_FAULT,/* exit 1 */
	VM_STOP_PANIC,       /* guest kernel panic reported through pvpanic: exit 1 */
	VM_STOP_ERROR,       /* vmon could not continue (unhandled exit, emulation failure): exit 1 */
	VM_STOP_MIGRATED,    /* the guest runs on a migration's destination now: exit 0 */
};

struct vm {
	int kvm_fd;
	int vm_fd;
	int vcpu_mmap_size;

	const struct vm_config *cfg;
	struct host_caps host;
	struct kvm_cpuid2 *cpuid; /* the CPUID policy all vCPUs start from */

	struct guest_mem mem;
	bool dirty_manual_protect; /* KVM's dirty log is read with KVM_CLEAR_DIRTY_LOG (kvm_slots.h) */
	struct bus pio;
	struct bus mmio;

	unsigned int ncpus;
	struct vcpu **vcpus;

	/* Lifecycle; state and stop_reason change under lock, waiters use cond. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	_Atomic int state;        /* enum vm_state */
	_Atomic int stop_reason;  /* enum vm_stop_reason */
	char stop_message[512];

	/* Pause: vCPU threads park themselves outside KVM_RUN while pause_requested is set. */
	pthread_mutex_t control_lock; /* serialises pause/resume/snapshot requests from any thread */
	_Atomic bool pause_requested;
	unsigned int parked;          /* vCPUs parked, under lock */
	bool clock_saved;
	uint64_t paused_clock;        /* kvmclock at pause, restored at resume so guest time does not jump */
	uint64_t paused_realtime;     /* the host's CLOCK_REALTIME when paused_clock was read */
	uint64_t started_ns;          /* monotonic time the vCPUs started, for uptime */

	struct throttle throttle;     /* share of time the vCPUs are held off (vm_set_throttle) */

	/* Set by the platform: stop and restart device work around a pause (may be NULL). */
	void (*io_pause)(struct vm *vm);
	void (*io_resume)(struct vm *vm);

	void *platform; /* the x86 platform devices (serial, i8042, rtc, acpi), owned by src/vm/platform.c */
	void *arch;     /* per-VM x86 state (emulation-failure and SYSCALL handling), owned by src/arch/x86 */
};

/* This host's RAM and swap in bytes, the most guest RAM vmon lets a VM have (UINT64_MAX if unknown). */
uint64_t vm_host_memory(void);
/* Opens /dev/kvm and checks its API version: the descriptor, or -errno with the reason logged (how to fix it). */
int vm_open_kvm(void);
/* Opens /dev/kvm, probes the host, creates the VM with in-kernel irqchip and PIT and its memory. */
int vm_create(struct vm *vm, const struct vm_config *cfg);
void vm_destroy(struct vm *vm);

/*
 * Asks the VM to stop for the given reason (the first reason wins) and wakes every vCPU.
 * msg is what the user is told; may be NULL. Safe to call from any thread, including vCPUs.
 */
void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Stops every vCPU at an instruction boundary (outside KVM_RUN) and freezes the guest clock.
 * Returns 0, -EALREADY if it was paused already, -EBUSY if it is neither running nor paused, or
 * -ETIMEDOUT if a vCPU did not stop in time (the VM is then resumed). Decided under the control
 * lock, so concurrent callers each get an answer that was true when they asked.
 * Safe from any thread except a vCPU thread.
 */
int vm_pause(struct vm *vm);
/* Resumes a paused VM; -EALREADY if it was running already, -EBUSY if it is neither. */
int vm_resume(struct vm *vm);
/* Records the kvmclock and the host's wall clock at that instant (vm->paused_*); call under vm->lock. */
void vm_freeze_clock(struct vm *vm);
/* Called by a vCPU thread between exits: parks it while a pause is requested. */
void vm_vcpu_park_if_paused(struct vm *vm);

/*
 * Holds every vCPU out of the guest pct % of wall time (live migration's auto-converge), 0 off.
 * A paused VM stays paused; pause, resume and stop work as without it. Returns 0, or -EINVAL
 * when pct is above THROTTLE_MAX_PCT (99). Safe from any thread except a vCPU thread.
 */
int vm_set_throttle(struct vm *vm, uint32_t pct);

const char *vm_state_name(enum vm_state s);

/* Raises or lowers a GSI on the in-kernel irqchip (opaque is the struct vm). */
void vm_irq_set(void *opaque, unsigned int gsi, int level);

const char *vm_stop_reason_name(enum vm_stop_reason r);

#endif
