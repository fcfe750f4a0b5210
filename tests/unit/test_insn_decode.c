/* The x86 decoder: lengths, prefixes, REX, ModRM/SIB/displacement, immediates, and the
 * effective addresses that emulated memory operands use. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "arch/x86/insn_decode.h"
#include "lib/util.h"

struct len_case {
	const char *what;
	unsigned int mode;
	uint8_t bytes[16];
	unsigned int len;
};

/* Lengths checked against what GNU as emits for each instruction. */
static const struct len_case lengths[] = {
	{ "int3", 64, { 0xcc }, 1 },
	{ "int $0x80", 64, { 0xcd, 0x80 }, 2 },
	{ "clac", 64, { 0x0f, 0x01, 0xca }, 3 },
	{ "stac", 64, { 0x0f, 0x01, 0xcb }, 3 },
	{ "rdtscp", 64, { 0x0f, 0x01, 0xf9 }, 3 },
	{ "xgetbv", 64, { 0x0f, 0x01, 0xd0 }, 3 },
	{ "ud2", 64, { 0x0f, 0x0b }, 2 },
	{ "ud1 (%rax),%eax", 64, { 0x0f, 0xb9, 0x00 }, 3 },
	{ "fwait", 64, { 0x9b }, 1 },
	{ "endbr64", 64, { 0xf3, 0x0f, 0x1e, 0xfa }, 4 },
	{ "nopl 0x0(%rax,%rax,1)", 64, { 0x0f, 0x1f, 0x44, 0x00, 0x00 }, 5 },
	{ "nopw 0x0(%rax,%rax,1)", 64, { 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00 }, 6 },
	{ "nopw cs:0x0(%rax,%rax,1)", 64, { 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0 }, 10 },
	{ "popcnt %rbx,%rax", 64, { 0xf3, 0x48, 0x0f, 0xb8, 0xc3 }, 5 },
	{ "popcnt 0x12345678(%rip),%r11", 64, { 0xf3, 0x4c, 0x0f, 0xb8, 0x1d, 0x78, 0x56, 0x34, 0x12 }, 9 },
	{ "popcnt 0x40(%rbx,%rcx,4),%r10d", 64, { 0xf3, 0x44, 0x0f, 0xb8, 0x54, 0x8b, 0x40 }, 7 },
	{ "popcnt %si,%di", 64, { 0x66, 0xf3, 0x0f, 0xb8, 0xfe }, 5 },
	{ "crc32q %rax,%rbx", 64, { 0xf2, 0x48, 0x0f, 0x38, 0xf1, 0xd8 }, 6 },
	{ "lfence", 64, { 0x0f, 0xae, 0xe8 }, 3 },
	{ "fninit", 64, { 0xdb, 0xe3 }, 2 },
	{ "mov $imm64,%rax", 64, { 0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8 }, 10 },
	{ "mov $imm32,%eax", 64, { 0xb8, 1, 2, 3, 4 }, 5 },
	{ "mov $imm16,%ax", 64, { 0x66, 0xb8, 1, 2 }, 4 },
	{ "movabs 0x1122334455667788,%al", 64, { 0xa0, 1, 2, 3, 4, 5, 6, 7, 8 }, 9 },
	{ "addl $0x1,0x10(%rsp)", 64, { 0x83, 0x44, 0x24, 0x10, 0x01 }, 5 },
	{ "movl $imm32,0x0(,%rax,8)", 64, { 0xc7, 0x04, 0xc5, 0, 0, 0, 0, 1, 2, 3, 4 }, 11 },
	{ "testb $0x1,(%rdi)", 64, { 0xf6, 0x07, 0x01 }, 3 },
	{ "notl (%rdi)", 64, { 0xf7, 0x17 }, 2 },
	{ "call rel32", 64, { 0xe8, 0, 0, 0, 0 }, 5 },
	{ "jne rel32", 64, { 0x0f, 0x85, 0, 0, 0, 0 }, 6 },
	{ "jne rel8", 64, { 0x75, 0x10 }, 2 },
	{ "enter $0x10,$0", 64, { 0xc8, 0x10, 0x00, 0x00 }, 4 },
	{ "lock cmpxchg16b (%rdi)", 64, { 0xf0, 0x48, 0x0f, 0xc7, 0x0f }, 5 },
	{ "pshufd $0x1b,%xmm1,%xmm0", 64, { 0x66, 0x0f, 0x70, 0xc1, 0x1b }, 5 },
	{ "palignr $4,%xmm1,%xmm0", 64, { 0x66, 0x0f, 0x3a, 0x0f, 0xc1, 0x04 }, 6 },
	{ "mov %gs:0x28,%rax", 64, { 0x65, 0x48, 0x8b, 0x04, 0x25, 0x28, 0, 0, 0 }, 9 },
	{ "32-bit: mov 0x1000,%eax (disp32)", 32, { 0x8b, 0x05, 0x00, 0x10, 0x00, 0x00 }, 6 },
	{ "32-bit: mov $imm16,%ax", 32, { 0x66, 0xb8, 1, 2 }, 4 },
	{ "16-bit: mov 0x1234,%ax", 16, { 0x8b, 0x06, 0x34, 0x12 }, 4 },
	{ "16-bit: mov 0x10(%bp,%si),%ax", 16, { 0x8b, 0x42, 0x10 }, 3 },
	{ "16-bit: jmp rel16", 16, { 0xe9, 0x00, 0x01 }, 3 },
};

