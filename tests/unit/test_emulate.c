/*
 * Emulation failures against the real /dev/kvm: tiny CPL0 guests built with probe_vm execute
 * instructions some hosts' KVM cannot run; whether KVM ran them or vmon emulated them, the
 * guest must see the architectural result. Also the SYSCALL fix, with a guest that sets up
 * SYSCALL and its page-fault entry the way Linux does.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "arch/x86/emulate.h"
#include "arch/x86/host_probe.h"
#include "arch/x86/probe_vm.h"
#include "arch/x86/syscall_fixup.h"
#include "arch/x86/vcpu_arch.h"
#include "vm/vcpu.h"
#include "vm/vm.h"

#include "emulate_harness.h"

#define HANDLER (PROBE_VM_KCODE + 0x800)

/* ---- int3: #BP delivered with the frame's RIP after the int3 ---- */
__asm__(".pushsection .rodata\n" BLOB(t_int3)
	"  int3\n"
	"t_int3_after:\n"
	"  movq $2, " KDATA(0) "\n"
	"  hlt\n"
	BLOB_END(t_int3)
	/* #BP handler: record the frame's RIP and CS, return. */
	BLOB(t_bp_handler)
	"  mov (%rsp), %rax\n mov %rax, " KDATA(1) "\n"
	"  mov 8(%rsp), %rax\n mov %rax, " KDATA(2) "\n"
	"  incq " KDATA(3) "\n"
	"  iretq\n"
	BLOB_END(t_bp_handler) ".popsection\n");
PROBE_BLOB(t_int3);
PROBE_BLOB(t_bp_handler);

static void test_int3_delivers_breakpoint(void **state)
{
	(void)state;
	struct harness h;
	harness_init(&h);
	load(&h, PROBE_VM_KCODE, t_int3_start, t_int3_end);
	load(&h, HANDLER, t_bp_handler_start, t_bp_handler_end);
	assert_int_equal(probe_vm_set_gate(&h.pv, 3, HANDLER, 0), 0);

	assert_int_equal(harness_run(&h), KVM_EXIT_HLT);
	assert_int_equal(kdata(&h, 0), 2);                  /* execution continued after the handler */
	assert_int_equal(kdata(&h, 3), 1);                  /* the handler ran once */
	assert_int_equal(kdata(&h, 1), PROBE_VM_KCODE + 1); /* #BP is a trap: RIP after the int3 */
	assert_int_equal(kdata(&h, 2), PROBE_VM_SEL_KCODE);
	if (h.failures)
		assert_int_equal(x86_emul_get(&h.vcpu, X86_EMUL_INT3), 1);
	else
		print_message("host ran int3 itself; emulation not exercised\n");
	harness_destroy(&h);
}

/* ---- popcnt in every operand size and addressing form ---- */
__asm__(".pushsection .rodata\n" BLOB(t_popcnt)
	"  mov $0xf0f0f0f0f0f0f0f1, %rbx\n"
	"  popcnt %rbx, %rax\n"          /* 64-bit register */
	"  mov %rax, " KDATA(0) "\n"
	"  mov $-1, %rdx\n mov $0x80000003, %ecx\n"
	"  popcnt %ecx, %edx\n"          /* 32-bit: zero-extends into RDX */
	"  mov %rdx, " KDATA(1) "\n"
	"  mov $0x1234567800000000, %rdi\n mov $0xffff, %esi\n"
	"  popcnt %si, %di\n"            /* 16-bit: keeps RDI's upper bits */
	"  mov %rdi, " KDATA(2) "\n"
	"  mov $" STR(PROBE_VM_KDATA) "+0x100, %ebx\n movq $0x7f, (%rbx)\n movq $0x3, 0x48(%rbx)\n"
	"  popcnt (%rbx), %r9\n"         /* memory, REX.W + REX.R */
	"  mov %r9, " KDATA(3) "\n"
	"  mov $2, %ecx\n"
	"  popcnt 0x40(%rbx,%rcx,4), %r10d\n" /* SIB with index and disp8 */
	"  mov %r10, " KDATA(4) "\n"
	"  popcnt t_popcnt_const(%rip), %r11\n" /* RIP-relative */
	"  mov %r11, " KDATA(5) "\n"
	"  stc\n xor %r8, %r8\n"
	"  popcnt %r8, %r12\n"           /* zero source: ZF set, CF cleared */
	"  pushfq\n pop %rax\n mov %rax, " KDATA(6) "\n"
	"  mov $1, %r8\n stc\n"
	"  popcnt %r8, %r12\n"           /* nonzero: ZF and CF clear */
	"  pushfq\n pop %rax\n mov %rax, " KDATA(7) "\n"
	"  hlt\n"
	".balign 8\n"
	"t_popcnt_const: .quad 0xffffffffffffffff\n"
	BLOB_END(t_popcnt) ".popsection\n");
