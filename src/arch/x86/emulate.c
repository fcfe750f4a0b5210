#include "arch/x86/emulate.h"

#include <errno.h>
#include <cpuid.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/cpuid.h"
#include "arch/x86/syscall_fixup.h"
#include "arch/x86/vcpu_arch.h"
#include "arch/x86/xsave_image.h"
#include "lib/log.h"
#include "lib/util.h"
#include "vm/vcpu.h"
#include "vm/vm.h"

#define CR0_PE (1ULL << 0)
#define CR0_MP (1ULL << 1)
#define CR0_EM (1ULL << 2)
#define CR0_TS (1ULL << 3)
#define CR0_NE (1ULL << 5)
#define CR4_TSD (1ULL << 2)
#define CR4_OSFXSR (1ULL << 9)
#define CR4_OSXSAVE (1ULL << 18)
#define EFER_LMA (1ULL << 10)

#define RFLAGS_CF (1ULL << 0)
#define RFLAGS_PF (1ULL << 2)
#define RFLAGS_AF (1ULL << 4)
#define RFLAGS_ZF (1ULL << 6)
#define RFLAGS_SF (1ULL << 7)
#define RFLAGS_OF (1ULL << 11)
#define RFLAGS_VM (1ULL << 17)
#define RFLAGS_AC (1ULL << 18)

#define VEC_BP 3
#define VEC_UD 6
#define VEC_NM 7
#define VEC_GP 13
#define VEC_PF 14
#define VEC_MF 16

#define MSR_IA32_TSC 0x10
#define MSR_TSC_AUX 0xc0000103

/* Result of one emulation step besides a negative errno. */
#define EMUL_DONE 0

int x86_read_msrs(int vcpu_fd, const uint32_t *index, uint64_t *value, unsigned int n)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[4];
	} m;
	if (n > ARRAY_SIZE(m.e))
		return -EINVAL;
	memset(&m, 0, sizeof(m));
	m.hdr.nmsrs = n;
	for (unsigned int i = 0; i < n; i++)
		m.e[i].index = index[i];
	int r = ioctl(vcpu_fd, KVM_GET_MSRS, &m);
	if (r < 0)
		return -errno;
	if ((unsigned int)r != n)
		return -EIO;
	for (unsigned int i = 0; i < n; i++)
		value[i] = m.e[i].data;
	return 0;
}

static void regs_to_gpr(const struct kvm_regs *r, uint64_t g[16])
{
	g[X86_RAX] = r->rax; g[X86_RCX] = r->rcx; g[X86_RDX] = r->rdx; g[X86_RBX] = r->rbx;
	g[X86_RSP] = r->rsp; g[X86_RBP] = r->rbp; g[X86_RSI] = r->rsi; g[X86_RDI] = r->rdi;
	g[X86_R8] = r->r8; g[X86_R9] = r->r9; g[X86_R10] = r->r10; g[X86_R11] = r->r11;
	g[X86_R12] = r->r12; g[X86_R13] = r->r13; g[X86_R14] = r->r14; g[X86_R15] = r->r15;
}

static void gpr_to_regs(const uint64_t g[16], struct kvm_regs *r)
{
	r->rax = g[X86_RAX]; r->rcx = g[X86_RCX]; r->rdx = g[X86_RDX]; r->rbx = g[X86_RBX];
	r->rsp = g[X86_RSP]; r->rbp = g[X86_RBP]; r->rsi = g[X86_RSI]; r->rdi = g[X86_RDI];
	r->r8 = g[X86_R8]; r->r9 = g[X86_R9]; r->r10 = g[X86_R10]; r->r11 = g[X86_R11];
	r->r12 = g[X86_R12]; r->r13 = g[X86_R13]; r->r14 = g[X86_R14]; r->r15 = g[X86_R15];
}

static unsigned int fetch_access(const struct x86_cpu *cpu)
{
	return GUEST_ACCESS_FETCH | (cpu->cpl == 3 ? GUEST_ACCESS_USER : 0);
}

/* CPUID 0x80000008 EAX[7:0]: the physical-address width the guest was told about. */
static unsigned int maxphyaddr(const struct vm *vm)
{
	const struct kvm_cpuid_entry2 *e = vm->cpuid ? cpuid_find_entry(vm->cpuid, 0x80000008, 0) : NULL;
	if (e)
		return e->eax & 0xff;
	unsigned int a, b, c, d;
	return __get_cpuid(0x80000008, &a, &b, &c, &d) ? a & 0xff : 0;
}

