/*
 * The SYSCALL fix's decision: which page faults at LSTAR are SYSCALLs the host left at CPL3
 * (completed at CPL0) and which are not (delivered to the guest as the faults they are).
 * A user process that jumps to the kernel's entry must never get CPL0.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "arch/x86/guest_walk.h"
#include "arch/x86/syscall_fixup.h"

#define LSTAR 0xffffffff81a00000ULL
#define FMASK 0x47700ULL /* Linux: TF, DF, IF, IOPL, NT, AC */
#define USER_CS 0x33
#define RFLAGS_IF 0x200ULL
#define RFLAGS_RF 0x10000ULL

/* What a user process's `syscall` at 0x401000 leaves when the host keeps it at CPL3. */
static struct syscall_evidence failed_syscall(void)
{
	uint64_t user_rflags = 0x246; /* IF, ZF, PF */
	return (struct syscall_evidence){
		.error = PF_ERR_PRESENT | PF_ERR_USER | PF_ERR_FETCH,
		.rip = LSTAR, .cs = USER_CS, .rflags = user_rflags & ~FMASK, .rsp = 0x7ffc0000,
		.cr2 = LSTAR, .lstar = LSTAR, .fmask = FMASK,
		.rcx = 0x401002, .r11 = user_rflags,
		.fetch_reported = true, .insn_fetched = true, .insn = { 0x0f, 0x05 },
	};
}

static void test_failed_syscall_is_completed(void **state)
{
	(void)state;
	struct syscall_evidence ev = failed_syscall();
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_SYSCALL);
	/* a fault pushes RF set; it changes nothing */
	ev.rflags |= RFLAGS_RF;
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_SYSCALL);
	/* without NXE or SMEP the error code cannot say "fetch" */
	ev = failed_syscall();
	ev.fetch_reported = false;
	ev.error &= ~(uint64_t)PF_ERR_FETCH;
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_SYSCALL);
}

/* A process that jumps to LSTAR runs with IF set: nothing masked its RFLAGS. */
static void test_jump_to_lstar_is_refused(void **state)
{
	(void)state;
	struct syscall_evidence ev = failed_syscall();
	ev.rflags |= RFLAGS_IF;
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_FORGED);
	/* even with RCX and R11 forged to match, and every flag user code can clear cleared */
	ev = failed_syscall();
	ev.rflags = 0x202;
	ev.r11 = 0x202;
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_FORGED);
	/* other flags FMASK clears, still set */
	ev = failed_syscall();
	ev.rflags |= 0x400; /* DF */
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_FORGED);
	ev = failed_syscall();
	ev.rflags |= 0x40000; /* AC */
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_FORGED);
	/* virtual-8086 mode cannot be where a 64-bit SYSCALL came from */
	ev = failed_syscall();
	ev.rflags |= 0x20000;
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_FORGED);
}

/* A guest whose FMASK leaves IF alone gives no way to tell a jump from a SYSCALL. */
static void test_fmask_without_if_is_refused(void **state)
{
	(void)state;
	struct syscall_evidence ev = failed_syscall();
	ev.fmask = FMASK & ~RFLAGS_IF;
	ev.rflags = ev.r11 & ~ev.fmask;
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_FORGED);
	ev.fmask = 0;
	ev.rflags = ev.r11;
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_FORGED);
}

static void test_rcx_and_r11_must_be_what_syscall_sets(void **state)
{
	(void)state;
	struct syscall_evidence ev = failed_syscall();
	ev.insn[1] = 0x34; /* sysenter, not syscall */
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_FORGED);
	ev = failed_syscall();
	ev.insn_fetched = false; /* RCX in kernel memory, unmapped or not executable from CPL3 */
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_FORGED);
	/* R11 is RFLAGS before masking: outside FMASK it must agree with the frame */
	ev = failed_syscall();
	ev.r11 ^= 0x1; /* CF */
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_FORGED);
	ev = failed_syscall();
	ev.r11 &= ~0x2ULL; /* bit 1 of RFLAGS is always 1 */
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_FORGED);
	/* inside FMASK it may hold anything SYSCALL found there */
	ev = failed_syscall();
	ev.r11 |= 0x400 | 0x100; /* DF, TF */
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_SYSCALL);
}

/* Faults that are not at LSTAR from user mode are ordinary faults, whatever the registers say. */
static void test_other_faults_pass(void **state)
{
	(void)state;
	struct syscall_evidence ev = failed_syscall();
	ev.cs = 0x10; /* the kernel's own fault */
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_OTHER);
	ev = failed_syscall();
	ev.cr2 = LSTAR + 0x40; /* a fault elsewhere */
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_OTHER);
	ev = failed_syscall();
	ev.rip = 0x401000;
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_OTHER);
	ev = failed_syscall();
	ev.error |= PF_ERR_WRITE;
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_OTHER);
	ev = failed_syscall();
	ev.error |= PF_ERR_RSVD;
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_OTHER);
	ev = failed_syscall();
	ev.error &= ~(uint64_t)PF_ERR_FETCH; /* a data read at LSTAR, where fetches are reported */
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_OTHER);
	ev = failed_syscall();
	ev.lstar = ev.rip = ev.cr2 = 0; /* no LSTAR yet */
	assert_int_equal(syscall_fixup_judge(&ev), SYSCALL_VERDICT_OTHER);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_failed_syscall_is_completed),
		cmocka_unit_test(test_jump_to_lstar_is_refused),
		cmocka_unit_test(test_fmask_without_if_is_refused),
		cmocka_unit_test(test_rcx_and_r11_must_be_what_syscall_sets),
		cmocka_unit_test(test_other_faults_pass),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