static void test_lengths(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(lengths); i++) {
		struct x86_insn in;
		int rc = x86_decode(lengths[i].bytes, sizeof(lengths[i].bytes), lengths[i].mode, &in);
		if (rc != 0 || in.len != lengths[i].len)
			fail_msg("%s: rc %d, length %u, want %u", lengths[i].what, rc, in.len, lengths[i].len);
	}
}

static void test_popcnt_fields(void **state)
{
	(void)state;
	struct x86_insn in;
	/* popcnt 0x40(%rbx,%rcx,4),%r10d */
	static const uint8_t b[] = { 0xf3, 0x44, 0x0f, 0xb8, 0x54, 0x8b, 0x40 };
	assert_int_equal(x86_decode(b, sizeof(b), 64, &in), 0);
	assert_true(in.rep);
	assert_int_equal(in.map, X86_MAP_0F);
	assert_int_equal(in.opcode, 0xb8);
	assert_int_equal(in.opsize, 4);
	assert_int_equal(in.reg, X86_R10);
	assert_true(in.has_sib);
	assert_int_equal(in.sib_base, X86_RBX);
	assert_int_equal(in.sib_index, X86_RCX);
	assert_int_equal(in.sib_scale, 4);
	assert_int_equal(in.disp, 0x40);
	assert_true(x86_insn_has_mem(&in));

	uint64_t gpr[16] = { 0 };
	gpr[X86_RBX] = 0x1000;
	gpr[X86_RCX] = 3;
	assert_int_equal(x86_insn_ea(&in, gpr, 0), 0x1000 + 12 + 0x40);
	assert_int_equal(x86_insn_mem_seg(&in), X86_SEG_DS);

	/* popcnt %si,%di: 16-bit with the 66 prefix before the mandatory F3 */
	static const uint8_t w[] = { 0x66, 0xf3, 0x0f, 0xb8, 0xfe };
	assert_int_equal(x86_decode(w, sizeof(w), 64, &in), 0);
	assert_int_equal(in.opsize, 2);
	assert_int_equal(in.reg, X86_RDI);
	assert_int_equal(in.rm, X86_RSI);
	assert_false(x86_insn_has_mem(&in));

	/* popcnt %r9,%r8 (REX.W|R|B) */
	static const uint8_t q[] = { 0xf3, 0x4d, 0x0f, 0xb8, 0xc1 };
	assert_int_equal(x86_decode(q, sizeof(q), 64, &in), 0);
	assert_int_equal(in.opsize, 8);
	assert_int_equal(in.reg, X86_R8);
	assert_int_equal(in.rm, X86_R9);
}

