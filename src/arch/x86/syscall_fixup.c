#include "arch/x86/syscall_fixup.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/emulate.h"
#include "arch/x86/guest_walk.h"
#include "arch/x86/probe_vm.h"
#include "arch/x86/vcpu_arch.h"
#include "lib/log.h"
#include "vm/vcpu.h"
#include "vm/vm.h"

#define EFER_SCE 0x1ULL
#define EFER_NXE (1ULL << 11)
#define CR4_SMEP (1ULL << 20)
#define RFLAGS_FIXED (1ULL << 1)
#define RFLAGS_IF (1ULL << 9)
#define RFLAGS_RF (1ULL << 16)
#define RFLAGS_VM (1ULL << 17)
#define RFLAGS_AC (1ULL << 18)
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_SYSCALL_MASK 0xc0000084
#define VEC_PF 14

static const uint8_t slot_nop3[3] = { 0x0f, 0x1f, 0x00 };
static const uint8_t slot_clac[3] = { 0x0f, 0x01, 0xca };
static const uint8_t endbr64[4] = { 0xf3, 0x0f, 0x1e, 0xfa };
static const uint8_t nop4[4] = { 0x0f, 0x1f, 0x40, 0x00 };

/* int3 then hlt at CPL0, with no IDT: hardware raises #BP and triple-faults. */
__asm__(".pushsection .rodata\n"
	".globl vmon_probe_int3_start\n .hidden vmon_probe_int3_start\n"
	".globl vmon_probe_int3_end\n .hidden vmon_probe_int3_end\n"
	"vmon_probe_int3_start:\n"
	"  int3\n"
	"  hlt\n"
	"vmon_probe_int3_end:\n"
	".popsection\n");
PROBE_BLOB(vmon_probe_int3);

/* True when int3 at CPL0 ends KVM_RUN with an emulation failure, the only way vmon sees it. */
static int int3_reaches_vmm(int kvm_fd, bool *yes)
{
	struct probe_vm pv;
	int rc = probe_vm_create(&pv, kvm_fd);
	if (rc)
		return rc;
	rc = probe_vm_load(&pv, PROBE_VM_KCODE, vmon_probe_int3_start, PROBE_BLOB_SIZE(vmon_probe_int3));
	if (rc == 0) {
		int r = probe_vm_run(&pv, 1000);
		*yes = r == KVM_EXIT_INTERNAL_ERROR && pv.run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION;
		log_debug("syscall-fix", "int3 at CPL0: exit %d", r);
	}
	probe_vm_destroy(&pv);
	return rc;
}

int syscall_fixup_init(struct vm *vm)
{
	struct x86_vm_arch *va = vm->arch;
	atomic_store(&va->fixup_state, SYSCALL_FIXUP_OFF);
	if (!vm->host.syscall_broken)
		return 0;
	bool int3_ok = false;
	int rc = int3_reaches_vmm(vm->kvm_fd, &int3_ok);
	if (rc)
		return rc;
	if (!int3_ok) {
		log_warn("syscall-fix",
			 "SYSCALL from guest user space is broken on this host, and vmon cannot repair it "
			 "here because int3 in the guest kernel does not reach vmon; guest programs will "
			 "crash on their first system call");
		return 0;
	}
	atomic_store(&va->fixup_state, SYSCALL_FIXUP_WAITING);
	log_info("syscall-fix", "SYSCALL from guest user space is broken on this host; vmon will complete "
				"system calls itself once the guest kernel is up");
	return 0;
}

/* Returns the length of an allowed prefix before the CLAC slot (0 or 4), or -1. */
static int entry_prefix_len(const uint8_t *b)
{
	if (memcmp(b, endbr64, 4) == 0 || memcmp(b, nop4, 4) == 0)
		return 4;
	return 0;
}

static bool slot_matches(const uint8_t *b)
{
	return (memcmp(b, slot_nop3, 3) == 0 || memcmp(b, slot_clac, 3) == 0) && b[3] == 0xfc;
}

