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
#define EFER_LMA (1ULL << 10)
#define EFER_NXE (1ULL << 11)

#define PTE_P  (1ULL << 0)
#define PTE_RW (1ULL << 1)
#define PTE_US (1ULL << 2)
#define PTE_A  (1ULL << 5)
#define PTE_D  (1ULL << 6)
#define PTE_PS (1ULL << 7)
#define PTE_NX (1ULL << 63)

#define ADDR_MASK_64 0x000ffffffffff000ULL

static int fail(struct guest_fault *fault, uint64_t gva, unsigned int access, bool present)
{
	if (fault) {
		fault->addr = gva;
		fault->pf_error = (present ? PF_ERR_PRESENT : 0) | ((access & GUEST_ACCESS_WRITE) ? PF_ERR_WRITE : 0) |
				  ((access & GUEST_ACCESS_USER) ? PF_ERR_USER : 0) |
				  ((access & GUEST_ACCESS_FETCH) ? PF_ERR_FETCH : 0);
	}
	return -EFAULT;
}

/* Reads one table entry of entry_size bytes (4 or 8); NULL if the table is outside RAM. */
static void *entry_ptr(const struct guest_mem *mem, uint64_t table_gpa, uint64_t index, unsigned int entry_size)
{
	return gpa_to_host(mem, table_gpa + index * entry_size, entry_size);
}

static uint64_t load_entry(void *p, unsigned int size)
{
	if (size == 4)
		return __atomic_load_n((uint32_t *)p, __ATOMIC_RELAXED);
	return __atomic_load_n((uint64_t *)p, __ATOMIC_RELAXED);
}

/* The guest's other vCPUs may be updating the same entry: set bits atomically. */
static void set_bits(void *p, unsigned int size, uint64_t bits)
{
	if (size == 4)
		__atomic_fetch_or((uint32_t *)p, (uint32_t)bits, __ATOMIC_RELAXED);
	else
		__atomic_fetch_or((uint64_t *)p, bits, __ATOMIC_RELAXED);
}

int guest_walk(const struct guest_mem *mem, const struct guest_paging *pg, uint64_t gva, unsigned int access,
	       uint64_t *gpa, struct guest_fault *fault)
{
	if (!(pg->cr0 & CR0_PG)) {
		*gpa = gva & 0xffffffffULL;
		return 0;
	}

	bool long_mode = pg->efer & EFER_LMA;
	bool pae = pg->cr4 & CR4_PAE;
	bool nxe = (pg->efer & EFER_NXE) && pae;
	unsigned int entry_size = pae ? 8 : 4;
	unsigned int levels, bits_per_level = pae ? 9 : 10;
	uint64_t table;

	if (long_mode) {
		levels = (pg->cr4 & CR4_LA57) ? 5 : 4;
		unsigned int va_bits = levels == 5 ? 57 : 48;
		int64_t sext = (int64_t)(gva << (64 - va_bits)) >> (64 - va_bits);
		if ((uint64_t)sext != gva)
			return -EINVAL;
		table = pg->cr3 & ADDR_MASK_64;
	} else if (pae) {
		/* PAE: CR3 points at four PDPTEs that carry only a present bit. */
		gva &= 0xffffffffULL;
		void *p = entry_ptr(mem, pg->cr3 & 0xffffffe0ULL, gva >> 30, 8);
		if (!p)
			return -ERANGE;
		uint64_t pdpte = load_entry(p, 8);
		if (!(pdpte & PTE_P))
			return fail(fault, gva, access, false);
		table = pdpte & ADDR_MASK_64;
		levels = 2;
	} else {
		gva &= 0xffffffffULL;
		table = pg->cr3 & 0xfffff000ULL;
		levels = 2;
	}

	bool user_ok = true, write_ok = true, exec_ok = true;
	for (unsigned int level = levels; level >= 1; level--) {
		unsigned int shift = 12 + bits_per_level * (level - 1);
		uint64_t index = (gva >> shift) & ((1ULL << bits_per_level) - 1);
		void *p = entry_ptr(mem, table, index, entry_size);
		if (!p)
			return -ERANGE;
		uint64_t e = load_entry(p, entry_size);
		if (!(e & PTE_P))
			return fail(fault, gva, access, false);
		user_ok &= !!(e & PTE_US);
		write_ok &= !!(e & PTE_RW);
		if (nxe && (e & PTE_NX))
			exec_ok = false;

		bool leaf = level == 1;
		uint64_t frame = 0;
		if (!leaf && (e & PTE_PS)) {
			if (pae && level <= 3 && level >= 2) {
				/* 1 GiB (level 3) or 2 MiB (level 2) page. */
				frame = e & ADDR_MASK_64 & ~((1ULL << shift) - 1);
				leaf = true;
			} else if (!pae && level == 2 && (pg->cr4 & CR4_PSE)) {
				/* 4 MiB page; PSE-36 puts physical bits 39:32 in entry bits 20:13. */
				frame = (e & 0xffc00000ULL) | (((e >> 13) & 0xffULL) << 32);
				leaf = true;
			} else {
				/* PS where the paging mode has no large page: a reserved bit. */
				int rc = fail(fault, gva, access, true);
				if (fault)
					fault->pf_error |= PF_ERR_RSVD;
				return rc;
			}
		} else if (leaf) {
			frame = e & (pae ? ADDR_MASK_64 : 0xfffff000ULL);
		}

		if (leaf) {
			if ((access & GUEST_ACCESS_USER) && !user_ok)
				return fail(fault, gva, access, true);
			if ((access & GUEST_ACCESS_WRITE) && !write_ok &&
			    ((access & GUEST_ACCESS_USER) || (pg->cr0 & CR0_WP)))
				return fail(fault, gva, access, true);
			if ((access & GUEST_ACCESS_FETCH) && !exec_ok)
				return fail(fault, gva, access, true);
			set_bits(p, entry_size, PTE_A | ((access & GUEST_ACCESS_WRITE) ? PTE_D : 0));
			*gpa = frame | (gva & ((1ULL << shift) - 1));
			return 0;
		}
		if (!(e & PTE_A))
			set_bits(p, entry_size, PTE_A);
		table = e & (pae ? ADDR_MASK_64 : 0xfffff000ULL);
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
		void *host = gpa_to_host(mem, gpa, chunk);
		if (!host)
			return -ERANGE;
		if (write)
			memcpy(host, buf, chunk);
		else
			memcpy(buf, host, chunk);
		gva += chunk;
		buf += chunk;
		len -= chunk;
	}
	return 0;
}

int guest_virt_read(const struct guest_mem *mem, const struct guest_paging *pg, uint64_t gva, void *dst,
		    size_t len, unsigned int access, struct guest_fault *fault)
{
	return virt_copy(mem, pg, gva, dst, len, access & ~GUEST_ACCESS_WRITE, fault, false);
}

int guest_virt_write(const struct guest_mem *mem, const struct guest_paging *pg, uint64_t gva, const void *src,
		     size_t len, unsigned int access, struct guest_fault *fault)
{
	return virt_copy(mem, pg, gva, (uint8_t *)src, len, access, fault, true);
}
