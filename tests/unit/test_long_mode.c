#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86/cpuid.h"
#include "arch/x86/layout.h"
#include "arch/x86/long_mode.h"
#include "arch/x86/msr.h"
#include "lib/util.h"

static uint64_t read_u64(const struct guest_mem *mem, uint64_t gpa)
{
	uint64_t v;
	assert_int_equal(guest_mem_read(mem, gpa, &v, sizeof(v)), 0);
	return v;
}

/*
 * Walks the 4-level page tables from CR3 as the MMU would. Returns the physical address, or
 * ~0 when not mapped; *writable says whether every level allows writes.
 */
static uint64_t walk(const struct guest_mem *mem, uint64_t cr3, uint64_t va, bool *writable)
{
	const uint64_t addr_mask = 0x000ffffffffff000ULL;
	uint64_t table = cr3 & addr_mask;
	*writable = true;
	for (int level = 4; level >= 1; level--) {
		unsigned int shift = 12 + 9 * (level - 1);
		uint64_t e = read_u64(mem, table + ((va >> shift) & 511) * 8);
		if (!(e & PTE_PRESENT))
			return ~0ULL;
		*writable &= !!(e & PTE_WRITE);
		if (level == 1 || (level <= 3 && (e & PTE_LARGE))) {
			uint64_t page = 1ULL << shift;
			return (e & addr_mask & ~(page - 1)) | (va & (page - 1));
		}
		table = e & addr_mask;
	}
	return ~0ULL;
}

static void test_identity_map(void **state)
{
	(void)state;
	struct guest_mem mem;
	assert_int_equal(guest_mem_init(&mem, 32 * MiB), 0);
	/* Leftovers in RAM must not survive as stray mappings. */
	memset(gpa_to_host_write(&mem, LAYOUT_PML4, 4 * KiB), 0xff, 4 * KiB);
	assert_int_equal(long_mode_write_tables(&mem), 0);

	const uint64_t addrs[] = { 0, 0x7000, LAYOUT_KERNEL_DEFAULT + 0x1234, 0x3fffffffULL, 0xc0000000ULL,
				   LAYOUT_LAPIC + 0x30, 0xffffffffULL };
	for (size_t i = 0; i < ARRAY_SIZE(addrs); i++) {
		bool w;
		assert_int_equal(walk(&mem, LAYOUT_PML4, addrs[i], &w), addrs[i]);
		assert_true(w);
	}
	bool w;
	assert_int_equal(walk(&mem, LAYOUT_PML4, 4 * GiB, &w), ~0ULL);
	assert_int_equal(walk(&mem, LAYOUT_PML4, 512 * GiB, &w), ~0ULL);
	/* 2 MiB pages: the PD entry for 16 MiB has PS set. */
	assert_true(read_u64(&mem, LAYOUT_PD + 8 * 8) & PTE_LARGE);
	guest_mem_destroy(&mem);
}

struct descriptor {
	uint64_t base, limit;
	unsigned int type, s, dpl, p, l, db, g;
};

static struct descriptor decode(uint64_t d)
{
	struct descriptor x = {
		.base = ((d >> 16) & 0xffffff) | ((d >> 56) << 24),
		.limit = (d & 0xffff) | (((d >> 48) & 0xf) << 16),
		.type = (d >> 40) & 0xf, .s = (d >> 44) & 1, .dpl = (d >> 45) & 3, .p = (d >> 47) & 1,
		.l = (d >> 53) & 1, .db = (d >> 54) & 1, .g = (d >> 55) & 1,
	};
	return x;
}

static void test_gdt(void **state)
{
	(void)state;
	struct guest_mem mem;
	assert_int_equal(guest_mem_init(&mem, 2 * MiB), 0);
	assert_int_equal(long_mode_write_tables(&mem), 0);

	assert_int_equal(read_u64(&mem, LAYOUT_GDT), 0);
	struct descriptor cs = decode(read_u64(&mem, LAYOUT_GDT + BOOT_CS));
	assert_int_equal(cs.p, 1);
	assert_int_equal(cs.s, 1);
	assert_int_equal(cs.dpl, 0);
	assert_true(cs.type & 8);  /* code */
	assert_true(cs.type & 2);  /* readable */
	assert_int_equal(cs.l, 1); /* 64-bit */
	assert_int_equal(cs.db, 0); /* must be 0 when L is set */
	assert_int_equal(cs.base, 0);

	struct descriptor ds = decode(read_u64(&mem, LAYOUT_GDT + BOOT_DS));
	assert_int_equal(ds.p, 1);
	assert_int_equal(ds.s, 1);
	assert_false(ds.type & 8); /* data */
	assert_true(ds.type & 2);  /* writable */
	assert_int_equal(ds.base, 0);
	assert_int_equal(ds.limit, 0xfffff);
	assert_int_equal(ds.g, 1);
	assert_int_equal(ds.db, 1);
	/* The GDT ends before the IDT starts. */
	assert_true(LAYOUT_GDT + BOOT_GDT_ENTRIES * 8 <= LAYOUT_IDT);
	guest_mem_destroy(&mem);
}

