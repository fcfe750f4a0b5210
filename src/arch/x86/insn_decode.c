#include "arch/x86/insn_decode.h"

#include <errno.h>
#include <string.h>

/* Immediate operand kinds. */
enum imm_kind {
	I_NONE = 0,
	I_B,     /* 1 byte */
	I_W,     /* 2 bytes */
	I_Z,     /* 2 or 4 bytes by operand size (4 with REX.W) */
	I_V,     /* 2, 4 or 8 bytes by operand size (MOV r, imm) */
	I_WB,    /* 2 + 1 bytes (ENTER) */
	I_MOFFS, /* address-size offset (MOV AL/AX, moffs) */
	I_REL,   /* relative branch: 4 bytes in 64-bit mode, else 2 or 4 by operand size */
	I_GRP3,  /* F6/F7: an immediate only for TEST (reg 0 and 1) */
};

/* Bit n set: opcode n of the map takes a ModRM byte. */
static const uint32_t modrm_one[8] = {
	/* 00-1f */ 0x0f0f0f0f,
	/* 20-3f */ 0x0f0f0f0f,
	/* 40-5f */ 0x00000000,
	/* 60-7f */ 0x00000a0c, /* 62 63 69 6b */
	/* 80-9f */ 0x0000ffff,
	/* a0-bf */ 0x00000000,
	/* c0-df */ 0xff0f00f3, /* c0 c1 c4 c5 c6 c7 d0-d3 d8-df */
	/* e0-ff */ 0xc0c00000, /* f6 f7 fe ff */
};

static const uint32_t modrm_0f[8] = {
	/* 00-1f */ 0xffffa00f, /* 00-03 0d 0f 10-1f */
	/* 20-3f */ 0x0000ff0f, /* 20-23 28-2f */
	/* 40-5f */ 0xffffffff,
	/* 60-7f */ 0xf37fffff, /* 60-76 78 79 7c-7f */
	/* 80-9f */ 0xffff0000, /* 90-9f */
	/* a0-bf */ 0xfffff838, /* a3 a4 a5 ab ac ad ae af b0-bf */
	/* c0-df */ 0xffff00ff, /* c0-c7 d0-df */
	/* e0-ff */ 0xffffffff,
};

static bool bit(const uint32_t *map, uint8_t op) { return (map[op >> 5] >> (op & 31)) & 1; }

static enum imm_kind imm_one(uint8_t op)
{
	if (op < 0x40 && (op & 7) == 4)
		return I_B;
	if (op < 0x40 && (op & 7) == 5)
		return I_Z;
	if (op >= 0x70 && op <= 0x7f)
		return I_B;
	if (op >= 0xb0 && op <= 0xb7)
		return I_B;
	if (op >= 0xb8 && op <= 0xbf)
		return I_V;
	if (op >= 0xa0 && op <= 0xa3)
		return I_MOFFS;
	if (op >= 0xe0 && op <= 0xe7)
		return I_B;
	switch (op) {
	case 0x68: case 0x69: case 0x81: case 0xa9: case 0xc7:
		return I_Z;
	case 0x6a: case 0x6b: case 0x80: case 0x82: case 0x83: case 0xa8: case 0xc0: case 0xc1: case 0xc6:
	case 0xcd: case 0xd4: case 0xd5: case 0xeb:
		return I_B;
	case 0xc2: case 0xca:
		return I_W;
	case 0xc8:
		return I_WB;
	case 0xe8: case 0xe9:
		return I_REL;
	case 0xf6: case 0xf7:
		return I_GRP3;
	default:
		return I_NONE;
	}
}

static enum imm_kind imm_0f(uint8_t op)
{
	if (op >= 0x80 && op <= 0x8f)
		return I_REL;
	if (op >= 0x70 && op <= 0x73)
		return I_B;
	switch (op) {
	case 0x0f: /* 3DNow!: the opcode comes as a trailing byte */
	case 0xa4: case 0xac: case 0xba: case 0xc2: case 0xc4: case 0xc5: case 0xc6:
		return I_B;
	default:
		return I_NONE;
	}
}

/* Reads n little-endian bytes at *pos, checking both the buffer and the 15-byte limit. */
static int take(const uint8_t *b, size_t avail, size_t *pos, unsigned int n, uint64_t *out)
{
	if (*pos + n > X86_MAX_INSN_LEN)
		return -E2BIG;
	if (*pos + n > avail)
		return -ENODATA;
	uint64_t v = 0;
	for (unsigned int i = 0; i < n; i++)
		v |= (uint64_t)b[*pos + i] << (8 * i);
	*pos += n;
	*out = v;
	return 0;
}

