/*
 * A small x86 instruction decoder: legacy prefixes, REX, the one-byte, 0F, 0F38 and 0F3A
 * opcode maps, ModRM/SIB/displacement and immediates, enough to know an instruction's length
 * and operands. Used only after the host's KVM failed to emulate an instruction; VEX/EVEX/XOP
 * encodings are recognised and refused.
 */
#ifndef VMON_ARCH_X86_INSN_DECODE_H
#define VMON_ARCH_X86_INSN_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define X86_MAX_INSN_LEN 15

enum x86_opmap { X86_MAP_ONE = 0, X86_MAP_0F, X86_MAP_0F38, X86_MAP_0F3A };

/* Segment override prefixes, numbered like the segment registers (ES=0 ... GS=5). */
enum x86_seg { X86_SEG_ES = 0, X86_SEG_CS, X86_SEG_SS, X86_SEG_DS, X86_SEG_FS, X86_SEG_GS, X86_SEG_NONE };

/* General registers in encoding order (what ModRM/SIB/REX numbers mean). */
enum x86_gpr {
	X86_RAX = 0, X86_RCX, X86_RDX, X86_RBX, X86_RSP, X86_RBP, X86_RSI, X86_RDI,
	X86_R8, X86_R9, X86_R10, X86_R11, X86_R12, X86_R13, X86_R14, X86_R15,
};

struct x86_insn {
	uint8_t len;
	uint8_t mode;       /* code size: 16, 32 or 64 */
	uint8_t opsize;     /* operand size in bytes: 2, 4 or 8 */
	uint8_t addrsize;   /* address size in bytes: 2, 4 or 8 */
	bool lock, rep, repne, opsize_prefix;
	uint8_t seg;        /* enum x86_seg, X86_SEG_NONE without an override */
	uint8_t rex;        /* 0 when there is no REX prefix */
	uint8_t map;        /* enum x86_opmap */
	uint8_t opcode;
	bool has_modrm;
	uint8_t modrm, mod;
	uint8_t reg;        /* ModRM.reg with REX.R */
	uint8_t rm;         /* ModRM.rm with REX.B (a register when mod == 3) */
	bool has_sib;
	uint8_t sib_scale;  /* 1, 2, 4 or 8 */
	uint8_t sib_index;  /* with REX.X; 4 (no REX.X) means no index */
	uint8_t sib_base;   /* with REX.B */
	bool no_base;       /* disp32 absolute (SIB base 101 with mod 00, or 16/32-bit disp-only forms) */
	bool rip_relative;
	int64_t disp;
	uint8_t disp_size;
	uint64_t imm;
	uint8_t imm_size;
};

/*
 * Decodes the instruction at bytes[0..avail). mode is 16, 32 or 64. Returns 0, -ENODATA if
 * avail ends inside the instruction, -E2BIG if it would be longer than 15 bytes, -ENOTSUP
 * for VEX/EVEX/XOP encodings, or -EINVAL for a bad mode.
 */
int x86_decode(const uint8_t *bytes, size_t avail, unsigned int mode, struct x86_insn *insn);

/* True if the instruction has a memory operand (ModRM with mod != 3). */
static inline bool x86_insn_has_mem(const struct x86_insn *insn) { return insn->has_modrm && insn->mod != 3; }

/*
 * The effective address (offset within the segment, before the segment base) of the memory
 * operand, from the registers in encoding order and the address of the next instruction.
 * Truncated to the address size.
 */
uint64_t x86_insn_ea(const struct x86_insn *insn, const uint64_t gpr[16], uint64_t next_rip);

/* The segment the memory operand uses: the override, else SS for RSP/RBP bases, else DS. */
enum x86_seg x86_insn_mem_seg(const struct x86_insn *insn);

#endif