static void test_rip_relative_and_negative_disp(void **state)
{
	(void)state;
	struct x86_insn in;
	/* popcnt -0x10(%rip),%r11 */
	static const uint8_t b[] = { 0xf3, 0x4c, 0x0f, 0xb8, 0x1d, 0xf0, 0xff, 0xff, 0xff };
	assert_int_equal(x86_decode(b, sizeof(b), 64, &in), 0);
	assert_true(in.rip_relative);
	assert_int_equal(in.disp, -0x10);
	uint64_t gpr[16] = { 0 };
	assert_int_equal(x86_insn_ea(&in, gpr, 0x401009), 0x400ff9);

	/* 67 prefix: 32-bit address size wraps */
	static const uint8_t a32[] = { 0x67, 0xf3, 0x0f, 0xb8, 0x40, 0x10 }; /* popcnt 0x10(%eax),%eax */
	assert_int_equal(x86_decode(a32, sizeof(a32), 64, &in), 0);
	assert_int_equal(in.addrsize, 4);
	gpr[X86_RAX] = 0xfffffff8;
	assert_int_equal(x86_insn_ea(&in, gpr, 0), 0x8);
}

static void test_rex_b_special_cases(void **state)
{
	(void)state;
	struct x86_insn in;
	uint64_t gpr[16] = { 0 };
	gpr[X86_R12] = 0x5000;
	gpr[X86_R13] = 0x6000;
	/* mov (%r12),%rax needs a SIB byte: rm=100 always means SIB, even with REX.B */
	static const uint8_t r12[] = { 0x49, 0x8b, 0x04, 0x24 };
	assert_int_equal(x86_decode(r12, sizeof(r12), 64, &in), 0);
	assert_int_equal(in.len, 4);
	assert_int_equal(x86_insn_ea(&in, gpr, 0), 0x5000);
	/* mov 0x0(%r13),%rax needs disp8: mod=00 rm=101 would be RIP-relative */
	static const uint8_t r13[] = { 0x49, 0x8b, 0x45, 0x00 };
	assert_int_equal(x86_decode(r13, sizeof(r13), 64, &in), 0);
	assert_int_equal(in.len, 4);
	assert_false(in.rip_relative);
	assert_int_equal(x86_insn_ea(&in, gpr, 0), 0x6000);
	/* SIB with index=100 and no REX.X: no index */
	static const uint8_t noidx[] = { 0x8b, 0x04, 0x24 }; /* mov (%rsp),%eax */
	assert_int_equal(x86_decode(noidx, sizeof(noidx), 64, &in), 0);
	gpr[X86_RSP] = 0x7000;
	assert_int_equal(x86_insn_ea(&in, gpr, 0), 0x7000);
	assert_int_equal(x86_insn_mem_seg(&in), X86_SEG_DS); /* 64-bit mode: SS and DS are alike */
	/* REX.X makes index 100 mean R12 */
	static const uint8_t idx12[] = { 0x42, 0x8b, 0x04, 0x24 }; /* mov (%rsp,%r12,1),%eax */
	assert_int_equal(x86_decode(idx12, sizeof(idx12), 64, &in), 0);
	assert_int_equal(x86_insn_ea(&in, gpr, 0), 0x7000 + 0x5000);
}