struct guest_paging x86_guest_paging(const struct vm *vm, const struct kvm_sregs *s, uint64_t rflags)
{
	return (struct guest_paging){ .cr0 = s->cr0, .cr3 = s->cr3, .cr4 = s->cr4, .efer = s->efer,
				      .rflags = rflags, .maxphyaddr = maxphyaddr(vm) };
}

int x86_cpu_load(struct vcpu *vcpu, struct x86_cpu *cpu)
{
	memset(cpu, 0, sizeof(*cpu));
	cpu->vcpu = vcpu;
	if (ioctl(vcpu->fd, KVM_GET_REGS, &cpu->regs) < 0 || ioctl(vcpu->fd, KVM_GET_SREGS, &cpu->sregs) < 0)
		return -errno;
	regs_to_gpr(&cpu->regs, cpu->gpr);
	const struct kvm_sregs *s = &cpu->sregs;
	cpu->pg = x86_guest_paging(vcpu->vm, s, cpu->regs.rflags);
	if (!(s->cr0 & CR0_PE)) {
		cpu->mode = 16;
		cpu->cpl = 0;
	} else if (cpu->regs.rflags & RFLAGS_VM) {
		cpu->mode = 16;
		cpu->cpl = 3;
	} else {
		cpu->mode = ((s->efer & EFER_LMA) && s->cs.l) ? 64 : s->cs.db ? 32 : 16;
		cpu->cpl = s->cs.selector & 3;
	}
	if (cpu->mode == 64)
		cpu->rip_linear = cpu->regs.rip;
	else
		cpu->rip_linear = (s->cs.base + (cpu->mode == 16 ? cpu->regs.rip & 0xffff : cpu->regs.rip)) & 0xffffffffULL;

	/* Fetch page by page: an instruction may cross into a page that is not mapped. */
	uint64_t lin = cpu->rip_linear;
	while (cpu->nbytes < X86_MAX_INSN_LEN) {
		size_t chunk = MIN(X86_MAX_INSN_LEN - cpu->nbytes, 0x1000 - (lin & 0xfff));
		if (guest_virt_read(&vcpu->vm->mem, &cpu->pg, lin, cpu->bytes + cpu->nbytes, chunk, fetch_access(cpu),
				    NULL))
			break;
		cpu->nbytes += (unsigned int)chunk;
		lin += chunk;
	}
	return 0;
}

int x86_cpu_store(struct x86_cpu *cpu)
{
	if (cpu->regs_dirty) {
		gpr_to_regs(cpu->gpr, &cpu->regs);
		if (ioctl(cpu->vcpu->fd, KVM_SET_REGS, &cpu->regs) < 0)
			return -errno;
		cpu->regs_dirty = false;
	}
	if (cpu->sregs_dirty) {
		if (ioctl(cpu->vcpu->fd, KVM_SET_SREGS, &cpu->sregs) < 0)
			return -errno;
		cpu->sregs_dirty = false;
	}
	return 0;
}

