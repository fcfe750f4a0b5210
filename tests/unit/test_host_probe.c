/*
 * The host probes against the real /dev/kvm. What the host can do differs between machines,
 * so the tests check that the findings are consistent with what independent test guests see.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "arch/x86/host_probe.h"
#include "arch/x86/probe_vm.h"
#include "lib/util.h"

#define STR_(x) #x
#define STR(x) STR_(x)
#define BLOB(name)                                                                                \
	".globl " #name "_start\n .hidden " #name "_start\n .globl " #name "_end\n .hidden " #name "_end\n" #name "_start:\n"
#define BLOB_END(name) #name "_end:\n"

static int kvm_fd = -1;
static struct host_caps caps;
static uint64_t probe_ns;

static int setup(void **state)
{
	(void)state;
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0)
		return 0; /* every test skips */
	uint64_t t0 = monotonic_ns();
	int rc = host_probe_run(kvm_fd, &caps);
	probe_ns = monotonic_ns() - t0;
	return rc;
}

static int teardown(void **state)
{
	(void)state;
	if (kvm_fd >= 0)
		close(kvm_fd);
	return 0;
}

static void need_kvm(void)
{
	if (kvm_fd < 0)
		skip();
}

static void test_probe_completes_quickly(void **state)
{
	(void)state;
	need_kvm();
	assert_true(caps.probed);
	/* Start-up must not wait on probes: well under a second even on a slow nested host. */
	assert_true(probe_ns < 700ULL * 1000 * 1000);
}

static void test_probe_is_repeatable(void **state)
{
	(void)state;
	need_kvm();
	struct host_caps again;
	assert_int_equal(host_probe_run(kvm_fd, &again), 0);
	assert_int_equal(again.emulator_limited, caps.emulator_limited);
	assert_int_equal(again.syscall_broken, caps.syscall_broken);
	assert_int_equal(again.hypercall_broken, caps.hypercall_broken);
	assert_int_equal(again.leaked_1_ecx, caps.leaked_1_ecx);
	assert_int_equal(again.leaked_7_ebx, caps.leaked_7_ebx);
	assert_int_equal(again.user_xcr0, caps.user_xcr0);
}

static void test_hypervisor_bit_is_not_a_leak(void **state)
{
	(void)state;
	need_kvm();
	assert_int_equal(caps.leaked_1_ecx & (1u << 31), 0);
}

/* A syscall guest written independently of the probe: user code at CPL3 makes a system call. */
#define T_LSTAR (PROBE_VM_KCODE + 0x400)
__asm__(".pushsection .rodata\n" BLOB(th_sys_k)
	"  mov $0xc0000080, %ecx\n rdmsr\n or $1, %eax\n wrmsr\n"
	"  mov $0xc0000081, %ecx\n xor %eax, %eax\n mov $0x00230010, %edx\n wrmsr\n"
	"  mov $0xc0000082, %ecx\n mov $" STR(T_LSTAR) ", %eax\n xor %edx, %edx\n wrmsr\n"
	"  mov $" STR(PROBE_VM_UCODE) ", %ecx\n mov $0x2, %r11d\n"
	"  sysretq\n"
	BLOB_END(th_sys_k)
	BLOB(th_sys_lstar)
	"  mov %cs, %eax\n mov %eax, " STR(PROBE_VM_KDATA) "\n"
	"  hlt\n"
	BLOB_END(th_sys_lstar)
	BLOB(th_sys_u)
	"  nop\n syscall\n"
	BLOB_END(th_sys_u)
	BLOB(th_cx16)
	"  mov $" STR(PROBE_VM_KDATA) "+0x40, %esi\n"
	"  xor %eax, %eax\n xor %edx, %edx\n mov $1, %ebx\n xor %ecx, %ecx\n"
	"  lock cmpxchg16b (%rsi)\n"
	"  hlt\n"
	BLOB_END(th_cx16)
	BLOB(th_vmcall)
	"  mov $0x7fff, %eax\n vmcall\n hlt\n"
	BLOB_END(th_vmcall)
	".popsection\n");
PROBE_BLOB(th_sys_k);
PROBE_BLOB(th_sys_lstar);
PROBE_BLOB(th_sys_u);
PROBE_BLOB(th_cx16);
PROBE_BLOB(th_vmcall);

static void test_syscall_finding_matches_a_guest(void **state)
{
	(void)state;
	need_kvm();
	struct probe_vm pv;
	assert_int_equal(probe_vm_create(&pv, kvm_fd), 0);
	assert_int_equal(probe_vm_load(&pv, PROBE_VM_KCODE, th_sys_k_start, PROBE_BLOB_SIZE(th_sys_k)), 0);
	assert_int_equal(probe_vm_load(&pv, T_LSTAR, th_sys_lstar_start, PROBE_BLOB_SIZE(th_sys_lstar)), 0);
	assert_int_equal(probe_vm_load(&pv, PROBE_VM_UCODE, th_sys_u_start, PROBE_BLOB_SIZE(th_sys_u)), 0);
	assert_int_equal(probe_vm_set_user(&pv, PROBE_VM_UCODE, 0x1000), 0);
	int r = probe_vm_run(&pv, 1000);
	uint32_t cs = 0;
	assert_int_equal(guest_mem_read(&pv.mem, PROBE_VM_KDATA, &cs, 4), 0);
	bool reached_cpl0 = r == KVM_EXIT_HLT && (cs & 0xffff) == PROBE_VM_SEL_KCODE;
	assert_int_equal(reached_cpl0, !caps.syscall_broken);
	probe_vm_destroy(&pv);
}

