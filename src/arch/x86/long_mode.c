#include "arch/x86/long_mode.h"

#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/layout.h"
#include "lib/log.h"
#include "lib/util.h"

#define PAGE_TABLE_ENTRIES 512
#define IDENTITY_MAP_PDS 4 /* 4 page directories of 2 MiB pages map 4 GiB */

int long_mode_write_tables(struct guest_mem *mem)
{
	const uint64_t gdt[BOOT_GDT_ENTRIES] = {
		[BOOT_CS >> 3] = GDT_ENTRY_CODE64,
		[BOOT_DS >> 3] = GDT_ENTRY_DATA,
	};
	const uint64_t idt[2] = { 0, 0 };
	if (guest_mem_write(mem, LAYOUT_GDT, gdt, sizeof(gdt)) < 0 ||
	    guest_mem_write(mem, LAYOUT_IDT, idt, sizeof(idt)) < 0)
		return -EFAULT;

	uint64_t *pml4 = gpa_to_host_write(mem, LAYOUT_PML4, 4 * KiB);
	uint64_t *pdpt = gpa_to_host_write(mem, LAYOUT_PDPT, 4 * KiB);
	uint64_t *pd = gpa_to_host_write(mem, LAYOUT_PD, IDENTITY_MAP_PDS * 4 * KiB);
	if (!pml4 || !pdpt || !pd)
		return -EFAULT;

	memset(pml4, 0, 4 * KiB);
	memset(pdpt, 0, 4 * KiB);
	pml4[0] = LAYOUT_PDPT | PTE_PRESENT | PTE_WRITE;
	for (uint64_t i = 0; i < IDENTITY_MAP_PDS; i++)
		pdpt[i] = (LAYOUT_PD + i * 4 * KiB) | PTE_PRESENT | PTE_WRITE;
	for (uint64_t i = 0; i < IDENTITY_MAP_PDS * PAGE_TABLE_ENTRIES; i++)
		pd[i] = (i * 2 * MiB) | PTE_PRESENT | PTE_WRITE | PTE_LARGE;
	guest_mem_wrote(mem, pml4, 4 * KiB);
	guest_mem_wrote(mem, pdpt, 4 * KiB);
	guest_mem_wrote(mem, pd, IDENTITY_MAP_PDS * 4 * KiB);
	return 0;
}

/* The hidden part of a segment register, decoded from the GDT descriptor it was loaded from. */
static struct kvm_segment segment_from_descriptor(uint16_t selector, uint64_t d)
{
	struct kvm_segment s = {
		.base = ((d >> 16) & 0xffffff) | (((d >> 56) & 0xff) << 24),
		.limit = (uint32_t)((d & 0xffff) | (((d >> 48) & 0xf) << 16)),
		.selector = selector,
		.type = (d >> 40) & 0xf,
		.s = (d >> 44) & 1,
		.dpl = (d >> 45) & 3,
		.present = (d >> 47) & 1,
		.avl = (d >> 52) & 1,
		.l = (d >> 53) & 1,
		.db = (d >> 54) & 1,
		.g = (d >> 55) & 1,
	};
	if (s.g)
		s.limit = (s.limit << 12) | 0xfff;
	return s;
}

/*
 * KVM_SET_FPU ignores its mxcsr field, so MXCSR is set in the XSAVE image (FXSAVE layout:
 * MXCSR at byte 24). A KVM without KVM_GET_XSAVE keeps its reset value, which is the same.
 */
#define XSAVE_MXCSR_WORD 6

static int set_mxcsr(int vcpu_fd, uint32_t mxcsr)
{
	struct kvm_xsave xs;
	if (ioctl(vcpu_fd, KVM_GET_XSAVE, &xs) < 0)
		return 0;
	if (xs.region[XSAVE_MXCSR_WORD] == mxcsr)
		return 0;
	xs.region[XSAVE_MXCSR_WORD] = mxcsr;
	if (ioctl(vcpu_fd, KVM_SET_XSAVE, &xs) < 0) {
		int rc = -errno;
		log_error("long_mode", "setting MXCSR of the boot vCPU failed: %s", strerror(errno));
		return rc;
	}
	return 0;
}

int long_mode_setup_bsp(int vcpu_fd, uint64_t entry, uint64_t boot_params_gpa)
{
	struct kvm_sregs sregs;
	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		goto fail;

	sregs.cs = segment_from_descriptor(BOOT_CS, GDT_ENTRY_CODE64);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = segment_from_descriptor(BOOT_DS, GDT_ENTRY_DATA);
	/* VM entry in 64-bit mode needs a busy 64-bit TSS in TR; nothing ever switches to it. */
	sregs.tr = (struct kvm_segment){ .limit = 0xffff, .type = 11, .present = 1 };
	sregs.ldt = (struct kvm_segment){ .limit = 0xffff, .type = 2, .present = 1 };
	sregs.gdt.base = LAYOUT_GDT;
	sregs.gdt.limit = BOOT_GDT_ENTRIES * 8 - 1;
	/* Limit 0: any exception before the kernel loads its own IDT ends in a triple fault. */
	sregs.idt.base = LAYOUT_IDT;
	sregs.idt.limit = 0;

	sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_PG;
	sregs.cr2 = 0;
	sregs.cr3 = LAYOUT_PML4;
	sregs.cr4 = CR4_PAE;
	sregs.efer = EFER_LME | EFER_LMA;
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		goto fail;

	struct kvm_regs regs;
	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2; /* reserved bit 1; IF clear */
	regs.rip = entry;
	regs.rsi = boot_params_gpa;
	regs.rsp = LAYOUT_BOOT_STACK;
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		goto fail;

	struct kvm_fpu fpu;
	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f;    /* x87 reset: all exceptions masked, 64-bit precision */
	fpu.mxcsr = 0x1f80; /* SSE reset: all exceptions masked */
	if (ioctl(vcpu_fd, KVM_SET_FPU, &fpu) < 0)
		goto fail;
	return set_mxcsr(vcpu_fd, fpu.mxcsr);

fail:;
	int rc = -errno;
	log_error("long_mode", "setting the 64-bit entry state of the boot vCPU failed: %s", strerror(errno));
	return rc;
}