int x86_cpu_inject(struct x86_cpu *cpu, unsigned int vector, bool has_error, uint32_t error, uint64_t cr2)
{
	if (vector == VEC_PF) {
		cpu->sregs.cr2 = cr2;
		cpu->sregs_dirty = true;
	}
	int rc = x86_cpu_store(cpu);
	if (rc)
		return rc;
	struct kvm_vcpu_events ev;
	if (ioctl(cpu->vcpu->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return -errno;
	ev.exception.injected = 1;
	ev.exception.pending = 0;
	ev.exception.nr = (uint8_t)vector;
	ev.exception.has_error_code = has_error;
	ev.exception.error_code = error;
	/* The flags KVM returned make the NMI and interrupt-shadow state round-trip unchanged. */
	if (ioctl(cpu->vcpu->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
		return -errno;
	return 0;
}

static void advance(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t rip = cpu->regs.rip + in->len;
	cpu->regs.rip = cpu->mode == 64 ? rip : cpu->mode == 32 ? (rip & 0xffffffffULL) : (rip & 0xffff);
	cpu->regs_dirty = true;
}

static int inject(struct x86_cpu *cpu, unsigned int vector, bool has_error, uint32_t error, uint64_t cr2)
{
	x86_emul_count(cpu->vcpu, vector == VEC_UD ? X86_EMUL_UD : X86_EMUL_FAULT);
	return x86_cpu_inject(cpu, vector, has_error, error, cr2);
}

static int inject_ud(struct x86_cpu *cpu) { return inject(cpu, VEC_UD, false, 0, 0); }
static int inject_gp0(struct x86_cpu *cpu) { return inject(cpu, VEC_GP, true, 0, 0); }

static uint64_t seg_base(const struct x86_cpu *cpu, enum x86_seg seg)
{
	const struct kvm_sregs *s = &cpu->sregs;
	if (cpu->mode == 64)
		return seg == X86_SEG_FS ? s->fs.base : seg == X86_SEG_GS ? s->gs.base : 0;
	switch (seg) {
	case X86_SEG_ES: return s->es.base;
	case X86_SEG_CS: return s->cs.base;
	case X86_SEG_SS: return s->ss.base;
	case X86_SEG_FS: return s->fs.base;
	case X86_SEG_GS: return s->gs.base;
	default: return s->ds.base;
	}
}

static uint64_t mem_linear(const struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t next = cpu->regs.rip + in->len;
	uint64_t lin = seg_base(cpu, x86_insn_mem_seg(in)) + x86_insn_ea(in, cpu->gpr, next);
	return cpu->mode == 64 ? lin : lin & 0xffffffffULL;
}

/*
 * Turns a failed guest memory access into the exception the CPU would raise. An operand
 * outside RAM (MMIO) cannot be emulated here: that stops the VM.
 */
static int access_fault(struct x86_cpu *cpu, int rc, const struct guest_fault *f)
{
	if (rc == -EFAULT)
		return inject(cpu, VEC_PF, true, f->pf_error, f->addr);
	if (rc == -EINVAL)
		return inject_gp0(cpu);
	return rc;
}

/*
 * Copies between guest-virtual memory and buf with the guest's permissions. Returns 0, 1 when
 * the guest got the exception its CPU would raise instead (*err: the injection's result), or
 * a negative errno.
 */
static int guest_copy(struct x86_cpu *cpu, uint64_t lin, void *buf, size_t len, unsigned int access, bool write,
		      int *err)
{
	struct guest_fault f = { 0 };
	const struct guest_mem *mem = &cpu->vcpu->vm->mem;
	int rc = write ? guest_virt_write(mem, &cpu->pg, lin, buf, len, access, &f)
		       : guest_virt_read(mem, &cpu->pg, lin, buf, len, access, &f);
	if (rc == 0)
		return 0;
	*err = access_fault(cpu, rc, &f);
	return 1;
}

/* Reads or writes the memory operand; returns 1 when an exception was delivered instead. */
static int mem_access(struct x86_cpu *cpu, const struct x86_insn *in, void *buf, size_t len, bool write, int *err)
{
	unsigned int access = cpu->cpl == 3 ? GUEST_ACCESS_USER : 0;
	return guest_copy(cpu, mem_linear(cpu, in), buf, len, access, write, err);
}

static uint64_t size_mask(unsigned int bytes) { return bytes == 8 ? ~0ULL : (1ULL << (8 * bytes)) - 1; }

/* Writes a result the way a register write of that size does (32-bit writes zero-extend). */
static void write_gpr(struct x86_cpu *cpu, unsigned int reg, unsigned int size, uint64_t v)
{
	if (size >= 4)
		cpu->gpr[reg] = v & size_mask(size);
	else
		cpu->gpr[reg] = (cpu->gpr[reg] & ~size_mask(size)) | (v & size_mask(size));
	cpu->regs_dirty = true;
}

/* An 8-bit register operand: without REX, 4-7 are AH, CH, DH, BH. */
static uint8_t read_gpr8(const struct x86_cpu *cpu, const struct x86_insn *in, unsigned int reg)
{
	if (!in->rex && reg >= 4 && reg < 8)
		return (uint8_t)(cpu->gpr[reg - 4] >> 8);
	return (uint8_t)cpu->gpr[reg];
}

static int emulate_popcnt(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t src = 0;
	int err = 0;
	if (in->mod == 3)
		src = cpu->gpr[in->rm];
	else if (mem_access(cpu, in, &src, in->opsize, false, &err))
		return err;
	src &= size_mask(in->opsize);
	write_gpr(cpu, in->reg, in->opsize, (uint64_t)__builtin_popcountll(src));
	cpu->regs.rflags &= ~(RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF);
	if (src == 0)
		cpu->regs.rflags |= RFLAGS_ZF;
	advance(cpu, in);
	x86_emul_count(cpu->vcpu, X86_EMUL_POPCNT);
	return EMUL_DONE;
}

/* CRC32 (SSE4.2) uses the Castagnoli polynomial, bit-reflected, with no pre/post inversion. */
static int emulate_crc32(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int src_size = in->opcode == 0xf0 ? 1 : in->opsize;
	uint64_t src = 0;
	int err = 0;
	if (in->mod == 3)
		src = src_size == 1 ? read_gpr8(cpu, in, in->rm) : cpu->gpr[in->rm];
	else if (mem_access(cpu, in, &src, src_size, false, &err))
		return err;
	uint32_t crc = (uint32_t)cpu->gpr[in->reg];
	for (unsigned int i = 0; i < src_size; i++) {
		crc ^= (uint8_t)(src >> (8 * i));
		for (int b = 0; b < 8; b++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
	}
	write_gpr(cpu, in->reg, 4, crc); /* 32- and 64-bit forms both zero-extend */
	advance(cpu, in);
	x86_emul_count(cpu->vcpu, X86_EMUL_CRC32);
	return EMUL_DONE;
}

static int emulate_rdtscp(struct x86_cpu *cpu, const struct x86_insn *in)
{
	if ((cpu->sregs.cr4 & CR4_TSD) && cpu->cpl > 0)
		return inject_gp0(cpu);
	static const uint32_t idx[2] = { MSR_IA32_TSC, MSR_TSC_AUX };
	uint64_t val[2] = { 0, 0 };
	int rc = x86_read_msrs(cpu->vcpu->fd, idx, val, 2);
	if (rc)
		return rc;
	cpu->gpr[X86_RAX] = val[0] & 0xffffffffULL;
	cpu->gpr[X86_RDX] = val[0] >> 32;
	cpu->gpr[X86_RCX] = val[1] & 0xffffffffULL;
	advance(cpu, in);
	x86_emul_count(cpu->vcpu, X86_EMUL_RDTSCP);
	return EMUL_DONE;
}

/* XCR0 as KVM holds it for the vCPU (x87 and SSE if KVM lists no XCR0). */
static int read_xcr0(const struct x86_cpu *cpu, uint64_t *xcr0)
{
	struct kvm_xcrs xcrs;
	memset(&xcrs, 0, sizeof(xcrs));
	if (ioctl(cpu->vcpu->fd, KVM_GET_XCRS, &xcrs) < 0)
		return -errno;
	*xcr0 = XFEATURE_MASK_FP | XFEATURE_MASK_SSE;
	for (unsigned int i = 0; i < xcrs.nr_xcrs && i < KVM_MAX_XCRS; i++)
		if (xcrs.xcrs[i].xcr == 0)
			*xcr0 = xcrs.xcrs[i].value;
	return 0;
}

static int emulate_xgetbv(struct x86_cpu *cpu, const struct x86_insn *in)
{
	if (!(cpu->sregs.cr4 & CR4_OSXSAVE))
		return inject_ud(cpu);
	uint32_t index = (uint32_t)cpu->gpr[X86_RCX];
	if (index > 1)
		return inject_gp0(cpu);
	uint64_t xcr0;
	if (read_xcr0(cpu, &xcr0))
		xcr0 = XFEATURE_MASK_FP | XFEATURE_MASK_SSE; /* what a CPU without KVM_GET_XCRS must have */
	/* XCR1 (XINUSE) may report more in use than is: every component enabled is a safe answer. */
	cpu->gpr[X86_RAX] = xcr0 & 0xffffffffULL;
	cpu->gpr[X86_RDX] = xcr0 >> 32;
	cpu->regs_dirty = true;
	advance(cpu, in);
	x86_emul_count(cpu->vcpu, X86_EMUL_XGETBV);
	return EMUL_DONE;
}

static int emulate_nop(struct x86_cpu *cpu, const struct x86_insn *in)
{
	advance(cpu, in);
	x86_emul_count(cpu->vcpu, X86_EMUL_NOP);
	return EMUL_DONE;
}

static int emulate_flag(struct x86_cpu *cpu, const struct x86_insn *in, bool set)
{
	if (cpu->cpl != 0)
		return inject_ud(cpu);
	if (set)
		cpu->regs.rflags |= RFLAGS_AC;
	else
		cpu->regs.rflags &= ~RFLAGS_AC;
	advance(cpu, in);
	x86_emul_count(cpu->vcpu, set ? X86_EMUL_STAC : X86_EMUL_CLAC);
	return EMUL_DONE;
}

static int emulate_int3(struct x86_cpu *cpu, const struct x86_insn *in)
{
	/* #BP is a trap: the frame's RIP is the instruction after the int3. */
	advance(cpu, in);
	x86_emul_count(cpu->vcpu, X86_EMUL_INT3);
	return x86_cpu_inject(cpu, VEC_BP, false, 0, 0);
}

/*
 * x87/SSE control instructions act on state KVM exposes through KVM_GET_FPU/KVM_SET_FPU.
 * sse selects the SSE rules for CR0.EM (#UD instead of #NM).
 */
static int fpu_check(struct x86_cpu *cpu, bool sse)
{
	uint64_t cr0 = cpu->sregs.cr0;
	if (sse && (!(cpu->sregs.cr4 & CR4_OSFXSR) || (cr0 & CR0_EM)))
		return inject_ud(cpu);
	if ((cr0 & CR0_EM) || (cr0 & CR0_TS))
		return inject(cpu, VEC_NM, false, 0, 0);
	return 1;
}

static int emulate_fwait(struct x86_cpu *cpu, const struct x86_insn *in)
{
	if ((cpu->sregs.cr0 & CR0_TS) && (cpu->sregs.cr0 & CR0_MP))
		return inject(cpu, VEC_NM, false, 0, 0);
	struct kvm_fpu fpu;
	if (ioctl(cpu->vcpu->fd, KVM_GET_FPU, &fpu) == 0 && (fpu.fsw & 0x80) && (cpu->sregs.cr0 & CR0_NE))
		return inject(cpu, VEC_MF, false, 0, 0);
	advance(cpu, in);
	x86_emul_count(cpu->vcpu, X86_EMUL_FWAIT);
	return EMUL_DONE;
}

/*
 * The XSAVE family: the guest's area in memory against the vCPU state KVM holds (KVM_GET_XSAVE,
 * standard format). On a host whose emulator fails on these, a Linux guest runs them at every
 * context switch, so that guest user code's AVX state (which such a host lets it use) is kept.
 */
enum xsave_op { OP_XSAVE, OP_XSAVEC, OP_XRSTOR };

/* True if the CPU the guest runs on has XSAVEC, so XRSTOR accepts a compacted area. */
static bool host_has_xsavec(void)
{
	unsigned int a, b, c, d;
	return __get_cpuid_count(0xd, 1, &a, &b, &c, &d) && (a & 2);
}

/* The guest's XSAVE area for xsave_restore_copy_area(): read with the guest's permissions. */
struct area_ctx {
	struct x86_cpu *cpu;
	uint64_t lin;
	unsigned int access;
	int *err;
};

static int read_area(void *p, size_t offset, void *buf, size_t len)
{
	struct area_ctx *c = p;
	return guest_copy(c->cpu, c->lin + offset, buf, len, c->access, false, c->err);
}

/*
 * One XSAVE-family instruction against KVM's image kvm (already read). Returns 0 when it was
 * emulated, 1 when an exception was delivered instead (*err), or a negative errno.
 */
static int xsave_op_apply(struct x86_cpu *cpu, const struct x86_insn *in, enum xsave_op op,
			  const struct xsave_layout *layout, uint8_t *kvm, size_t kvm_len, int *err)
{
	uint64_t lin = mem_linear(cpu, in);
	if (lin & (XSAVE_ALIGN - 1)) {
		*err = inject_gp0(cpu);
		return 1;
	}
	uint64_t xcr0;
	int rc = read_xcr0(cpu, &xcr0);
	if (rc)
		return rc;
	uint64_t rfbm = xcr0 & ((cpu->gpr[X86_RDX] << 32) | (cpu->gpr[X86_RAX] & 0xffffffffULL));
	unsigned int user = cpu->cpl == 3 ? GUEST_ACCESS_USER : 0;

	uint8_t *area = NULL;
	size_t len;
	if (op == OP_XRSTOR) {
		struct area_ctx ctx = { cpu, lin, user, err };
		rc = xsave_restore_copy_area(layout, xcr0, rfbm, host_has_xsavec(), read_area, &ctx, &area, &len);
		if (rc == 0)
			rc = xsave_restore(layout, area, len, rfbm, kvm, kvm_len);
		if (rc == -EINVAL) {
			*err = inject_gp0(cpu);
			rc = 1;
		} else if (rc == 0 && ioctl(cpu->vcpu->fd, KVM_SET_XSAVE, kvm) < 0) {
			rc = -errno;
		}
	} else {
		len = xsave_area_size(layout, rfbm, op == OP_XSAVEC);
		area = malloc(len);
		if (!area)
			return -ENOMEM;
		/* A save reads the area first, as a write: a read-only page faults as the store would. */
		unsigned int access = user | GUEST_ACCESS_WRITE;
		rc = guest_copy(cpu, lin, area, len, access, false, err);
		if (rc == 0)
			rc = xsave_save(layout, kvm, kvm_len, rfbm, op == OP_XSAVEC, area, len);
		if (rc == 0)
			rc = guest_copy(cpu, lin, area, len, access, true, err);
	}
	free(area);
	return rc;
}

static int emulate_xsave_op(struct x86_cpu *cpu, const struct x86_insn *in, enum xsave_op op)
{
	if (!(cpu->sregs.cr4 & CR4_OSXSAVE))
		return inject_ud(cpu);
	if (cpu->sregs.cr0 & CR0_TS)
		return inject(cpu, VEC_NM, false, 0, 0);
	struct xsave_layout layout;
	size_t kvm_len;
	int err = 0, rc = x86_xsave_layout(cpu->vcpu->vm, &layout, &kvm_len);
	if (rc)
		return rc;
	uint8_t *kvm = calloc(1, kvm_len);
	if (!kvm)
		return -ENOMEM;
	if (ioctl(cpu->vcpu->fd, kvm_len > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, kvm) < 0)
		rc = -errno;
	else
		rc = xsave_op_apply(cpu, in, op, &layout, kvm, kvm_len, &err);
	free(kvm);
	if (rc == 1)
		return err;
	if (rc == 0) {
		advance(cpu, in);
		x86_emul_count(cpu->vcpu, op == OP_XRSTOR ? X86_EMUL_XRSTOR : X86_EMUL_XSAVE);
	}
	return rc;
}

enum fpu_op { FNINIT, FNCLEX, FNSTSW_AX, FNSTSW_M, FNSTCW_M, FLDCW_M, EMMS, LDMXCSR, STMXCSR };

static int emulate_fpu(struct x86_cpu *cpu, const struct x86_insn *in, enum fpu_op op)
{
	int rc = fpu_check(cpu, op == LDMXCSR || op == STMXCSR);
	if (rc <= 0)
		return rc;
	struct kvm_fpu fpu;
	if (ioctl(cpu->vcpu->fd, KVM_GET_FPU, &fpu) < 0)
		return -errno;
	bool fpu_dirty = false;
	int err = 0;
	uint16_t v16;
	uint32_t v32;
	switch (op) {
	case FNINIT:
		fpu.fcw = 0x37f;
		fpu.fsw = 0;
		fpu.ftwx = 0;
		fpu.last_opcode = 0;
		fpu.last_ip = fpu.last_dp = 0;
		fpu_dirty = true;
		break;
	case FNCLEX:
		fpu.fsw &= 0x7f00;
		fpu_dirty = true;
		break;
	case FNSTSW_AX:
		write_gpr(cpu, X86_RAX, 2, fpu.fsw);
		break;
	case FNSTSW_M:
	case FNSTCW_M:
		v16 = op == FNSTSW_M ? fpu.fsw : fpu.fcw;
		if (mem_access(cpu, in, &v16, 2, true, &err))
			return err;
		break;
	case FLDCW_M:
		if (mem_access(cpu, in, &v16, 2, false, &err))
			return err;
		fpu.fcw = v16;
		fpu_dirty = true;
		break;
	case EMMS:
		fpu.ftwx = 0;
		fpu_dirty = true;
		break;
	case LDMXCSR:
		if (mem_access(cpu, in, &v32, 4, false, &err))
			return err;
		if (v32 & 0xffff0000u)
			return inject_gp0(cpu);
		fpu.mxcsr = v32;
		fpu_dirty = true;
		break;
	case STMXCSR:
		v32 = fpu.mxcsr;
		if (mem_access(cpu, in, &v32, 4, true, &err))
			return err;
		break;
	}
	if (fpu_dirty && ioctl(cpu->vcpu->fd, KVM_SET_FPU, &fpu) < 0)
		return -errno;
	advance(cpu, in);
	x86_emul_count(cpu->vcpu, X86_EMUL_FPU_CONTROL);
	return EMUL_DONE;
}

/* Returns EMUL_DONE, or -ENOTSUP for an instruction vmon does not emulate, or another errno. */
static int emulate(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint8_t op = in->opcode;
	bool mem = x86_insn_has_mem(in);
	unsigned int reg3 = in->has_modrm ? (in->modrm >> 3) & 7 : 0;

	if (in->map == X86_MAP_ONE) {
		if (in->lock && op != 0xcc)
			return -ENOTSUP;
		switch (op) {
		case 0xcc:
			return in->lock ? inject_ud(cpu) : emulate_int3(cpu, in);
		case 0x9b:
			return emulate_fwait(cpu, in);
		case 0x90:
			return emulate_nop(cpu, in);
		case 0xd9:
			if (mem && reg3 == 7)
				return emulate_fpu(cpu, in, FNSTCW_M);
			if (mem && reg3 == 5)
				return emulate_fpu(cpu, in, FLDCW_M);
			break;
		case 0xdb:
			if (in->modrm == 0xe3)
				return emulate_fpu(cpu, in, FNINIT);
			if (in->modrm == 0xe2)
				return emulate_fpu(cpu, in, FNCLEX);
			break;
		case 0xdd:
			if (mem && reg3 == 7)
				return emulate_fpu(cpu, in, FNSTSW_M);
			break;
		case 0xdf:
			if (in->modrm == 0xe0)
				return emulate_fpu(cpu, in, FNSTSW_AX);
			break;
		}
		return -ENOTSUP;
	}

	if (in->map == X86_MAP_0F38) {
		if ((op == 0xf0 || op == 0xf1) && in->repne && !in->lock)
			return emulate_crc32(cpu, in);
		return -ENOTSUP;
	}
	if (in->map != X86_MAP_0F)
		return -ENOTSUP;

	/* UD0/UD1/UD2 are defined to raise #UD, as is LOCK on any instruction handled below. */
	if (op == 0x0b || op == 0xb9 || op == 0xff || in->lock)
		return inject_ud(cpu);
	switch (op) {
	case 0x01:
		switch (in->modrm) {
		case 0xca: return emulate_flag(cpu, in, false);
		case 0xcb: return emulate_flag(cpu, in, true);
		case 0xd0: return emulate_xgetbv(cpu, in);
		case 0xf9: return emulate_rdtscp(cpu, in);
		}
		return -ENOTSUP;
	case 0xb8:
		/* Without F3 this is JMPE, which a 64-bit CPU does not have. */
		return in->rep ? emulate_popcnt(cpu, in) : inject_ud(cpu);
	case 0x0d: case 0x18: case 0x19: case 0x1a: case 0x1b: case 0x1c: case 0x1d: case 0x1e: case 0x1f:
		/* Prefetches, hint NOPs, ENDBR32/64 (and RDSSP, a NOP while CET is off). */
		return emulate_nop(cpu, in);
	case 0x77:
		return emulate_fpu(cpu, in, EMMS);
	case 0xae:
		if (!mem && reg3 >= 5)
			return emulate_nop(cpu, in); /* lfence, mfence, sfence */
		if (mem && reg3 == 2 && !in->rep && !in->repne && !in->opsize_prefix)
			return emulate_fpu(cpu, in, LDMXCSR);
		if (mem && reg3 == 3 && !in->rep && !in->repne && !in->opsize_prefix)
			return emulate_fpu(cpu, in, STMXCSR);
		if (mem && (reg3 == 7 || (reg3 == 6 && in->opsize_prefix)) && !in->rep && !in->repne)
			return emulate_nop(cpu, in); /* clflush, clflushopt, clwb: guest RAM is coherent */
		if (mem && reg3 >= 4 && reg3 <= 6 && !in->rep && !in->repne && !in->opsize_prefix)
			/* XSAVEOPT may store what XSAVE stores: its optimisations are optional. */
			return emulate_xsave_op(cpu, in, reg3 == 5 ? OP_XRSTOR : OP_XSAVE);
		return -ENOTSUP;
	case 0xc7:
		if (mem && reg3 == 4 && !in->rep && !in->repne && !in->opsize_prefix)
			return emulate_xsave_op(cpu, in, OP_XSAVEC);
		return -ENOTSUP;
	}
	return -ENOTSUP;
}

static void hex_bytes(const uint8_t *b, unsigned int n, char *out, size_t size)
{
	size_t pos = 0;
	out[0] = 0;
	for (unsigned int i = 0; i < n && pos + 4 < size; i++)
		pos += (size_t)snprintf(out + pos, size - pos, "%s%02x", i ? " " : "", b[i]);
	if (n == 0)
		snprintf(out, size, "(unreadable)");
}

/* The reason the guest cannot go on, for the caller to stop the VM with. */
struct stop_reason {
	char *text;
	size_t size;
};

static int give_up(struct x86_cpu *cpu, const struct stop_reason *out, const char *why)
{
	char hex[64];
	hex_bytes(cpu->bytes, cpu->nbytes, hex, sizeof(hex));
	x86_emul_count(cpu->vcpu, X86_EMUL_UNHANDLED);
	snprintf(out->text, out->size,
		 "vCPU %u: the host's KVM could not run the guest instruction at RIP 0x%llx (CPL %u, "
		 "bytes %s) and vmon %s; run on a host with hardware virtualization, or see "
		 "docs/host-quirks.md for kernel options that avoid such instructions",
		 cpu->vcpu->id, (unsigned long long)cpu->regs.rip, cpu->cpl, hex, why);
	return -ENOTSUP;
}

int x86_handle_emulation_failure(struct vcpu *vcpu, char *why, size_t why_size)
{
	const struct stop_reason out = { why, why_size };
	struct x86_cpu cpu;
	int rc = x86_cpu_load(vcpu, &cpu);
	if (rc) {
		snprintf(why, why_size,
			 "vCPU %u: the host's KVM could not emulate an instruction and its registers could not be "
			 "read: %s",
			 vcpu->id, strerror(-rc));
		return rc;
	}

	rc = syscall_fixup_on_emulation_failure(vcpu, &cpu);
	if (rc <= 0) {
		if (rc < 0)
			return give_up(&cpu, &out, "could not complete the SYSCALL fix there");
		return 0;
	}

	struct x86_insn in;
	rc = x86_decode(cpu.bytes, cpu.nbytes, cpu.mode, &in);
	if (rc == -ENODATA || (rc == 0 && cpu.nbytes == 0)) {
		/* The fetch itself faults (e.g. the rest of the instruction is on an unmapped page). */
		struct guest_fault f = { 0 };
		uint64_t gpa;
		int wrc = guest_walk(&vcpu->vm->mem, &cpu.pg, cpu.rip_linear + cpu.nbytes, fetch_access(&cpu), &gpa, &f);
		if (wrc == -EFAULT || wrc == -EINVAL)
			return access_fault(&cpu, wrc, &f) ? give_up(&cpu, &out, "could not deliver the fault") : 0;
		return give_up(&cpu, &out, "could not fetch it (code outside guest RAM)");
	}
	if (rc == -E2BIG)
		return inject_gp0(&cpu) ? give_up(&cpu, &out, "could not deliver #GP") : 0;
	if (rc)
		return give_up(&cpu, &out, "cannot decode it");

	uint64_t rip = cpu.regs.rip;
	rc = emulate(&cpu, &in);
	if (rc == -ENOTSUP)
		return give_up(&cpu, &out, "does not emulate it either");
	if (rc == 0)
		rc = x86_cpu_store(&cpu);
	if (rc) {
		log_error("emulate", "vCPU %u: applying the emulated result failed: %s", vcpu->id, strerror(-rc));
		return give_up(&cpu, &out, "could not apply its emulation");
	}
	log_debug("emulate", "vCPU %u: emulated %u-byte instruction at RIP 0x%llx (map %u opcode 0x%02x)", vcpu->id,
		  in.len, (unsigned long long)rip, in.map, in.opcode);
	return 0;
}