PROBE_BLOB(t_popcnt);

static void test_popcnt_forms(void **state)
{
	(void)state;
	struct harness h;
	harness_init(&h);
	load(&h, PROBE_VM_KCODE, t_popcnt_start, t_popcnt_end);
	int r = harness_run(&h);
	if (r == KVM_EXIT_SHUTDOWN) {
		print_message("CPU has no popcnt; skipped\n");
		harness_destroy(&h);
		skip();
	}
	assert_int_equal(r, KVM_EXIT_HLT);
	assert_int_equal(kdata(&h, 0), 33);
	assert_int_equal(kdata(&h, 1), 3);
	assert_int_equal(kdata(&h, 2), 0x1234567800000010ULL);
	assert_int_equal(kdata(&h, 3), 7);
	assert_int_equal(kdata(&h, 4), 2);
	assert_int_equal(kdata(&h, 5), 64);
	uint64_t zf = 1 << 6, cf = 1;
	assert_int_equal(kdata(&h, 6) & (zf | cf), zf);
	assert_int_equal(kdata(&h, 7) & (zf | cf), 0);
	if (h.failures)
		assert_int_equal(x86_emul_get(&h.vcpu, X86_EMUL_POPCNT), 8);
	else
		print_message("host ran popcnt itself; emulation not exercised\n");
	harness_destroy(&h);
}

/* ---- an instruction that straddles two pages ---- */
__asm__(".pushsection .rodata\n" BLOB(t_cross)
	"  mov $0xff, %ecx\n"
	"  .byte 0xf3, 0x48, 0x0f, 0xb8, 0xc1\n" /* popcnt %rcx, %rax, starting 3 bytes before the page end */
	"  mov %rax, " KDATA(0) "\n"
	"  hlt\n"
	BLOB_END(t_cross) ".popsection\n");
PROBE_BLOB(t_cross);

static void test_instruction_across_pages(void **state)
{
	(void)state;
	struct harness h;
	harness_init(&h);
	/* mov $0xff,%ecx is 5 bytes, so popcnt starts at KCODE+0x1000-3 and ends on the next page. */
	uint64_t at = PROBE_VM_KCODE + 0x1000 - 8;
	load(&h, at, t_cross_start, t_cross_end);
	struct kvm_regs regs;
	assert_int_equal(ioctl(h.pv.vcpu_fd, KVM_GET_REGS, &regs), 0);
	regs.rip = at;
	assert_int_equal(ioctl(h.pv.vcpu_fd, KVM_SET_REGS, &regs), 0);
	assert_int_equal(harness_run(&h), KVM_EXIT_HLT);
	assert_int_equal(kdata(&h, 0), 8);
	harness_destroy(&h);
}

/* ---- clac/stac toggle RFLAGS.AC ---- */
__asm__(".pushsection .rodata\n" BLOB(t_clac)
	"  pushfq\n orq $0x40000, (%rsp)\n popfq\n"
	"  clac\n"
	"  pushfq\n pop %rax\n mov %rax, " KDATA(0) "\n"
	"  stac\n"
	"  pushfq\n pop %rax\n mov %rax, " KDATA(1) "\n"
	"  clac\n"
	"  hlt\n"
	BLOB_END(t_clac) ".popsection\n");
