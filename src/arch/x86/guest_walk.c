#include "arch/x86/guest_walk.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "lib/util.h"

#define CR0_PG (1ULL << 31)
#define CR0_WP (1ULL << 16)
#define CR4_PSE (1ULL << 4)
#define CR4_PAE (1ULL << 5)
#define CR4_LA57 (1ULL << 12)
#define CR4_SMEP (1ULL << 20)
#define CR4_SMAP (1ULL << 21)
#define EFER_LMA (1ULL << 10)
#define EFER_NXE (1ULL << 11)
#define RFLAGS_AC (1ULL << 18)

#define PTE_P  (1ULL << 0)
#define PTE_RW (1ULL << 1)
#define PTE_US (1ULL << 2)
#define PTE_A  (1ULL << 5)
#define PTE_D  (1ULL << 6)
#define PTE_PS (1ULL << 7)
#define PTE_NX (1ULL << 63)

#define ADDR_MASK_64 0x000ffffffffff000ULL

/* One translation: what is asked, and the paging mode that answers it. */
struct walk {
	const struct guest_paging *pg;
	uint64_t gva;
	unsigned int access;
	struct guest_fault *fault;
	bool long_mode, pae, nxe;
	unsigned int maxphyaddr;
};

/* bits: PF_ERR_PRESENT and/or PF_ERR_RSVD; the rest of the error code follows from the access. */
static int fail(const struct walk *w, uint32_t bits)
{
	if (w->fault) {
		/* The CPU reports instruction fetches only with SMEP, or NX in use (PAE paging). */
		bool fetch_reported = (w->pg->cr4 & CR4_SMEP) || w->nxe;
		w->fault->addr = w->gva;
		w->fault->pf_error = bits | ((w->access & GUEST_ACCESS_WRITE) ? PF_ERR_WRITE : 0) |
				     ((w->access & GUEST_ACCESS_USER) ? PF_ERR_USER : 0) |
				     ((w->access & GUEST_ACCESS_FETCH) && fetch_reported ? PF_ERR_FETCH : 0);
	}
	return -EFAULT;
}

/* Bits 51..MAXPHYADDR-1 of an address field, which must be 0. */
static uint64_t above_maxphyaddr(const struct walk *w)
{
	return ADDR_MASK_64 & ~((1ULL << w->maxphyaddr) - 1);
}

/* The bits of a PAE, 4- or 5-level entry that must be 0 at this level (Intel SDM vol. 3, 4.5). */
static uint64_t reserved_bits(const struct walk *w, unsigned int level, uint64_t e)
{
	uint64_t rsvd = above_maxphyaddr(w) | (w->nxe ? 0 : PTE_NX);
	if (w->long_mode && level >= 4)
		rsvd |= PTE_PS;
	else if ((e & PTE_PS) && level == 3)
		rsvd |= 0x3fffe000ULL; /* 1 GiB page: bits 29:13 (bit 12 is PAT) */
	else if ((e & PTE_PS) && level == 2)
		rsvd |= 0x1fe000ULL;   /* 2 MiB page: bits 20:13 */
	return rsvd;
}

/* 32-bit paging's 4 MiB page: bit 21, and the PSE-36 address bits (20:13) beyond MAXPHYADDR. */
static uint64_t reserved_bits_pse(const struct walk *w)
{
	unsigned int phys = MIN(w->maxphyaddr, 40u);
	return 0x3fffffULL & ~((1ULL << (13 + phys - 32)) - 1);
}

/*
 * One table entry of entry_size bytes (4 or 8), writable because the walk sets its accessed and
 * dirty bits as the CPU does; NULL if the table is outside RAM.
 */
static void *entry_ptr(const struct guest_mem *mem, uint64_t table_gpa, uint64_t index, unsigned int entry_size)
{
	return gpa_to_host_write(mem, table_gpa + index * entry_size, entry_size);
}

static uint64_t load_entry(void *p, unsigned int size)
{
	if (size == 4)
		return __atomic_load_n((uint32_t *)p, __ATOMIC_RELAXED);
	return __atomic_load_n((uint64_t *)p, __ATOMIC_RELAXED);
}