static void test_emulator_finding_matches_a_guest(void **state)
{
	(void)state;
	need_kvm();
	struct probe_vm pv;
	assert_int_equal(probe_vm_create(&pv, kvm_fd), 0);
	assert_int_equal(probe_vm_load(&pv, PROBE_VM_KCODE, th_cx16_start, PROBE_BLOB_SIZE(th_cx16)), 0);
	int r = probe_vm_run(&pv, 1000);
	assert_int_equal(r == KVM_EXIT_INTERNAL_ERROR, caps.emulator_limited);
	if (r == KVM_EXIT_HLT) {
		/* Hardware ran it: the compare matched, so RCX:RBX was stored. */
		uint64_t lo = 0;
		assert_int_equal(guest_mem_read(&pv.mem, PROBE_VM_KDATA + 0x40, &lo, 8), 0);
		assert_int_equal(lo, 1);
	}
	probe_vm_destroy(&pv);
}

static void test_hypercall_finding_matches_a_guest(void **state)
{
	(void)state;
	need_kvm();
	struct probe_vm pv;
	assert_int_equal(probe_vm_create(&pv, kvm_fd), 0);
	assert_int_equal(probe_vm_load(&pv, PROBE_VM_KCODE, th_vmcall_start, PROBE_BLOB_SIZE(th_vmcall)), 0);
	uint64_t t0 = monotonic_ns();
	int r = probe_vm_run(&pv, 200);
	assert_true(monotonic_ns() - t0 < 2000ULL * 1000 * 1000); /* the timeout really interrupts KVM_RUN */
	assert_int_equal(r != KVM_EXIT_HLT, caps.hypercall_broken);
	probe_vm_destroy(&pv);
}

/* The CPUID leak: a guest given an empty leaf 7 still sees exactly the leaked bits. */
__asm__(".pushsection .rodata\n" BLOB(th_cpuid7)
	"  mov $7, %eax\n xor %ecx, %ecx\n cpuid\n"
	"  mov %ebx, " STR(PROBE_VM_KDATA) "\n"
	"  hlt\n"
	BLOB_END(th_cpuid7) ".popsection\n");
PROBE_BLOB(th_cpuid7);

static void test_leaked_leaf7_matches_a_guest(void **state)
{
	(void)state;
	need_kvm();
	struct probe_vm pv;
	assert_int_equal(probe_vm_create(&pv, kvm_fd), 0);
	struct kvm_cpuid2 *c = probe_vm_supported_cpuid(kvm_fd);
	assert_non_null(c);
	bool have7 = false;
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == 7 && c->entries[i].index == 0) {
			c->entries[i].ebx = 0;
			have7 = true;
		}
	assert_int_equal(probe_vm_set_cpuid(&pv, c), 0);
	free(c);
	assert_int_equal(probe_vm_load(&pv, PROBE_VM_KCODE, th_cpuid7_start, PROBE_BLOB_SIZE(th_cpuid7)), 0);
	assert_int_equal(probe_vm_run(&pv, 1000), KVM_EXIT_HLT);
	uint32_t ebx = 0;
	assert_int_equal(guest_mem_read(&pv.mem, PROBE_VM_KDATA, &ebx, 4), 0);
	if (have7)
		assert_int_equal(ebx, caps.leaked_7_ebx);
	probe_vm_destroy(&pv);
}

/*
 * User code that has not been given XSAVE by its kernel runs an AVX instruction: hardware
 * raises #UD (no IDT here, so the guest dies with the marker unset); a host that lets guest
 * user code use its own XCR0 runs it. The probe's finding must say which.
 */
__asm__(".pushsection .rodata\n" BLOB(th_avx_u)
	"  vpxor %ymm1, %ymm1, %ymm1\n"
	"  movl $1, " STR(PROBE_VM_UDATA) "\n"
	"  ud2\n"
	BLOB_END(th_avx_u) ".popsection\n");
PROBE_BLOB(th_avx_u);

static void test_user_xstate_finding_matches_a_guest(void **state)
{
	(void)state;
	need_kvm();
	struct probe_vm pv;
	assert_int_equal(probe_vm_create(&pv, kvm_fd), 0);
	assert_int_equal(probe_vm_load(&pv, PROBE_VM_KCODE, th_sys_k_start, PROBE_BLOB_SIZE(th_sys_k)), 0);
	assert_int_equal(probe_vm_load(&pv, PROBE_VM_UCODE, th_avx_u_start, PROBE_BLOB_SIZE(th_avx_u)), 0);
	assert_int_equal(probe_vm_set_user(&pv, PROBE_VM_UCODE, 0x2000), 0);
	probe_vm_run(&pv, 1000);
	uint32_t ran = 0;
	assert_int_equal(guest_mem_read(&pv.mem, PROBE_VM_UDATA, &ran, 4), 0);
	assert_int_equal(ran == 1, (caps.user_xcr0 & 4) != 0);
	/* Whatever XCR0 guest user code gets includes x87 and SSE, or it gets none. */
	assert_true(caps.user_xcr0 == 0 || (caps.user_xcr0 & 3) == 3);
	assert_int_equal(host_user_xstate_leaks(&caps), (caps.user_xcr0 & ~3ULL) != 0);
	probe_vm_destroy(&pv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_probe_completes_quickly),
		cmocka_unit_test(test_probe_is_repeatable),
		cmocka_unit_test(test_hypervisor_bit_is_not_a_leak),
		cmocka_unit_test(test_syscall_finding_matches_a_guest),
		cmocka_unit_test(test_emulator_finding_matches_a_guest),
		cmocka_unit_test(test_hypercall_finding_matches_a_guest),
		cmocka_unit_test(test_leaked_leaf7_matches_a_guest),
		cmocka_unit_test(test_user_xstate_finding_matches_a_guest),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