PROBE_BLOB(t_clac);

static void test_clac_stac(void **state)
{
	(void)state;
	struct harness h;
	harness_init(&h);
	load(&h, PROBE_VM_KCODE, t_clac_start, t_clac_end);
	int r = harness_run(&h);
	if (r == KVM_EXIT_SHUTDOWN) {
		print_message("CPU has no SMAP instructions; skipped\n");
		harness_destroy(&h);
		skip();
	}
	assert_int_equal(r, KVM_EXIT_HLT);
	uint64_t ac = 1 << 18;
	assert_int_equal(kdata(&h, 0) & ac, 0);
	assert_int_equal(kdata(&h, 1) & ac, ac);
	if (h.failures) {
		assert_int_equal(x86_emul_get(&h.vcpu, X86_EMUL_CLAC), 2);
		assert_int_equal(x86_emul_get(&h.vcpu, X86_EMUL_STAC), 1);
	}
	harness_destroy(&h);
}

/* ---- ud2 raises #UD with the frame's RIP at the ud2; fwait and fences continue ---- */
__asm__(".pushsection .rodata\n" BLOB(t_misc)
	"  fwait\n"
	"  lfence\n"
	"  .byte 0x0f, 0x1f, 0x40, 0x00\n" /* nopl 0(%rax) */
	"  ud2\n"
	"  movq $5, " KDATA(0) "\n"
	"  hlt\n"
	BLOB_END(t_misc)
	/* #UD handler: record RIP, skip the 2-byte ud2. */
	BLOB(t_ud_handler)
	"  mov (%rsp), %rax\n mov %rax, " KDATA(1) "\n"
	"  addq $2, (%rsp)\n"
	"  iretq\n"
	BLOB_END(t_ud_handler) ".popsection\n");
PROBE_BLOB(t_misc);
PROBE_BLOB(t_ud_handler);

static void test_ud2_and_noops(void **state)
{
	(void)state;
	struct harness h;
	harness_init(&h);
	load(&h, PROBE_VM_KCODE, t_misc_start, t_misc_end);
	load(&h, HANDLER, t_ud_handler_start, t_ud_handler_end);
	assert_int_equal(probe_vm_set_gate(&h.pv, 6, HANDLER, 0), 0);
	assert_int_equal(harness_run(&h), KVM_EXIT_HLT);
	assert_int_equal(kdata(&h, 0), 5);
	/* fwait (1) + lfence (3) + nopl (4) */
	assert_int_equal(kdata(&h, 1), PROBE_VM_KCODE + 8);
	harness_destroy(&h);
}

/* ---- rdtscp returns the guest TSC and TSC_AUX ---- */
__asm__(".pushsection .rodata\n" BLOB(t_rdtscp)
	"  rdtscp\n"
	"  mov %eax, " KDATA(0) "\n mov %edx, " KDATA(0) "+4\n mov %rcx, " KDATA(1) "\n"
	"  rdtscp\n"
	"  mov %eax, " KDATA(2) "\n mov %edx, " KDATA(2) "+4\n"
	"  hlt\n"
	BLOB_END(t_rdtscp) ".popsection\n");
PROBE_BLOB(t_rdtscp);

static void test_rdtscp(void **state)
{
	(void)state;
	struct harness h;
	harness_init(&h);
	load(&h, PROBE_VM_KCODE, t_rdtscp_start, t_rdtscp_end);
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e = { .index = 0xc0000103, .data = 0x1234 } };
	if (ioctl(h.pv.vcpu_fd, KVM_SET_MSRS, &m) != 1) {
		harness_destroy(&h);
		skip(); /* KVM offers no RDTSCP here */
	}
	int r = harness_run(&h);
	if (r == KVM_EXIT_SHUTDOWN) {
		harness_destroy(&h);
		skip();
	}
	assert_int_equal(r, KVM_EXIT_HLT);
	assert_int_equal(kdata(&h, 1), 0x1234);
	assert_true(kdata(&h, 0) != 0);
	assert_true(kdata(&h, 2) >= kdata(&h, 0));
	harness_destroy(&h);
}