static void test_tables_need_ram(void **state)
{
	(void)state;
	struct guest_mem mem;
	assert_int_equal(guest_mem_init(&mem, 40 * KiB), 0); /* ends inside the page directories */
	assert_int_equal(long_mode_write_tables(&mem), -EFAULT);
	guest_mem_destroy(&mem);
}

struct kvm_guest {
	int kvm, vm, vcpu;
	struct kvm_run *run;
	size_t run_size;
	struct guest_mem mem;
};

static bool kvm_guest_create(struct kvm_guest *g, uint64_t ram)
{
	g->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (g->kvm < 0)
		return false;
	g->vm = ioctl(g->kvm, KVM_CREATE_VM, 0);
	assert_true(g->vm >= 0);
	assert_int_equal(guest_mem_init(&g->mem, ram), 0);
	struct kvm_userspace_memory_region r = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = g->mem.regions[0].size,
		.userspace_addr = (uintptr_t)g->mem.regions[0].host,
	};
	assert_int_equal(ioctl(g->vm, KVM_SET_USER_MEMORY_REGION, &r), 0);
	g->vcpu = ioctl(g->vm, KVM_CREATE_VCPU, 0);
	assert_true(g->vcpu >= 0);
	g->run_size = (size_t)ioctl(g->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	g->run = mmap(NULL, g->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, g->vcpu, 0);
	assert_true(g->run != MAP_FAILED);

	struct kvm_cpuid2 *sup = cpuid_get_supported(g->kvm);
	assert_non_null(sup);
	struct kvm_cpuid2 *pol = cpuid_policy_build(sup, 1, NULL);
	assert_non_null(pol);
	assert_int_equal(cpuid_apply_to_vcpu(g->vcpu, pol, 0, 1), 0);
	free(pol);
	free(sup);
	return true;
}

static void kvm_guest_destroy(struct kvm_guest *g)
{
	munmap(g->run, g->run_size);
	close(g->vcpu);
	close(g->vm);
	close(g->kvm);
	guest_mem_destroy(&g->mem);
}

static void test_kvm_sregs_show_long_mode(void **state)
{
	(void)state;
	struct kvm_guest g;
	if (!kvm_guest_create(&g, 2 * MiB))
		skip();
	/* A vCPU reused after a reboot: MXCSR left as the old guest set it. */
	struct kvm_xsave xs;
	bool have_xsave = ioctl(g.vcpu, KVM_GET_XSAVE, &xs) == 0;
	if (have_xsave) {
		xs.region[6] = 0x0040;
		assert_int_equal(ioctl(g.vcpu, KVM_SET_XSAVE, &xs), 0);
	}
	assert_int_equal(long_mode_setup_bsp(g.vcpu, LAYOUT_KERNEL_DEFAULT, LAYOUT_BOOT_PARAMS), 0);

	struct kvm_sregs s;
	assert_int_equal(ioctl(g.vcpu, KVM_GET_SREGS, &s), 0);
	assert_true(s.efer & EFER_LMA);
	assert_true(s.efer & EFER_LME);
	assert_true(s.cr0 & CR0_PG);
	assert_true(s.cr0 & CR0_PE);
	assert_true(s.cr4 & CR4_PAE);
	assert_int_equal(s.cr3, LAYOUT_PML4);
	assert_int_equal(s.cs.selector, BOOT_CS);
	assert_int_equal(s.cs.l, 1);
	assert_int_equal(s.cs.db, 0);
	assert_int_equal(s.ss.selector, BOOT_DS);
	assert_int_equal(s.ds.selector, BOOT_DS);
	assert_int_equal(s.gdt.base, LAYOUT_GDT);

	struct kvm_regs r;
	assert_int_equal(ioctl(g.vcpu, KVM_GET_REGS, &r), 0);
	assert_int_equal(r.rip, LAYOUT_KERNEL_DEFAULT);
	assert_int_equal(r.rsi, LAYOUT_BOOT_PARAMS);
	assert_int_equal(r.rsp, LAYOUT_BOOT_STACK);
	assert_int_equal(r.rflags, 2);

	struct kvm_fpu f;
	assert_int_equal(ioctl(g.vcpu, KVM_GET_FPU, &f), 0);
	assert_int_equal(f.fcw, 0x37f);
	/* KVM_GET_FPU does not report MXCSR; the XSAVE image does. */
	if (have_xsave) {
		assert_int_equal(ioctl(g.vcpu, KVM_GET_XSAVE, &xs), 0);
		assert_int_equal(xs.region[6], 0x1f80);
	}
	kvm_guest_destroy(&g);
}