/* The guest's other vCPUs may be updating the same entry: set bits atomically. */
static void set_bits(const struct guest_mem *mem, void *p, unsigned int size, uint64_t bits)
{
	if (size == 4)
		__atomic_fetch_or((uint32_t *)p, (uint32_t)bits, __ATOMIC_RELAXED);
	else
		__atomic_fetch_or((uint64_t *)p, bits, __ATOMIC_RELAXED);
	guest_mem_wrote(mem, p, size);
}

/*
 * The access rights of the whole walk against the access (Intel SDM vol. 3, 4.6): user_page
 * and writable are the AND of U/S and R/W over all levels, executable is false if any level
 * had NX. Returns 0 or the #PF.
 */
static int check_rights(const struct walk *w, bool user_page, bool writable, bool executable)
{
	const struct guest_paging *pg = w->pg;
	bool write = w->access & GUEST_ACCESS_WRITE, fetch = w->access & GUEST_ACCESS_FETCH;
	if (w->access & GUEST_ACCESS_USER) {
		if (!user_page || (write && !writable) || (fetch && !executable))
			return fail(w, PF_ERR_PRESENT);
		return 0;
	}
	if (fetch)
		return (!executable || (user_page && (pg->cr4 & CR4_SMEP))) ? fail(w, PF_ERR_PRESENT) : 0;
	/* SMAP: explicit accesses may reach user pages while RFLAGS.AC is set, implicit ones never. */
	bool smap_allows = !(w->access & GUEST_ACCESS_IMPLICIT) && (pg->rflags & RFLAGS_AC);
	if (user_page && (pg->cr4 & CR4_SMAP) && !smap_allows)
		return fail(w, PF_ERR_PRESENT);
	if (write && !writable && (pg->cr0 & CR0_WP))
		return fail(w, PF_ERR_PRESENT);
	return 0;
}