/* ---- an instruction nobody handles stops the VM with a useful message ---- */
__asm__(".pushsection .rodata\n" BLOB(t_unknown)
	"  pxor %xmm0, %xmm0\n"
	"  hlt\n"
	BLOB_END(t_unknown) ".popsection\n");
PROBE_BLOB(t_unknown);

static void test_unhandled_instruction_stops_vm(void **state)
{
	(void)state;
	struct harness h;
	harness_init(&h);
	load(&h, PROBE_VM_KCODE, t_unknown_start, t_unknown_end);
	int r = harness_run(&h);
	if (r == KVM_EXIT_HLT) {
		print_message("host ran pxor itself; skipped\n");
		harness_destroy(&h);
		skip();
	}
	assert_int_equal(r, -1);
	assert_int_equal(atomic_load(&h.vm.stop_reason), VM_STOP_ERROR);
	const char *msg = h.vm.stop_message;
	assert_non_null(strstr(msg, "vCPU 0"));
	assert_non_null(strstr(msg, "RIP 0x8000"));
	assert_non_null(strstr(msg, "CPL 0"));
	assert_non_null(strstr(msg, "66 0f ef c0"));
	assert_non_null(strstr(msg, "docs/host-quirks.md"));
	assert_int_equal(x86_emul_get(&h.vcpu, X86_EMUL_UNHANDLED), 1);
	harness_destroy(&h);
}

/*
 * ---- the SYSCALL fix ----
 * The guest imitates Linux: EFER.SCE, STAR/LSTAR/FMASK, a #PF gate whose entry starts with
 * the 3-byte NOP slot and cld, then sysretq to user code that makes a system call. An OUT
 * before the sysretq gives vmon an exit to arm the fix on, as the guest's console would.
 */
#define LSTAR_ADDR (PROBE_VM_KCODE + 0x400)
#define PF_ENTRY (PROBE_VM_KCODE + 0xc00)

__asm__(".pushsection .rodata\n" BLOB(t_sys_kernel)
	"  mov $0xc0000080, %ecx\n rdmsr\n or $1, %eax\n wrmsr\n"
	"  mov $0xc0000081, %ecx\n xor %eax, %eax\n mov $0x00230010, %edx\n wrmsr\n"
	"  mov $0xc0000082, %ecx\n mov $" STR(LSTAR_ADDR) ", %eax\n xor %edx, %edx\n wrmsr\n"
	"  mov $0xc0000084, %ecx\n mov $0x47700, %eax\n xor %edx, %edx\n wrmsr\n"
	"  mov $0x80, %dx\n out %al, %dx\n"
	"  mov $" STR(PROBE_VM_UCODE) ", %ecx\n mov $0x202, %r11d\n"
	"  mov $" STR(PROBE_VM_UDATA) "+0x800, %esp\n"
	"  sysretq\n"
	BLOB_END(t_sys_kernel)
	/* LSTAR: record CS, RCX, R11, RSP; then stop. */
	BLOB(t_sys_lstar)
	"  mov %cs, %eax\n mov %rax, " KDATA(0) "\n"
	"  mov %rcx, " KDATA(1) "\n mov %r11, " KDATA(2) "\n mov %rsp, " KDATA(3) "\n"
	"  pushfq\n pop %rax\n mov %rax, " KDATA(4) "\n"
	"  hlt\n"
	BLOB_END(t_sys_lstar)
	/* Page-fault entry as Linux lays it out: 3-byte NOP slot, cld; records the fault, stops. */
	BLOB(t_sys_pf)
	"  nopl (%rax)\n"
	"  cld\n"
	"  mov %cr2, %rax\n mov %rax, " KDATA(5) "\n"
	"  mov (%rsp), %rax\n mov %rax, " KDATA(6) "\n"
	"  mov 16(%rsp), %rax\n mov %rax, " KDATA(7) "\n"
	"  hlt\n"
	BLOB_END(t_sys_pf)
	/* User code: a system call, or (second variant) an ordinary fault on an unmapped page. */
	BLOB(t_sys_user)
	"  mov $42, %eax\n"
	"  syscall\n"
	"  ud2\n"
	BLOB_END(t_sys_user)
	/* A jump to LSTAR dressed as a system call: RCX after a real syscall, R11 = RFLAGS. */
	BLOB(t_sys_user_jump)
	"  lea 1f(%rip), %rcx\n pushfq\n pop %r11\n"
	"  mov $" STR(LSTAR_ADDR) ", %eax\n jmp *%rax\n"
	"  syscall\n"
	"1: ud2\n"
	BLOB_END(t_sys_user_jump)
	BLOB(t_sys_user_fault)
	"  movq (0x20000), %rax\n"
	"  ud2\n"
	BLOB_END(t_sys_user_fault) ".popsection\n");