static int64_t sext(uint64_t v, unsigned int bytes)
{
	unsigned int sh = 64 - 8 * bytes;
	return (int64_t)(v << sh) >> sh;
}

static int decode_modrm(const uint8_t *b, size_t avail, size_t *pos, struct x86_insn *in)
{
	uint64_t v;
	int rc = take(b, avail, pos, 1, &v);
	if (rc)
		return rc;
	uint8_t rex = in->rex;
	in->has_modrm = true;
	in->modrm = (uint8_t)v;
	in->mod = in->modrm >> 6;
	in->reg = (uint8_t)(((in->modrm >> 3) & 7) | ((rex & 4) << 1));
	uint8_t rm3 = in->modrm & 7;
	in->rm = (uint8_t)(rm3 | ((rex & 1) << 3));
	if (in->mod == 3)
		return 0;

	unsigned int disp = 0;
	if (in->addrsize == 2) {
		if (in->mod == 0 && rm3 == 6) {
			in->no_base = true;
			disp = 2;
		} else {
			disp = in->mod == 1 ? 1 : in->mod == 2 ? 2 : 0;
		}
	} else {
		if (rm3 == 4) {
			if ((rc = take(b, avail, pos, 1, &v)))
				return rc;
			uint8_t sib = (uint8_t)v;
			in->has_sib = true;
			in->sib_scale = (uint8_t)(1u << (sib >> 6));
			in->sib_index = (uint8_t)(((sib >> 3) & 7) | ((rex & 2) << 2));
			in->sib_base = (uint8_t)((sib & 7) | ((rex & 1) << 3));
			if (in->mod == 0 && (sib & 7) == 5) {
				in->no_base = true;
				disp = 4;
			}
		} else if (in->mod == 0 && rm3 == 5) {
			if (in->mode == 64)
				in->rip_relative = true;
			else
				in->no_base = true;
			disp = 4;
		}
		if (in->mod == 1)
			disp = 1;
		else if (in->mod == 2)
			disp = 4;
	}
	if (disp) {
		if ((rc = take(b, avail, pos, disp, &v)))
			return rc;
		in->disp = sext(v, disp);
		in->disp_size = (uint8_t)disp;
	}
	return 0;
}

static unsigned int imm_size(enum imm_kind k, const struct x86_insn *in)
{
	switch (k) {
	case I_B: return 1;
	case I_W: return 2;
	case I_WB: return 3;
	case I_Z: return in->opsize == 2 ? 2 : 4;
	case I_V: return in->opsize;
	case I_MOFFS: return in->addrsize;
	case I_REL: return in->mode == 64 ? 4 : (in->opsize == 2 ? 2 : 4);
	case I_GRP3: return ((in->reg & 7) <= 1) ? (in->opcode == 0xf6 ? 1 : (in->opsize == 2 ? 2 : 4)) : 0;
	default: return 0;
	}
}

