/* Guest page-table walks over hand-built tables in a real guest_mem. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "arch/x86/guest_walk.h"
#include "lib/util.h"

#define P 0x1ULL
#define RW 0x2ULL
#define US 0x4ULL
#define A 0x20ULL
#define D 0x40ULL
#define PS 0x80ULL
#define NX (1ULL << 63)

#define PML4 0x1000ULL
#define PDPT 0x2000ULL
#define PD 0x3000ULL
#define PT 0x4000ULL

static struct guest_mem mem;
static const struct guest_paging lm = {
	.cr0 = 0x80010001ULL, /* PG, WP, PE */
	.cr3 = PML4,
	.cr4 = 0x20, /* PAE */
	.efer = 0xd00, /* LMA, LME, NXE */
};

static void set64(uint64_t gpa, uint64_t v) { assert_int_equal(guest_mem_write(&mem, gpa, &v, 8), 0); }
static uint64_t get64(uint64_t gpa)
{
	uint64_t v;
	assert_int_equal(guest_mem_read(&mem, gpa, &v, 8), 0);
	return v;
}
static void set32(uint64_t gpa, uint32_t v) { assert_int_equal(guest_mem_write(&mem, gpa, &v, 4), 0); }

static int setup(void **state)
{
	(void)state;
	if (guest_mem_init(&mem, 8 * MiB))
		return -1;
	set64(PML4 + 0 * 8, PDPT | P | RW | US);
	set64(PML4 + 256 * 8, PDPT | P | RW); /* the same tables again in the upper half */
	set64(PML4 + 511 * 8, PML4 | P | RW); /* recursive slot: the PML4 maps itself */
	set64(PDPT + 0 * 8, PD | P | RW | US);
	set64(PDPT + 1 * 8, 0 | P | RW | PS);           /* 1 GiB page at 1 GiB -> 0 */
	set64(PD + 1 * 8, 0x600000 | P | RW | US | PS); /* 2 MiB page at 2 MiB -> 6 MiB */
	set64(PD + 2 * 8, PT | P | RW | US);            /* 4 KiB pages at 4 MiB */
	set64(PD + 4 * 8, 0x10000000000ULL | P | RW);   /* table far outside RAM */
	set64(PT + 0 * 8, 0x10000 | P | RW | US);
	set64(PT + 1 * 8, 0x30000 | P | US);            /* read-only */
	set64(PT + 2 * 8, 0x20000 | P | RW | NX);       /* supervisor, not executable */
	set64(PT + 3 * 8, 0x7ff000000ULL | P | RW);     /* a page outside RAM */
	set64(PT + 4 * 8, 0x11000 | P | RW | US | (1ULL << 45)); /* address bit 45: beyond a 40-bit MAXPHYADDR */
	set64(PT + 5 * 8, 0x12000 | P | RW | NX);       /* NX: reserved while EFER.NXE is clear */
	set64(PT + 6 * 8, 0x13000 | P | RW);            /* supervisor, writable */
	set64(PD + 5 * 8, 0x800000 | P | RW | PS | (1ULL << 13));  /* 2 MiB page with reserved bit 13 */
	set64(PDPT + 2 * 8, 0x40000000 | P | RW | PS | (1ULL << 20)); /* 1 GiB page with reserved bit 20 */
	set64(PML4 + 1 * 8, PDPT | P | RW | PS);        /* PS in a PML4 entry is reserved */
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	guest_mem_destroy(&mem);
	return 0;
}

static void test_four_kib_page(void **state)
{
	(void)state;
	uint64_t gpa = 0;
	assert_int_equal(guest_walk(&mem, &lm, 0x400123, 0, &gpa, NULL), 0);
	assert_int_equal(gpa, 0x10123);
	assert_int_equal(get64(PT) & A, A);      /* accessed bit set, as the CPU does */
	assert_int_equal(get64(PT) & D, 0);
	assert_int_equal(guest_walk(&mem, &lm, 0x400008, GUEST_ACCESS_WRITE, &gpa, NULL), 0);
	assert_int_equal(get64(PT) & D, D);
	assert_int_equal(get64(PD + 2 * 8) & A, A);
}