PROBE_BLOB(t_sys_kernel);
PROBE_BLOB(t_sys_lstar);
PROBE_BLOB(t_sys_pf);
PROBE_BLOB(t_sys_user);
PROBE_BLOB(t_sys_user_fault);
PROBE_BLOB(t_sys_user_jump);

enum sys_user { USER_SYSCALL, USER_FAULT, USER_JUMP };

static void syscall_guest(struct harness *h, enum sys_user user)
{
	load(h, PROBE_VM_KCODE, t_sys_kernel_start, t_sys_kernel_end);
	load(h, LSTAR_ADDR, t_sys_lstar_start, t_sys_lstar_end);
	load(h, PF_ENTRY, t_sys_pf_start, t_sys_pf_end);
	if (user == USER_SYSCALL)
		load(h, PROBE_VM_UCODE, t_sys_user_start, t_sys_user_end);
	else if (user == USER_FAULT)
		load(h, PROBE_VM_UCODE, t_sys_user_fault_start, t_sys_user_fault_end);
	else
		load(h, PROBE_VM_UCODE, t_sys_user_jump_start, t_sys_user_jump_end);
	assert_int_equal(probe_vm_set_user(&h->pv, PROBE_VM_UCODE, 0x2000), 0);
	assert_int_equal(probe_vm_set_gate(&h->pv, 14, PF_ENTRY, 0), 0);
}

static void test_syscall_reaches_cpl0(void **state)
{
	(void)state;
	struct harness h;
	harness_init(&h);
	const struct host_caps *c = caps(h.kvm_fd);
	harness_vm_arch(&h, c);
	syscall_guest(&h, USER_SYSCALL);

	int r = harness_run(&h);
	assert_int_equal(r, KVM_EXIT_HLT);
	struct x86_vm_arch *va = h.vm.arch;
	if (c->syscall_broken)
		assert_int_equal(atomic_load(&va->fixup_state), SYSCALL_FIXUP_ARMED);
	else
		assert_int_equal(atomic_load(&va->fixup_state), SYSCALL_FIXUP_OFF);
	assert_int_equal(kdata(&h, 0), PROBE_VM_SEL_KCODE);   /* LSTAR code ran at CPL0 */
	assert_int_equal(kdata(&h, 1), PROBE_VM_UCODE + 7);   /* RCX: after the syscall */
	assert_int_equal(kdata(&h, 2) & 0x200, 0x200);        /* R11: user RFLAGS, IF set */
	assert_int_equal(kdata(&h, 3), PROBE_VM_UDATA + 0x800); /* RSP untouched by SYSCALL */
	assert_int_equal(kdata(&h, 4) & 0x200, 0);            /* FMASK cleared IF */
	assert_int_equal(kdata(&h, 5), 0);                    /* the guest's #PF handler never ran */
	if (c->syscall_broken)
		assert_int_equal(x86_emul_get(&h.vcpu, X86_EMUL_SYSCALL_COMPLETED), 1);
	harness_destroy(&h);
}