/*
 * Runs real guest code from 16 MiB: it loads through RSI, pushes on the boot stack and
 * reports the value on port 0x10, so code fetch, data access and stack go through the tables.
 */
static void test_kvm_runs_64bit_code(void **state)
{
	(void)state;
	struct kvm_guest g;
	if (!kvm_guest_create(&g, 32 * MiB))
		skip();
	static const uint8_t code[] = {
		0x8b, 0x06,             /* mov (%rsi),%eax */
		0x50,                   /* push %rax */
		0x66, 0xba, 0x10, 0x00, /* mov $0x10,%dx */
		0xef,                   /* out %eax,(%dx) */
		0xf4,                   /* hlt */
	};
	const uint32_t magic = 0x600dc0de;
	assert_int_equal(guest_mem_write(&g.mem, LAYOUT_KERNEL_DEFAULT, code, sizeof(code)), 0);
	assert_int_equal(guest_mem_write(&g.mem, LAYOUT_BOOT_PARAMS, &magic, sizeof(magic)), 0);
	assert_int_equal(long_mode_write_tables(&g.mem), 0);
	assert_int_equal(long_mode_setup_bsp(g.vcpu, LAYOUT_KERNEL_DEFAULT, LAYOUT_BOOT_PARAMS), 0);

	assert_int_equal(ioctl(g.vcpu, KVM_RUN, 0), 0);
	assert_int_equal(g.run->exit_reason, KVM_EXIT_IO);
	assert_int_equal(g.run->io.port, 0x10);
	assert_int_equal(g.run->io.direction, KVM_EXIT_IO_OUT);
	assert_int_equal(g.run->io.size, 4);
	uint32_t out;
	memcpy(&out, (uint8_t *)g.run + g.run->io.data_offset, sizeof(out));
	assert_int_equal(out, magic);
	assert_int_equal(read_u64(&g.mem, LAYOUT_BOOT_STACK - 8), magic);
	kvm_guest_destroy(&g);
}

static uint64_t get_msr(int vcpu, uint32_t index, bool *ok)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e.index = index };
	*ok = ioctl(vcpu, KVM_GET_MSRS, &m) == 1;
	return m.e.data;
}

static bool kvm_lists_msr(int kvm, uint32_t index)
{
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + 1024 * sizeof(uint32_t));
	l->nmsrs = 1024;
	assert_int_equal(ioctl(kvm, KVM_GET_MSR_INDEX_LIST, l), 0);
	bool found = false;
	for (uint32_t i = 0; i < l->nmsrs; i++)
		found |= l->indices[i] == index;
	free(l);
	return found;
}

static void test_kvm_msrs(void **state)
{
	(void)state;
	struct kvm_guest g;
	if (!kvm_guest_create(&g, 2 * MiB))
		skip();
	/* Dirty the MSRs first so the test sees msr_setup_vcpu's values, not KVM's reset ones. */
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[2];
	} dirty = { .hdr.nmsrs = 2, .e = { { .index = MSR_LSTAR, .data = 0xffffffff81000000ULL },
					   { .index = MSR_IA32_MISC_ENABLE, .data = 0 } } };
	ioctl(g.vcpu, KVM_SET_MSRS, &dirty);

	assert_int_equal(msr_setup_vcpu(g.kvm, g.vcpu, 0), 0);
	bool ok;
	if (kvm_lists_msr(g.kvm, MSR_LSTAR)) {
		assert_int_equal(get_msr(g.vcpu, MSR_LSTAR, &ok), 0);
		assert_true(ok);
	}
	if (kvm_lists_msr(g.kvm, MSR_IA32_MISC_ENABLE)) {
		assert_true(get_msr(g.vcpu, MSR_IA32_MISC_ENABLE, &ok) & MISC_ENABLE_FAST_STRING);
		assert_true(ok);
	}
	if (kvm_lists_msr(g.kvm, MSR_IA32_CR_PAT)) {
		assert_int_equal(get_msr(g.vcpu, MSR_IA32_CR_PAT, &ok), PAT_RESET_VALUE);
		assert_true(ok);
	}
	uint64_t def = get_msr(g.vcpu, MSR_MTRR_DEF_TYPE, &ok);
	if (ok)
		assert_int_equal(def, MTRR_DEF_TYPE_ENABLE | MTRR_TYPE_WRBACK);
	kvm_guest_destroy(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_identity_map),
		cmocka_unit_test(test_gdt),
		cmocka_unit_test(test_tables_need_ram),
		cmocka_unit_test(test_kvm_sregs_show_long_mode),
		cmocka_unit_test(test_kvm_runs_64bit_code),
		cmocka_unit_test(test_kvm_msrs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
