/*
 * libFuzzer target: the x86 instruction decoder and effective-address computation the MMIO and
 * XSAVE emulation use. Input: [0] mode (16, 32 or 64), [1..] the instruction bytes.
 * Build and run: make fuzz && build/fuzz/fuzz_insn_decode tests/fuzz/corpus_insn_decode
 */
#include <string.h>

#include "arch/x86/insn_decode.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	static const unsigned int modes[] = { 16, 32, 64 };
	unsigned int mode = modes[data[0] % 3];
	/* Only what the input holds is readable, as when a fetch stops at a page's end. */
	size_t avail = size - 1;
	uint8_t *bytes = malloc(avail ? avail : 1);
	fuzz_check(bytes != NULL, "malloc");
	memcpy(bytes, data + 1, avail);
	struct x86_insn insn;
	if (x86_decode(bytes, avail, mode, &insn) == 0) {
		fuzz_check(insn.len >= 1 && insn.len <= X86_MAX_INSN_LEN && insn.len <= avail, "length");
		fuzz_check(insn.opsize == 2 || insn.opsize == 4 || insn.opsize == 8, "operand size");
		fuzz_check(insn.addrsize == 2 || insn.addrsize == 4 || insn.addrsize == 8, "address size");
		fuzz_check(insn.reg < 16 && insn.rm < 16, "register numbers");
		uint64_t gpr[16];
		for (int i = 0; i < 16; i++)
			gpr[i] = 0x0123456789abcdefull * (uint64_t)(i + 1);
		if (x86_insn_has_mem(&insn)) {
			(void)x86_insn_ea(&insn, gpr, 0xfffffffffffff000ull);
			fuzz_check(x86_insn_mem_seg(&insn) < X86_SEG_NONE, "memory segment");
		}
	}
	free(bytes);
	return 0;
}