static void test_prefixes(void **state)
{
	(void)state;
	struct x86_insn in;
	/* A REX followed by a legacy prefix is ignored: 48 66 b8 imm16 is mov $imm16,%ax */
	static const uint8_t stale_rex[] = { 0x48, 0x66, 0xb8, 0x34, 0x12 };
	assert_int_equal(x86_decode(stale_rex, sizeof(stale_rex), 64, &in), 0);
	assert_int_equal(in.rex, 0);
	assert_int_equal(in.len, 5);
	assert_int_equal(in.imm, 0x1234);
	/* fs override applies in 64-bit mode, ds override does not */
	static const uint8_t fs[] = { 0x64, 0x8b, 0x00 };
	assert_int_equal(x86_decode(fs, sizeof(fs), 64, &in), 0);
	assert_int_equal(x86_insn_mem_seg(&in), X86_SEG_FS);
	static const uint8_t ds[] = { 0x3e, 0x8b, 0x00 };
	assert_int_equal(x86_decode(ds, sizeof(ds), 64, &in), 0);
	assert_int_equal(in.seg, X86_SEG_NONE);
	/* 32-bit mode: [ebp+disp8] defaults to SS */
	static const uint8_t bp[] = { 0x8b, 0x45, 0x08 };
	assert_int_equal(x86_decode(bp, sizeof(bp), 32, &in), 0);
	assert_int_equal(x86_insn_mem_seg(&in), X86_SEG_SS);
	/* 0x40 is inc %eax outside 64-bit mode, not REX */
	static const uint8_t inc[] = { 0x40 };
	assert_int_equal(x86_decode(inc, sizeof(inc), 32, &in), 0);
	assert_int_equal(in.len, 1);
	assert_int_equal(in.opcode, 0x40);
	/* lock */
	static const uint8_t lk[] = { 0xf0, 0x0f, 0x01, 0xca };
	assert_int_equal(x86_decode(lk, sizeof(lk), 64, &in), 0);
	assert_true(in.lock);
}

static void test_sixteen_bit_addressing(void **state)
{
	(void)state;
	struct x86_insn in;
	uint64_t gpr[16] = { 0 };
	gpr[X86_RBP] = 0x100;
	gpr[X86_RSI] = 0xfff0;
	static const uint8_t b[] = { 0x8b, 0x42, 0x20 }; /* mov 0x20(%bp,%si),%ax */
	assert_int_equal(x86_decode(b, sizeof(b), 16, &in), 0);
	assert_int_equal(in.addrsize, 2);
	assert_int_equal(x86_insn_ea(&in, gpr, 0), (0x100 + 0xfff0 + 0x20) & 0xffff);
	assert_int_equal(x86_insn_mem_seg(&in), X86_SEG_SS);
}

static void test_errors(void **state)
{
	(void)state;
	struct x86_insn in;
	static const uint8_t partial[] = { 0xf3, 0x48, 0x0f, 0xb8 };
	assert_int_equal(x86_decode(partial, sizeof(partial), 64, &in), -ENODATA);
	static const uint8_t partial_disp[] = { 0x8b, 0x80, 0x00, 0x10 };
	assert_int_equal(x86_decode(partial_disp, sizeof(partial_disp), 64, &in), -ENODATA);
	uint8_t too_long[16];
	memset(too_long, 0x66, sizeof(too_long));
	assert_int_equal(x86_decode(too_long, sizeof(too_long), 64, &in), -E2BIG);
	static const uint8_t vex[] = { 0xc5, 0xf9, 0xef, 0xc0 }; /* vpxor */
	assert_int_equal(x86_decode(vex, sizeof(vex), 64, &in), -ENOTSUP);
	static const uint8_t evex[] = { 0x62, 0xf1, 0x7d, 0x48, 0xef, 0xc0 };
	assert_int_equal(x86_decode(evex, sizeof(evex), 64, &in), -ENOTSUP);
	/* In 32-bit mode c5 with a memory ModRM is LDS, not VEX */
	static const uint8_t lds[] = { 0xc5, 0x05, 0, 0, 0, 0 }; /* lds 0x0,%eax */
	assert_int_equal(x86_decode(lds, sizeof(lds), 32, &in), 0);
	assert_int_equal(in.len, 6);
	static const uint8_t pop[] = { 0x8f, 0x00 }; /* pop (%rax), not XOP */
	assert_int_equal(x86_decode(pop, sizeof(pop), 64, &in), 0);
	assert_int_equal(x86_decode(pop, 0, 64, &in), -ENODATA);
	assert_int_equal(x86_decode(pop, sizeof(pop), 8, &in), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_popcnt_fields),
		cmocka_unit_test(test_rip_relative_and_negative_disp),
		cmocka_unit_test(test_rex_b_special_cases),
		cmocka_unit_test(test_prefixes),
		cmocka_unit_test(test_sixteen_bit_addressing),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