static void test_ordinary_page_fault_passes_through(void **state)
{
	(void)state;
	struct harness h;
	harness_init(&h);
	const struct host_caps *c = caps(h.kvm_fd);
	harness_vm_arch(&h, c);
	syscall_guest(&h, USER_FAULT);

	assert_int_equal(harness_run(&h), KVM_EXIT_HLT);
	assert_int_equal(kdata(&h, 0), 0);          /* no system call */
	assert_int_equal(kdata(&h, 5), 0x20000);    /* CR2 */
	assert_int_equal(kdata(&h, 6), 0x4);        /* user read of a not-present page */
	assert_int_equal(kdata(&h, 7), PROBE_VM_SEL_UCODE);
	if (c->syscall_broken)
		assert_int_equal(x86_emul_get(&h.vcpu, X86_EMUL_PF_PASSED), 1);
	harness_destroy(&h);
}

/* User code that jumps to LSTAR takes the page fault, as on hardware: no CPL0 for it. */
static void test_jump_to_lstar_faults(void **state)
{
	(void)state;
	struct harness h;
	harness_init(&h);
	const struct host_caps *c = caps(h.kvm_fd);
	harness_vm_arch(&h, c);
	syscall_guest(&h, USER_JUMP);

	assert_int_equal(harness_run(&h), KVM_EXIT_HLT);
	assert_int_equal(kdata(&h, 0), 0);                /* the LSTAR code never ran */
	assert_int_equal(kdata(&h, 5), LSTAR_ADDR);       /* CR2: the guest's handler got the fault */
	assert_int_equal(kdata(&h, 6) & 0x7, 0x5);        /* user access to a present supervisor page */
	assert_int_equal(kdata(&h, 7), PROBE_VM_SEL_UCODE);
	if (c->syscall_broken) {
		assert_int_equal(x86_emul_get(&h.vcpu, X86_EMUL_SYSCALL_REFUSED), 1);
		assert_int_equal(x86_emul_get(&h.vcpu, X86_EMUL_SYSCALL_COMPLETED), 0);
	}
	harness_destroy(&h);
}

/* A page-fault entry that does not look like Linux's is never patched. */
static void test_fixup_refuses_unknown_entry(void **state)
{
	(void)state;
	struct harness h;
	harness_init(&h);
	struct host_caps c = { .syscall_broken = true };
	harness_vm_arch(&h, &c);
	syscall_guest(&h, USER_SYSCALL);
	static const uint8_t other[4] = { 0x90, 0x90, 0x90, 0xfc };
	assert_int_equal(probe_vm_load(&h.pv, PF_ENTRY, other, sizeof(other)), 0);
	struct x86_vm_arch *va = h.vm.arch;
	if (atomic_load(&va->fixup_state) == SYSCALL_FIXUP_OFF) {
		harness_destroy(&h); /* int3 does not reach vmon on this host: the fix stays off */
		skip();
	}
	harness_run(&h);
	assert_int_equal(atomic_load(&va->fixup_state), SYSCALL_FIXUP_WAITING);
	uint8_t now[4];
	assert_int_equal(guest_mem_read(&h.pv.mem, PF_ENTRY, now, 4), 0);
	assert_memory_equal(now, other, 4);
	harness_destroy(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_int3_delivers_breakpoint),
		cmocka_unit_test(test_popcnt_forms),
		cmocka_unit_test(test_instruction_across_pages),
		cmocka_unit_test(test_clac_stac),
		cmocka_unit_test(test_ud2_and_noops),
		cmocka_unit_test(test_rdtscp),
		cmocka_unit_test(test_unhandled_instruction_stops_vm),
		cmocka_unit_test(test_syscall_reaches_cpl0),
		cmocka_unit_test(test_ordinary_page_fault_passes_through),
		cmocka_unit_test(test_jump_to_lstar_faults),
		cmocka_unit_test(test_fixup_refuses_unknown_entry),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