static void test_large_pages(void **state)
{
	(void)state;
	uint64_t gpa = 0;
	assert_int_equal(guest_walk(&mem, &lm, 0x2abcde, 0, &gpa, NULL), 0);
	assert_int_equal(gpa, 0x6abcde);
	assert_int_equal(guest_walk(&mem, &lm, 0x40001234, 0, &gpa, NULL), 0);
	assert_int_equal(gpa, 0x1234);
	/* the upper half reaches the same tables, supervisor only */
	assert_int_equal(guest_walk(&mem, &lm, 0xffff800000400010ULL, 0, &gpa, NULL), 0);
	assert_int_equal(gpa, 0x10010);
}

static void test_not_present_and_permissions(void **state)
{
	(void)state;
	uint64_t gpa;
	struct guest_fault f;
	assert_int_equal(guest_walk(&mem, &lm, 0x600000, 0, &gpa, &f), -EFAULT); /* PD[3] empty */
	assert_int_equal(f.addr, 0x600000);
	assert_int_equal(f.pf_error, 0);
	assert_int_equal(guest_walk(&mem, &lm, 0x80000000000ULL, GUEST_ACCESS_USER, &gpa, &f), -EFAULT);
	assert_int_equal(f.pf_error, PF_ERR_USER);
	/* user read of a supervisor page */
	assert_int_equal(guest_walk(&mem, &lm, 0xffff800000400000ULL, GUEST_ACCESS_USER, &gpa, &f), -EFAULT);
	assert_int_equal(f.pf_error, PF_ERR_PRESENT | PF_ERR_USER);
	/* write to a read-only page: faults at CPL0 too because CR0.WP is set */
	assert_int_equal(guest_walk(&mem, &lm, 0x401000, GUEST_ACCESS_WRITE, &gpa, &f), -EFAULT);
	assert_int_equal(f.pf_error, PF_ERR_PRESENT | PF_ERR_WRITE);
	struct guest_paging nowp = lm;
	nowp.cr0 &= ~0x10000ULL;
	assert_int_equal(guest_walk(&mem, &nowp, 0x401000, GUEST_ACCESS_WRITE, &gpa, &f), 0);
	/* fetch from a no-execute page */
	assert_int_equal(guest_walk(&mem, &lm, 0x402000, GUEST_ACCESS_FETCH, &gpa, &f), -EFAULT);
	assert_int_equal(f.pf_error, PF_ERR_PRESENT | PF_ERR_FETCH);
	assert_int_equal(guest_walk(&mem, &lm, 0x402000, 0, &gpa, &f), 0);
}

static void test_hostile_tables(void **state)
{
	(void)state;
	uint64_t gpa;
	/* a page-table pointer outside guest RAM */
	assert_int_equal(guest_walk(&mem, &lm, 0x800000, 0, &gpa, NULL), -ERANGE);
	/* a translation is fine, but the page is not RAM: copying refuses it */
	assert_int_equal(guest_walk(&mem, &lm, 0x403000, 0, &gpa, NULL), 0);
	assert_int_equal(gpa, 0x7ff000000ULL);
	uint8_t buf[4];
	assert_int_equal(guest_virt_read(&mem, &lm, 0x403000, buf, 4, 0, NULL), -ERANGE);
	/* the recursive slot: PML4 -> PML4 -> ... ends after four levels, at the PML4 page */
	assert_int_equal(guest_walk(&mem, &lm, 0xfffffffffffff000ULL, 0, &gpa, NULL), 0);
	assert_int_equal(gpa, PML4);
	/* a CR3 outside RAM */
	struct guest_paging bad = lm;
	bad.cr3 = 0x40000000000ULL;
	assert_int_equal(guest_walk(&mem, &bad, 0x1000, 0, &gpa, NULL), -ERANGE);
	/* non-canonical addresses raise #GP, not #PF */
	assert_int_equal(guest_walk(&mem, &lm, 0x0000800000000000ULL, 0, &gpa, NULL), -EINVAL);
}