int syscall_fixup_try_arm(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	struct x86_vm_arch *va = vm->arch;
	if (!va || atomic_load(&va->fixup_state) != SYSCALL_FIXUP_WAITING)
		return 0;

	struct kvm_sregs sregs;
	if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	if (!(sregs.efer & EFER_SCE) || sregs.idt.limit < VEC_PF * 16 + 15)
		return 0;
	uint32_t idx = MSR_LSTAR;
	uint64_t lstar;
	int rc = x86_read_msrs(vcpu->fd, &idx, &lstar, 1);
	if (rc)
		return rc;
	if (lstar == 0)
		return 0;

	struct guest_paging pg = x86_guest_paging(vm, &sregs, 0);
	uint64_t gate[2];
	if (guest_virt_read(&vm->mem, &pg, sregs.idt.base + VEC_PF * 16, gate, sizeof(gate), GUEST_ACCESS_IMPLICIT,
			    NULL))
		return 0;
	unsigned int type = (gate[0] >> 40) & 0xf;
	if (!(gate[0] & (1ULL << 47)) || (type != 0xe && type != 0xf))
		return 0;
	uint64_t entry = (gate[0] & 0xffff) | ((gate[0] >> 32) & 0xffff0000ULL) | (gate[1] << 32);

	uint8_t code[8];
	if (guest_virt_read(&vm->mem, &pg, entry, code, sizeof(code), GUEST_ACCESS_FETCH, NULL))
		return 0;
	int pre = entry_prefix_len(code);
	if (!slot_matches(code + pre))
		return 0;
	uint64_t slot_gva = entry + (uint64_t)pre, slot_gpa;
	if (guest_walk(&vm->mem, &pg, slot_gva, GUEST_ACCESS_FETCH, &slot_gpa, NULL))
		return 0;
	uint8_t *host = gpa_to_host_write(&vm->mem, slot_gpa, 3);
	if (!host)
		return 0;

	pthread_mutex_lock(&va->lock);
	int armed = 0;
	if (atomic_load(&va->fixup_state) == SYSCALL_FIXUP_WAITING) {
		uint8_t expected = 0x0f;
		memcpy(va->slot, code + pre, 3);
		/* Other vCPUs may be running this code: one atomic byte store, as Linux's text_poke_bp does. */
		if (__atomic_compare_exchange_n(host, &expected, (uint8_t)0xcc, false, __ATOMIC_SEQ_CST,
						__ATOMIC_SEQ_CST)) {
			guest_mem_wrote(&vm->mem, host, 1);
			va->patch_gva = slot_gva;
			atomic_store(&va->fixup_state, SYSCALL_FIXUP_ARMED);
			armed = 1;
		}
	}
	pthread_mutex_unlock(&va->lock);
	if (armed)
		log_info("syscall-fix", "armed: int3 at guest address 0x%llx in the page-fault entry (was %02x %02x %02x)",
			 (unsigned long long)slot_gva, va->slot[0], va->slot[1], va->slot[2]);
	return armed;
}

static struct kvm_segment flat_segment(uint16_t selector, bool code)
{
	return (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = selector, .type = code ? 11 : 3, .present = 1,
		.dpl = 0, .db = code ? 0 : 1, .s = 1, .l = code ? 1 : 0, .g = 1,
	};
}

/* The exception frame the CPU pushed for the page fault, at RSP. */
struct pf_frame {
	uint64_t error, rip, cs, rflags, rsp, ss;
};

enum syscall_verdict syscall_fixup_judge(const struct syscall_evidence *ev)
{
	uint64_t want = PF_ERR_USER | (ev->fetch_reported ? PF_ERR_FETCH : 0);
	bool at_lstar = (ev->cs & 3) == 3 && (ev->error & want) == want &&
			!(ev->error & (PF_ERR_WRITE | PF_ERR_RSVD)) && ev->lstar != 0 && ev->rip == ev->lstar &&
			ev->cr2 == ev->lstar;
	if (!at_lstar)
		return SYSCALL_VERDICT_OTHER;
	/* A fault pushes RF set; it plays no part in what SYSCALL did. */
	uint64_t fmask = ev->fmask & ~RFLAGS_RF;
	bool masked = (fmask & RFLAGS_IF) && !(ev->rflags & fmask) && !(ev->rflags & RFLAGS_VM);
	bool r11_ok = (ev->r11 & RFLAGS_FIXED) && ((ev->r11 ^ ev->rflags) & ~fmask & ~RFLAGS_RF) == 0;
	bool rcx_ok = ev->insn_fetched && ev->insn[0] == 0x0f && ev->insn[1] == 0x05;
	return masked && r11_ok && rcx_ok ? SYSCALL_VERDICT_SYSCALL : SYSCALL_VERDICT_FORGED;
}