int guest_walk(const struct guest_mem *mem, const struct guest_paging *pg, uint64_t gva, unsigned int access,
	       uint64_t *gpa, struct guest_fault *fault)
{
	if (!(pg->cr0 & CR0_PG)) {
		*gpa = gva & 0xffffffffULL;
		return 0;
	}

	struct walk w = { .pg = pg, .gva = gva, .access = access, .fault = fault };
	w.long_mode = pg->efer & EFER_LMA;
	w.pae = pg->cr4 & CR4_PAE;
	w.nxe = (pg->efer & EFER_NXE) && w.pae;
	w.maxphyaddr = pg->maxphyaddr >= 32 && pg->maxphyaddr <= 52 ? pg->maxphyaddr : 52;
	unsigned int entry_size = w.pae ? 8 : 4;
	unsigned int levels, bits_per_level = w.pae ? 9 : 10;
	uint64_t table;

	if (w.long_mode) {
		levels = (pg->cr4 & CR4_LA57) ? 5 : 4;
		unsigned int va_bits = levels == 5 ? 57 : 48;
		int64_t sext = (int64_t)(gva << (64 - va_bits)) >> (64 - va_bits);
		if ((uint64_t)sext != gva)
			return -EINVAL;
		table = pg->cr3 & ADDR_MASK_64;
	} else if (w.pae) {
		/* PAE: CR3 points at four PDPTEs that carry only a present bit. */
		gva &= 0xffffffffULL;
		w.gva = gva;
		void *p = entry_ptr(mem, pg->cr3 & 0xffffffe0ULL, gva >> 30, 8);
		if (!p)
			return -ERANGE;
		uint64_t pdpte = load_entry(p, 8);
		if (!(pdpte & PTE_P))
			return fail(&w, 0);
		/* Bits 2:1, 8:5 and 63:MAXPHYADDR (the CPU checks them when it loads CR3). */
		if (pdpte & (0x1e6ULL | ~((1ULL << w.maxphyaddr) - 1)))
			return fail(&w, PF_ERR_PRESENT | PF_ERR_RSVD);
		table = pdpte & ADDR_MASK_64;
		levels = 2;
	} else {
		gva &= 0xffffffffULL;
		w.gva = gva;
		table = pg->cr3 & 0xfffff000ULL;
		levels = 2;
	}

	bool user_page = true, writable = true, executable = true;
	for (unsigned int level = levels; level >= 1; level--) {
		unsigned int shift = 12 + bits_per_level * (level - 1);
		uint64_t index = (gva >> shift) & ((1ULL << bits_per_level) - 1);
		void *p = entry_ptr(mem, table, index, entry_size);
		if (!p)
			return -ERANGE;
		uint64_t e = load_entry(p, entry_size);
		if (!(e & PTE_P))
			return fail(&w, 0);
		if (w.pae && (e & reserved_bits(&w, level, e)))
			return fail(&w, PF_ERR_PRESENT | PF_ERR_RSVD);
		user_page &= !!(e & PTE_US);
		writable &= !!(e & PTE_RW);
		if (w.nxe && (e & PTE_NX))
			executable = false;

		bool leaf = level == 1;
		uint64_t frame = 0;
		if (leaf) {
			frame = e & (w.pae ? ADDR_MASK_64 : 0xfffff000ULL);
		} else if ((e & PTE_PS) && w.pae) {
			/* 1 GiB (level 3) or 2 MiB (level 2) page; PS above level 3 was refused as reserved. */
			frame = e & ADDR_MASK_64 & ~((1ULL << shift) - 1);
			leaf = true;
		} else if ((e & PTE_PS) && (pg->cr4 & CR4_PSE)) {
			/* 32-bit paging's 4 MiB page; PSE-36 puts physical bits 39:32 in entry bits 20:13. */
			if (e & reserved_bits_pse(&w))
				return fail(&w, PF_ERR_PRESENT | PF_ERR_RSVD);
			frame = (e & 0xffc00000ULL) | (((e >> 13) & 0xffULL) << 32);
			leaf = true;
		}
		/* (32-bit paging without CR4.PSE ignores PS: the entry points at a page table.) */

		if (leaf) {
			int rc = check_rights(&w, user_page, writable, executable);
			if (rc)
				return rc;
			set_bits(mem, p, entry_size, PTE_A | ((access & GUEST_ACCESS_WRITE) ? PTE_D : 0));
			*gpa = frame | (gva & ((1ULL << shift) - 1));
			return 0;
		}
		if (!(e & PTE_A))
			set_bits(mem, p, entry_size, PTE_A);
		table = e & (w.pae ? ADDR_MASK_64 : 0xfffff000ULL);
	}
	return -ERANGE; /* not reached: level 1 is always a leaf */
}

static int virt_copy(const struct guest_mem *mem, const struct guest_paging *pg, uint64_t gva, uint8_t *buf,
		     size_t len, unsigned int access, struct guest_fault *fault, bool write)
{
	while (len > 0) {
		size_t chunk = MIN(len, 0x1000 - (gva & 0xfff));
		uint64_t gpa;
		int rc = guest_walk(mem, pg, gva, access | (write ? GUEST_ACCESS_WRITE : 0), &gpa, fault);
		if (rc)
			return rc;
		if (write) {
			void *host = gpa_to_host_write(mem, gpa, chunk);
			if (!host)
				return -ERANGE;
			memcpy(host, buf, chunk);
			guest_mem_wrote(mem, host, chunk);
		} else {
			const void *host = gpa_to_host(mem, gpa, chunk);
			if (!host)
				return -ERANGE;
			memcpy(buf, host, chunk);
		}
		gva += chunk;
		buf += chunk;
		len -= chunk;
	}
	return 0;
}

int guest_virt_read(const struct guest_mem *mem, const struct guest_paging *pg, uint64_t gva, void *dst,
		    size_t len, unsigned int access, struct guest_fault *fault)
{
	return virt_copy(mem, pg, gva, dst, len, access, fault, false);
}

int guest_virt_write(const struct guest_mem *mem, const struct guest_paging *pg, uint64_t gva, const void *src,
		     size_t len, unsigned int access, struct guest_fault *fault)
{
	return virt_copy(mem, pg, gva, (uint8_t *)src, len, access, fault, true);
}