static void test_copy_across_pages(void **state)
{
	(void)state;
	/* 0x400ffe..0x401001 spans PT[0] (-> 0x10000) and PT[1] (-> 0x30000) */
	static const uint8_t a[2] = { 0xaa, 0xbb }, b[2] = { 0xcc, 0xdd };
	assert_int_equal(guest_mem_write(&mem, 0x10ffe, a, 2), 0);
	assert_int_equal(guest_mem_write(&mem, 0x30000, b, 2), 0);
	uint8_t got[4];
	assert_int_equal(guest_virt_read(&mem, &lm, 0x400ffe, got, 4, 0, NULL), 0);
	static const uint8_t want[4] = { 0xaa, 0xbb, 0xcc, 0xdd };
	assert_memory_equal(got, want, 4);
	/* writing across into the read-only page faults at the second page */
	struct guest_fault f;
	assert_int_equal(guest_virt_write(&mem, &lm, 0x400ffe, want, 4, 0, &f), -EFAULT);
	assert_int_equal(f.addr, 0x401000);
}

static void test_paging_off_and_legacy_modes(void **state)
{
	(void)state;
	uint64_t gpa;
	struct guest_paging off = { .cr0 = 0x1 };
	assert_int_equal(guest_walk(&mem, &off, 0x123456789ULL, 0, &gpa, NULL), 0);
	assert_int_equal(gpa, 0x23456789);

	/* 32-bit paging: PD at 0x100000; a 4 MiB page (PSE) and a 4 KiB page */
	set32(0x100000 + 1 * 4, 0x00400000 | P | RW | PS);
	set32(0x100000 + 2 * 4, 0x101000 | P | RW | US);
	set32(0x101000 + 5 * 4, 0x205000 | P | RW | US);
	struct guest_paging p32 = { .cr0 = 0x80000001ULL, .cr3 = 0x100000, .cr4 = 0x10 /* PSE */ };
	assert_int_equal(guest_walk(&mem, &p32, 0x00412345, 0, &gpa, NULL), 0);
	assert_int_equal(gpa, 0x412345);
	assert_int_equal(guest_walk(&mem, &p32, 0x00805abc, GUEST_ACCESS_USER, &gpa, NULL), 0);
	assert_int_equal(gpa, 0x205abc);
	struct guest_fault f;
	assert_int_equal(guest_walk(&mem, &p32, 0x00412345, GUEST_ACCESS_USER, &gpa, &f), -EFAULT);
	/* without CR4.PSE the PS bit is ignored: the entry points at a page table */
	set32(0x100000 + 3 * 4, 0x101000 | P | RW | US | PS);
	struct guest_paging nopse = p32;
	nopse.cr4 = 0;
	assert_int_equal(guest_walk(&mem, &nopse, 0x00c05abc, 0, &gpa, NULL), 0);
	assert_int_equal(gpa, 0x205abc);
	/* a 4 MiB page's bit 21 is reserved */
	set32(0x100000 + 4 * 4, 0x00400000 | P | RW | PS | (1u << 21));
	assert_int_equal(guest_walk(&mem, &p32, 0x01000000, 0, &gpa, &f), -EFAULT);
	assert_int_equal(f.pf_error, PF_ERR_PRESENT | PF_ERR_RSVD);

	/* PAE without long mode: four PDPTEs at CR3, then PD and PT */
	set64(0x110000 + 0 * 8, 0x111000 | P);
	set64(0x111000 + 3 * 8, 0x112000 | P | RW);
	set64(0x112000 + 7 * 8, 0x300000 | P | RW);
	set64(0x111000 + 4 * 8, 0x400000 | P | RW | PS);
	struct guest_paging pae = { .cr0 = 0x80000001ULL, .cr3 = 0x110000, .cr4 = 0x20 };
	assert_int_equal(guest_walk(&mem, &pae, 0x00607010, 0, &gpa, NULL), 0);
	assert_int_equal(gpa, 0x300010);
	assert_int_equal(guest_walk(&mem, &pae, 0x00812345, 0, &gpa, NULL), 0);
	assert_int_equal(gpa, 0x412345);
	assert_int_equal(guest_walk(&mem, &pae, 0x40000000, 0, &gpa, &f), -EFAULT); /* PDPTE 1 absent */
	assert_int_equal(f.pf_error, 0);
	set64(0x110000 + 2 * 8, 0x111000 | P | RW); /* R/W is reserved in a PAE PDPTE */
	assert_int_equal(guest_walk(&mem, &pae, 0x80607010, 0, &gpa, &f), -EFAULT);
	assert_int_equal(f.pf_error, PF_ERR_PRESENT | PF_ERR_RSVD);
}