/* Gathers the evidence for syscall_fixup_judge(); returns 0 or the error that stopped it. */
static int gather_evidence(struct vcpu *vcpu, struct x86_cpu *cpu, struct syscall_evidence *ev, uint64_t *star)
{
	struct pf_frame f;
	uint64_t msr[3] = { 0, 0, 0 };
	static const uint32_t idx[3] = { MSR_LSTAR, MSR_STAR, MSR_SYSCALL_MASK };
	const struct guest_mem *mem = &vcpu->vm->mem;
	int rc = guest_virt_read(mem, &cpu->pg, cpu->gpr[X86_RSP], &f, sizeof(f), GUEST_ACCESS_IMPLICIT, NULL);
	if (rc == 0)
		rc = x86_read_msrs(vcpu->fd, idx, msr, 3);
	if (rc)
		return rc;
	*ev = (struct syscall_evidence){
		.error = f.error, .rip = f.rip, .cs = f.cs, .rflags = f.rflags, .rsp = f.rsp, .cr2 = cpu->sregs.cr2,
		.lstar = msr[0], .fmask = msr[2], .rcx = cpu->gpr[X86_RCX], .r11 = cpu->gpr[X86_R11],
		.fetch_reported = (cpu->sregs.efer & EFER_NXE) || (cpu->sregs.cr4 & CR4_SMEP),
	};
	*star = msr[1];
	/* The SYSCALL instruction itself, as user code fetched it: through the guest's tables at CPL3. */
	ev->insn_fetched = ev->rcx >= 2 && guest_virt_read(mem, &cpu->pg, ev->rcx - 2, ev->insn, sizeof(ev->insn),
							   GUEST_ACCESS_USER | GUEST_ACCESS_FETCH, NULL) == 0;
	return 0;
}

int syscall_fixup_on_emulation_failure(struct vcpu *vcpu, struct x86_cpu *cpu)
{
	struct x86_vm_arch *va = vcpu->vm->arch;
	if (!va || atomic_load(&va->fixup_state) != SYSCALL_FIXUP_ARMED || cpu->cpl != 0 || cpu->mode != 64 ||
	    cpu->rip_linear != va->patch_gva)
		return 1;
	/* Only our own int3 with the rest of the original slot behind it. */
	if (cpu->nbytes < 3 || cpu->bytes[0] != 0xcc || memcmp(cpu->bytes + 1, va->slot + 1, 2) != 0)
		return 1;

	struct syscall_evidence ev;
	uint64_t star = 0;
	enum syscall_verdict verdict = SYSCALL_VERDICT_OTHER;
	if (gather_evidence(vcpu, cpu, &ev, &star) == 0)
		verdict = syscall_fixup_judge(&ev);

	if (verdict == SYSCALL_VERDICT_SYSCALL) {
		/* What SYSCALL should have done; RCX, R11 and the masked RFLAGS are already right. */
		uint16_t cs = (uint16_t)((star >> 32) & 0xfffc);
		cpu->regs.rip = ev.lstar;
		cpu->gpr[X86_RSP] = ev.rsp;
		cpu->regs.rflags = ev.rflags | RFLAGS_FIXED;
		cpu->regs_dirty = true;
		cpu->sregs.cs = flat_segment(cs, true);
		cpu->sregs.ss = flat_segment((uint16_t)(cs + 8), false);
		cpu->sregs_dirty = true;
		x86_emul_count(vcpu, X86_EMUL_SYSCALL_COMPLETED);
	} else {
		/* An ordinary page fault, or one no SYSCALL made: the guest's handler runs, as on hardware. */
		cpu->regs.rip += 3;
		if (memcmp(va->slot, slot_clac, 3) == 0)
			cpu->regs.rflags &= ~RFLAGS_AC;
		cpu->regs_dirty = true;
		x86_emul_count(vcpu, verdict == SYSCALL_VERDICT_FORGED ? X86_EMUL_SYSCALL_REFUSED : X86_EMUL_PF_PASSED);
	}
	int rc = x86_cpu_store(cpu);
	if (rc)
		log_error("syscall-fix", "vCPU %u: cannot set registers: %s", vcpu->id, strerror(-rc));
	return rc;
}