int x86_decode(const uint8_t *b, size_t avail, unsigned int mode, struct x86_insn *in)
{
	if (mode != 16 && mode != 32 && mode != 64)
		return -EINVAL;
	memset(in, 0, sizeof(*in));
	in->mode = (uint8_t)mode;
	in->seg = X86_SEG_NONE;
	size_t pos = 0;
	bool addr_prefix = false;
	uint64_t v;
	int rc;

	/* Legacy prefixes, then (64-bit mode) REX, which counts only right before the opcode. */
	for (;;) {
		if ((rc = take(b, avail, &pos, 1, &v)))
			return rc;
		uint8_t p = (uint8_t)v;
		switch (p) {
		case 0xf0: in->lock = true; in->rex = 0; continue;
		case 0xf2: in->repne = true; in->rep = false; in->rex = 0; continue;
		case 0xf3: in->rep = true; in->repne = false; in->rex = 0; continue;
		case 0x66: in->opsize_prefix = true; in->rex = 0; continue;
		case 0x67: addr_prefix = true; in->rex = 0; continue;
		case 0x26: in->seg = X86_SEG_ES; in->rex = 0; continue;
		case 0x2e: in->seg = X86_SEG_CS; in->rex = 0; continue;
		case 0x36: in->seg = X86_SEG_SS; in->rex = 0; continue;
		case 0x3e: in->seg = X86_SEG_DS; in->rex = 0; continue;
		case 0x64: in->seg = X86_SEG_FS; in->rex = 0; continue;
		case 0x65: in->seg = X86_SEG_GS; in->rex = 0; continue;
		default: break;
		}
		if (mode == 64 && (p & 0xf0) == 0x40) {
			in->rex = p;
			continue;
		}
		in->opcode = p;
		break;
	}
	/* In 64-bit mode ES/CS/SS/DS overrides are ignored (their bases are 0). */
	if (mode == 64 && in->seg < X86_SEG_FS)
		in->seg = X86_SEG_NONE;

	if (mode == 64)
		in->opsize = (in->rex & 8) ? 8 : in->opsize_prefix ? 2 : 4;
	else if (mode == 32)
		in->opsize = in->opsize_prefix ? 2 : 4;
	else
		in->opsize = in->opsize_prefix ? 4 : 2;
	if (mode == 64)
		in->addrsize = addr_prefix ? 4 : 8;
	else if (mode == 32)
		in->addrsize = addr_prefix ? 2 : 4;
	else
		in->addrsize = addr_prefix ? 4 : 2;

	enum imm_kind imm = I_NONE;
	bool modrm = false;
	if (in->opcode == 0x0f) {
		if ((rc = take(b, avail, &pos, 1, &v)))
			return rc;
		in->opcode = (uint8_t)v;
		if (in->opcode == 0x38 || in->opcode == 0x3a) {
			in->map = in->opcode == 0x38 ? X86_MAP_0F38 : X86_MAP_0F3A;
			if ((rc = take(b, avail, &pos, 1, &v)))
				return rc;
			in->opcode = (uint8_t)v;
			modrm = true;
			imm = in->map == X86_MAP_0F3A ? I_B : I_NONE;
		} else {
			in->map = X86_MAP_0F;
			modrm = bit(modrm_0f, in->opcode);
			imm = imm_0f(in->opcode);
		}
	} else {
		in->map = X86_MAP_ONE;
		uint8_t op = in->opcode;
		/* VEX (c4/c5), EVEX (62) and XOP (8f) reuse opcodes; outside 64-bit mode only with ModRM.mod == 3. */
		if (op == 0xc4 || op == 0xc5 || op == 0x62 || op == 0x8f) {
			if (pos >= avail)
				return -ENODATA;
			uint8_t next = b[pos];
			bool escape = op == 0x8f ? (next & 0x1f) >= 8 : (mode == 64 || (next & 0xc0) == 0xc0);
			if (escape)
				return -ENOTSUP;
		}
		modrm = bit(modrm_one, op);
		imm = imm_one(op);
	}

	if (modrm && (rc = decode_modrm(b, avail, &pos, in)))
		return rc;
	unsigned int n = imm_size(imm, in);
	if (n) {
		if ((rc = take(b, avail, &pos, n, &v)))
			return rc;
		in->imm = v;
		in->imm_size = (uint8_t)n;
	}
	in->len = (uint8_t)pos;
	return 0;
}

static uint64_t trunc_addr(uint64_t a, unsigned int size)
{
	return size == 8 ? a : a & ((1ULL << (8 * size)) - 1);
}

uint64_t x86_insn_ea(const struct x86_insn *in, const uint64_t gpr[16], uint64_t next_rip)
{
	uint64_t ea = (uint64_t)in->disp;
	if (in->addrsize == 2) {
		static const int8_t base16[8] = { X86_RBX, X86_RBX, X86_RBP, X86_RBP, X86_RSI, X86_RDI, X86_RBP, X86_RBX };
		static const int8_t index16[8] = { X86_RSI, X86_RDI, X86_RSI, X86_RDI, -1, -1, -1, -1 };
		if (!in->no_base) {
			unsigned int r = in->modrm & 7;
			ea += gpr[base16[r]] & 0xffff;
			if (index16[r] >= 0)
				ea += gpr[index16[r]] & 0xffff;
		}
		return ea & 0xffff;
	}
	if (in->rip_relative)
		return trunc_addr(next_rip + ea, in->addrsize);
	if (in->has_sib) {
		if (!in->no_base)
			ea += gpr[in->sib_base];
		if (in->sib_index != X86_RSP)
			ea += gpr[in->sib_index] * in->sib_scale;
	} else if (!in->no_base) {
		ea += gpr[in->rm];
	}
	return trunc_addr(ea, in->addrsize);
}

enum x86_seg x86_insn_mem_seg(const struct x86_insn *in)
{
	if (in->seg != X86_SEG_NONE)
		return (enum x86_seg)in->seg;
	if (in->mode == 64)
		return X86_SEG_DS;
	unsigned int base;
	if (in->addrsize == 2) {
		unsigned int r = in->modrm & 7;
		return (r == 2 || r == 3 || (r == 6 && !in->no_base)) ? X86_SEG_SS : X86_SEG_DS;
	}
	if (in->no_base)
		return X86_SEG_DS;
	base = in->has_sib ? in->sib_base : in->rm;
	return (base == X86_RSP || base == X86_RBP) ? X86_SEG_SS : X86_SEG_DS;
}