static void test_reserved_bits(void **state)
{
	(void)state;
	uint64_t gpa;
	struct guest_fault f;
	struct guest_paging p40 = lm;
	p40.maxphyaddr = 40;
	/* Address bits at or above MAXPHYADDR: fine with 52 bits, reserved with 40. */
	assert_int_equal(guest_walk(&mem, &lm, 0x404000, GUEST_ACCESS_USER, &gpa, NULL), 0);
	assert_int_equal(gpa, 0x200000011000ULL);
	assert_int_equal(guest_walk(&mem, &p40, 0x404000, GUEST_ACCESS_USER | GUEST_ACCESS_WRITE, &gpa, &f), -EFAULT);
	assert_int_equal(f.pf_error, PF_ERR_PRESENT | PF_ERR_RSVD | PF_ERR_WRITE | PF_ERR_USER);
	assert_int_equal(f.addr, 0x404000);
	/* NX is a reserved bit without EFER.NXE, and fetches are then not reported */
	struct guest_paging nonx = lm;
	nonx.efer &= ~0x800ULL;
	assert_int_equal(guest_walk(&mem, &lm, 0x405000, 0, &gpa, NULL), 0);
	assert_int_equal(guest_walk(&mem, &nonx, 0x405000, GUEST_ACCESS_FETCH, &gpa, &f), -EFAULT);
	assert_int_equal(f.pf_error, PF_ERR_PRESENT | PF_ERR_RSVD);
	/* reserved bits of 2 MiB and 1 GiB pages, and PS at the top level */
	assert_int_equal(guest_walk(&mem, &lm, 0xa00000, 0, &gpa, &f), -EFAULT);
	assert_int_equal(f.pf_error, PF_ERR_PRESENT | PF_ERR_RSVD);
	assert_int_equal(guest_walk(&mem, &lm, 0x80000000ULL, GUEST_ACCESS_FETCH, &gpa, &f), -EFAULT);
	assert_int_equal(f.pf_error, PF_ERR_PRESENT | PF_ERR_RSVD | PF_ERR_FETCH);
	assert_int_equal(guest_walk(&mem, &lm, 0x8000000000ULL, 0, &gpa, &f), -EFAULT);
	assert_int_equal(f.pf_error, PF_ERR_PRESENT | PF_ERR_RSVD);
}

