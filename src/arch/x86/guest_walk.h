/*
 * Translation of guest-virtual addresses through the guest's own page tables, for the rare
 * times vmon must read or write guest memory the way the guest's CPU would (instruction bytes
 * after an emulation failure, an exception frame on the guest stack, the IDT).
 * Every table entry is read through gpa_to_host(); a walk visits at most 5 levels, so a
 * self-referencing table cannot make it loop, and a table outside RAM ends it with -ERANGE.
 */
#ifndef VMON_ARCH_X86_GUEST_WALK_H
#define VMON_ARCH_X86_GUEST_WALK_H

#include <stddef.h>
#include <stdint.h>

#include "memory/guest_mem.h"

/*
 * The state that decides how a linear address is translated and which accesses it allows:
 * the control registers, RFLAGS (AC lifts SMAP for explicit supervisor accesses) and the
 * guest's MAXPHYADDR (table-entry address bits at or above it are reserved; 0 means 52).
 */
struct guest_paging {
	uint64_t cr0, cr3, cr4, efer;
	uint64_t rflags;
	unsigned int maxphyaddr;
};

/* What an access is; decides the permission checks and the page-fault error code. */
#define GUEST_ACCESS_WRITE 0x1u
#define GUEST_ACCESS_USER  0x2u /* made at CPL3 */
#define GUEST_ACCESS_FETCH 0x4u
/*
 * A supervisor access the CPU makes on its own (descriptor tables, an exception frame):
 * SMAP applies whatever RFLAGS.AC says.
 */
#define GUEST_ACCESS_IMPLICIT 0x8u

/* Page-fault error code bits, as the CPU pushes them. */
#define PF_ERR_PRESENT 0x1u
#define PF_ERR_WRITE   0x2u
#define PF_ERR_USER    0x4u
#define PF_ERR_RSVD    0x8u
#define PF_ERR_FETCH   0x10u

struct guest_fault {
	uint64_t addr;     /* the linear address that faulted (what CR2 would hold) */
	uint32_t pf_error; /* page-fault error code, valid when the call returned -EFAULT */
};

/*
 * Translates gva with the checks the guest's CPU makes: present, reserved bits (by MAXPHYADDR,
 * EFER.NXE and the level), U/S, R/W (supervisor writes with CR0.WP), NX, SMEP and SMAP.
 * Returns 0 with *gpa set, -EFAULT if the guest's CPU would raise #PF (fault filled with the
 * error code it would push), -EINVAL for a non-canonical address (#GP), or -ERANGE when a
 * page-table pointer leads outside guest RAM. Sets accessed bits (and the dirty bit for
 * writes) as the CPU does. fault may be NULL.
 */
int guest_walk(const struct guest_mem *mem, const struct guest_paging *pg, uint64_t gva, unsigned int access,
	       uint64_t *gpa, struct guest_fault *fault);

/*
 * Copies len bytes from or to guest-virtual memory, page by page, so a range that crosses a
 * page boundary works. Same return values as guest_walk; a page that maps outside guest RAM
 * (MMIO, or a hostile mapping) gives -ERANGE. A read with GUEST_ACCESS_WRITE is checked (and
 * marks pages dirty) as the write that follows it: an instruction that reads and then stores
 * a range faults before it reads, as the CPU would.
 */
int guest_virt_read(const struct guest_mem *mem, const struct guest_paging *pg, uint64_t gva, void *dst,
		    size_t len, unsigned int access, struct guest_fault *fault);
int guest_virt_write(const struct guest_mem *mem, const struct guest_paging *pg, uint64_t gva, const void *src,
		     size_t len, unsigned int access, struct guest_fault *fault);

#endif