static void test_smep_smap(void **state)
{
	(void)state;
	uint64_t gpa;
	struct guest_fault f;
	struct guest_paging smep = lm, smap = lm;
	smep.cr4 |= 1ULL << 20;
	smap.cr4 |= 1ULL << 21;
	/* SMEP: the kernel may not execute a user page; its own pages are fine */
	assert_int_equal(guest_walk(&mem, &lm, 0x400000, GUEST_ACCESS_FETCH, &gpa, NULL), 0);
	assert_int_equal(guest_walk(&mem, &smep, 0x400000, GUEST_ACCESS_FETCH, &gpa, &f), -EFAULT);
	assert_int_equal(f.pf_error, PF_ERR_PRESENT | PF_ERR_FETCH);
	assert_int_equal(guest_walk(&mem, &smep, 0x406000, GUEST_ACCESS_FETCH, &gpa, NULL), 0);
	assert_int_equal(guest_walk(&mem, &smep, 0x400000, GUEST_ACCESS_USER | GUEST_ACCESS_FETCH, &gpa, NULL), 0);
	/* SMAP: kernel data accesses to user pages fault unless RFLAGS.AC is set */
	assert_int_equal(guest_walk(&mem, &smap, 0x400000, 0, &gpa, &f), -EFAULT);
	assert_int_equal(f.pf_error, PF_ERR_PRESENT);
	assert_int_equal(guest_walk(&mem, &smap, 0x400000, GUEST_ACCESS_WRITE, &gpa, &f), -EFAULT);
	assert_int_equal(f.pf_error, PF_ERR_PRESENT | PF_ERR_WRITE);
	smap.rflags = 1ULL << 18;
	assert_int_equal(guest_walk(&mem, &smap, 0x400000, GUEST_ACCESS_WRITE, &gpa, NULL), 0);
	/* ... but AC does not cover the CPU's own accesses, and user code is unaffected */
	assert_int_equal(guest_walk(&mem, &smap, 0x400000, GUEST_ACCESS_IMPLICIT, &gpa, &f), -EFAULT);
	assert_int_equal(f.pf_error, PF_ERR_PRESENT);
	smap.rflags = 0;
	assert_int_equal(guest_walk(&mem, &smap, 0x400000, GUEST_ACCESS_USER, &gpa, NULL), 0);
	assert_int_equal(guest_walk(&mem, &smap, 0x406000, GUEST_ACCESS_IMPLICIT, &gpa, NULL), 0);
	/* without NXE or SMEP the CPU does not mark fetches in the error code */
	struct guest_paging plain = lm;
	plain.efer &= ~0x800ULL;
	assert_int_equal(guest_walk(&mem, &plain, 0x600000, GUEST_ACCESS_FETCH, &gpa, &f), -EFAULT);
	assert_int_equal(f.pf_error, 0);
}

static void test_write_intent(void **state)
{
	(void)state;
	struct guest_fault f;
	uint8_t buf[8];
	struct guest_paging nowp = lm;
	nowp.cr0 &= ~0x10000ULL;
	/* a read made for a store that follows faults as the store would, with W in the error code */
	assert_int_equal(guest_virt_read(&mem, &lm, 0x401000, buf, 8, 0, NULL), 0);
	assert_int_equal(guest_virt_read(&mem, &lm, 0x401000, buf, 8, GUEST_ACCESS_WRITE, &f), -EFAULT);
	assert_int_equal(f.pf_error, PF_ERR_PRESENT | PF_ERR_WRITE);
	/* CR0.WP off lets the kernel write a read-only page, never user code */
	assert_int_equal(guest_virt_read(&mem, &nowp, 0x401000, buf, 8, GUEST_ACCESS_WRITE, NULL), 0);
	assert_int_equal(guest_virt_read(&mem, &nowp, 0x401000, buf, 8, GUEST_ACCESS_WRITE | GUEST_ACCESS_USER, &f),
			 -EFAULT);
	assert_int_equal(f.pf_error, PF_ERR_PRESENT | PF_ERR_WRITE | PF_ERR_USER);
	/* and the page it will write is marked dirty */
	set64(PT + 6 * 8, 0x13000 | P | RW);
	assert_int_equal(guest_virt_read(&mem, &lm, 0x406000, buf, 8, GUEST_ACCESS_WRITE, NULL), 0);
	assert_int_equal(get64(PT + 6 * 8) & D, D);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_four_kib_page),
		cmocka_unit_test(test_large_pages),
		cmocka_unit_test(test_not_present_and_permissions),
		cmocka_unit_test(test_hostile_tables),
		cmocka_unit_test(test_copy_across_pages),
		cmocka_unit_test(test_paging_off_and_legacy_modes),
		cmocka_unit_test(test_reserved_bits),
		cmocka_unit_test(test_smep_smap),
		cmocka_unit_test(test_write_intent),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
