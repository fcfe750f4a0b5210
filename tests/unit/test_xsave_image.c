/*
 * The XSAVE-area byte semantics behind the XSAVE / XSAVEOPT / XSAVEC / XRSTOR emulation,
 * checked against the Intel SDM vol. 1 chapter 13 rules as a guest would observe them:
 * where each component lands (standard and compacted form), which bytes each instruction
 * writes and which it leaves alone, XRSTOR's #GP checks on the header and on MXCSR, and the
 * initial state XRSTOR gives components whose XSTATE_BV bit is clear.
 *
 * Layouts come from hand-made CPUID leaf 0xD tables: the AMD host's (AVX, opmask, ZMM_Hi256,
 * Hi16_ZMM) and an AMX-like one whose tile data is 64-byte aligned in compacted form, with
 * supervisor entries that must be ignored.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/xsave_image.h"

#define BIT(n) (1ULL << (n))

/* Legacy region (FXSAVE format). */
#define L_FCW 0
#define L_X87_HEAD_END 24 /* FCW FSW FTW FOP FIP FDP */
#define L_MXCSR 24
#define L_MXCSR_MASK 28
#define L_ST 32
#define L_XMM 160
#define L_XMM_END 416
#define L_AVAIL_END 512 /* 416..511: reserved / available to software */
#define HDR 512
#define HDR_XSTATE_BV 512
#define HDR_XCOMP_BV 520
#define HDR_END 576

/* AMD host layout: AVX, opmask, ZMM_Hi256, Hi16_ZMM. */
#define C_YMM 2
#define C_OPMASK 5
#define C_ZMM_HI 6
#define C_HI16 7
#define AMD_XCR0 (BIT(0) | BIT(1) | BIT(C_YMM) | BIT(C_OPMASK) | BIT(C_ZMM_HI) | BIT(C_HI16)) /* 0xe7 */
#define AMD_SIZE 2432
#define KVM_LEN 4096 /* struct kvm_xsave */

/* AMX-like layout: AVX, PKRU, XTILECFG, XTILEDATA (64-byte aligned when compacted). */
#define C_PKRU 9
#define C_TILECFG 17
#define C_TILEDATA 18
#define AMX_XCR0 (BIT(0) | BIT(1) | BIT(C_YMM) | BIT(C_PKRU) | BIT(C_TILECFG) | BIT(C_TILEDATA))
#define AMX_SIZE (2816 + 8192)

#define FP XFEATURE_MASK_FP
#define SSE XFEATURE_MASK_SSE
#define YMM XFEATURE_MASK_YMM

#define KVM_MXCSR 0x5fa1u      /* IE, PE, all masks, RC=10: a legal non-default value */
#define KVM_MXCSR_MASK 0xffffu /* DAZ supported */
#define AREA_MXCSR 0x3f81u     /* what the guest's area holds; legal too */
#define MXCSR_INIT 0x1f80u
#define FCW_INIT 0x037fu

#define MARK 0xee     /* guest memory before the instruction; never a KVM pattern byte */
#define SCRAMBLE 0xdd /* KVM state before XRSTOR; never a KVM pattern byte */

/* ---------------------------------------------------------------------------------------- */

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static uint16_t rd16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

static struct kvm_cpuid2 *cpuid_table(const struct kvm_cpuid_entry2 *e, size_t n)
{
	struct kvm_cpuid2 *t = calloc(1, sizeof(*t) + n * sizeof(t->entries[0]));
	assert_non_null(t);
	t->nent = (uint32_t)n;
	memcpy(t->entries, e, n * sizeof(e[0]));
	return t;
}

static void amd_layout(struct xsave_layout *l)
{
	const struct kvm_cpuid_entry2 e[] = {
		{ .function = 0x7, .index = 0, .eax = 1, .ebx = 0x1000 },          /* another leaf */
		{ .function = 0xd, .index = 0, .eax = 0xe7, .ebx = 2432, .ecx = 2432 }, /* not a component */
		{ .function = 0xd, .index = 1, .eax = 0xf },                         /* flags, not a component */
		{ .function = 0xd, .index = C_YMM, .eax = 256, .ebx = 576 },
		{ .function = 0xd, .index = C_OPMASK, .eax = 64, .ebx = 832 },
		{ .function = 0xd, .index = C_ZMM_HI, .eax = 512, .ebx = 896 },
		{ .function = 0xd, .index = C_HI16, .eax = 1024, .ebx = 1408 },
		{ .function = 0xd, .index = 11, .eax = 16, .ebx = 0, .ecx = 1 },    /* CET_U: supervisor */
	};
	struct kvm_cpuid2 *t = cpuid_table(e, sizeof(e) / sizeof(e[0]));
	xsave_layout_from_cpuid(t, l);
	free(t);
}

static void amx_layout(struct xsave_layout *l)
{
	const struct kvm_cpuid_entry2 e[] = {
		{ .function = 0xd, .index = C_YMM, .eax = 256, .ebx = 576 },
		{ .function = 0xd, .index = C_PKRU, .eax = 8, .ebx = 2688 },
		/* Supervisor components (ECX bit 0): no standard-format place, whatever EBX says. */
		{ .function = 0xd, .index = 12, .eax = 24, .ebx = 2432, .ecx = 1 },
		{ .function = 0xd, .index = 15, .eax = 808, .ebx = 0, .ecx = 3 },
		{ .function = 0xd, .index = 16, .eax = 0 },                          /* not supported */
		{ .function = 0xd, .index = C_TILECFG, .eax = 64, .ebx = 2752 },
		{ .function = 0xd, .index = C_TILEDATA, .eax = 8192, .ebx = 2816, .ecx = 2 },
	};
	struct kvm_cpuid2 *t = cpuid_table(e, sizeof(e) / sizeof(e[0]));
	xsave_layout_from_cpuid(t, l);
	free(t);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);
	assert_non_null(p);
	return p;
}

/* Writes the initial configuration of the components in mask (SDM 13.6) into a KVM image. */
static void set_initial(const struct xsave_layout *l, uint8_t *kvm, uint64_t mask)
{
	if (mask & FP) {
		memset(kvm, 0, L_X87_HEAD_END);
		memset(kvm + L_ST, 0, L_XMM - L_ST);
		kvm[L_FCW] = FCW_INIT & 0xff;
		kvm[L_FCW + 1] = FCW_INIT >> 8;
	}
	if (mask & SSE)
		memset(kvm + L_XMM, 0, L_XMM_END - L_XMM);
	for (unsigned int i = 2; i < 63; i++)
		if ((mask & BIT(i)) && (l->known & BIT(i)))
			memset(kvm + l->offset[i], 0, l->size[i]);
}

/*
 * A KVM image the way KVM_GET_XSAVE returns it: a distinct byte everywhere (1..199), a legal
 * MXCSR and the CPU's MXCSR_MASK, XSTATE_BV = xinuse, the rest of the header zero, and the
 * components not in use in their initial configuration.
 */
static uint8_t *kvm_image(const struct xsave_layout *l, size_t len, uint64_t xinuse)
{
	uint8_t *kvm = xmalloc(len);
	for (size_t i = 0; i < len; i++)
		kvm[i] = (uint8_t)(1 + i % 199);
	wr32(kvm + L_MXCSR, KVM_MXCSR);
	wr32(kvm + L_MXCSR_MASK, KVM_MXCSR_MASK);
	memset(kvm + HDR, 0, HDR_END - HDR);
	wr64(kvm + HDR_XSTATE_BV, xinuse);
	set_initial(l, kvm, l->known & ~xinuse);
	return kvm;
}

/* KVM state that differs from every kvm_image() byte, but with the CPU's MXCSR_MASK. */
static uint8_t *scrambled_image(size_t len, uint64_t xstate_bv)
{
	uint8_t *kvm = xmalloc(len);
	memset(kvm, SCRAMBLE, len);
	wr32(kvm + L_MXCSR, MXCSR_INIT);
	wr32(kvm + L_MXCSR_MASK, KVM_MXCSR_MASK);
	memset(kvm + HDR, 0, HDR_END - HDR);
	wr64(kvm + HDR_XSTATE_BV, xstate_bv);
	return kvm;
}

static uint8_t *marked_area(size_t len)
{
	uint8_t *a = xmalloc(len);
	memset(a, MARK, len);
	return a;
}

/* An area for XRSTOR: junk everywhere (so loads are visible), a clean header, a legal MXCSR. */
static uint8_t *restore_area(size_t len, uint64_t xstate_bv, uint64_t xcomp_bv)
{
	uint8_t *a = xmalloc(len);
	for (size_t i = 0; i < len; i++)
		a[i] = (uint8_t)(0x40 + i % 61);
	wr32(a + L_MXCSR, AREA_MXCSR);
	memset(a + HDR, 0, HDR_END - HDR);
	wr64(a + HDR_XSTATE_BV, xstate_bv);
	wr64(a + HDR_XCOMP_BV, xcomp_bv);
	return a;
}

static void assert_fill(const uint8_t *buf, size_t from, size_t to, uint8_t v)
{
	for (size_t i = from; i < to; i++)
		if (buf[i] != v)
			fail_msg("byte %zu is 0x%02x, expected 0x%02x", i, buf[i], v);
}

static void assert_zero(const uint8_t *buf, size_t from, size_t to) { assert_fill(buf, from, to, 0); }

/* The bytes of the state components in mask are equal in two KVM images. */
static void assert_components_equal(const struct xsave_layout *l, const uint8_t *a, const uint8_t *b, uint64_t mask)
{
	if (mask & FP) {
		assert_memory_equal(a, b, L_X87_HEAD_END);
		assert_memory_equal(a + L_ST, b + L_ST, L_XMM - L_ST);
	}
	if (mask & SSE)
		assert_memory_equal(a + L_XMM, b + L_XMM, L_XMM_END - L_XMM);
	for (unsigned int i = 2; i < 63; i++)
		if (mask & BIT(i))
			assert_memory_equal(a + l->offset[i], b + l->offset[i], l->size[i]);
}

/* ---------------------------------------------------------------------------------------- */
/* Layout from CPUID, compacted offsets, area sizes                                          */

static void layout_from_amd_cpuid(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	assert_int_equal(l.known, AMD_XCR0);
	assert_int_equal(l.align64, 0);
	assert_int_equal(l.offset[C_YMM], 576);
	assert_int_equal(l.size[C_YMM], 256);
	assert_int_equal(l.offset[C_OPMASK], 832);
	assert_int_equal(l.size[C_OPMASK], 64);
	assert_int_equal(l.offset[C_ZMM_HI], 896);
	assert_int_equal(l.size[C_ZMM_HI], 512);
	assert_int_equal(l.offset[C_HI16], 1408);
	assert_int_equal(l.size[C_HI16], 1024);
}

static void layout_ignores_supervisor_and_unsupported(void **state)
{
	(void)state;
	struct xsave_layout l;
	amx_layout(&l);
	assert_int_equal(l.known, AMX_XCR0);
	assert_int_equal(l.align64, BIT(C_TILEDATA));
	assert_int_equal(l.offset[C_TILEDATA], 2816);
	assert_int_equal(l.size[C_TILEDATA], 8192);
	assert_int_equal(l.size[12], 0);
	assert_int_equal(l.size[15], 0);
	assert_int_equal(l.size[16], 0);

	/* A layout from nothing still knows the legacy components. */
	xsave_layout_from_cpuid(NULL, &l);
	assert_int_equal(l.known, FP | SSE);
}

static void compacted_offsets_pack_in_xcomp_bv_order(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	const uint64_t c = XSAVE_COMPACTED;

	/* All present: contiguous from 576 (here the same as the standard offsets). */
	uint64_t all = c | AMD_XCR0;
	assert_int_equal(xsave_compacted_offset(&l, all, C_YMM), 576);
	assert_int_equal(xsave_compacted_offset(&l, all, C_OPMASK), 832);
	assert_int_equal(xsave_compacted_offset(&l, all, C_ZMM_HI), 896);
	assert_int_equal(xsave_compacted_offset(&l, all, C_HI16), 1408);

	/* Absent components take no room. */
	uint64_t gaps = c | FP | SSE | BIT(C_OPMASK) | BIT(C_HI16);
	assert_int_equal(xsave_compacted_offset(&l, gaps, C_OPMASK), 576);
	assert_int_equal(xsave_compacted_offset(&l, gaps, C_HI16), 640);
	uint64_t ymm_zmm = c | BIT(C_YMM) | BIT(C_ZMM_HI);
	assert_int_equal(xsave_compacted_offset(&l, ymm_zmm, C_ZMM_HI), 832);
	/* FP and SSE bits in XCOMP_BV do not move the extended region. */
	assert_int_equal(xsave_compacted_offset(&l, c | BIT(C_HI16), C_HI16), 576);
	assert_int_equal(xsave_compacted_offset(&l, c | FP | SSE | BIT(C_HI16), C_HI16), 576);
}

static void compacted_offsets_honour_align64(void **state)
{
	(void)state;
	struct xsave_layout l;
	amx_layout(&l);
	const uint64_t c = XSAVE_COMPACTED;

	uint64_t all = c | AMX_XCR0;
	assert_int_equal(xsave_compacted_offset(&l, all, C_YMM), 576);
	assert_int_equal(xsave_compacted_offset(&l, all, C_PKRU), 832);
	assert_int_equal(xsave_compacted_offset(&l, all, C_TILECFG), 840); /* not aligned: packed */
	/* TILECFG ends at 904; TILEDATA goes to the next 64-byte boundary. */
	assert_int_equal(xsave_compacted_offset(&l, all, C_TILEDATA), 960);

	assert_int_equal(xsave_compacted_offset(&l, c | BIT(C_PKRU) | BIT(C_TILEDATA), C_TILEDATA), 640);
	assert_int_equal(xsave_compacted_offset(&l, c | BIT(C_PKRU) | BIT(C_TILECFG), C_TILECFG), 584);
	/* Already on a boundary: no padding. */
	assert_int_equal(xsave_compacted_offset(&l, c | BIT(C_YMM) | BIT(C_TILEDATA), C_TILEDATA), 832);
	assert_int_equal(xsave_compacted_offset(&l, c | BIT(C_TILEDATA), C_TILEDATA), 576);
}

static void area_sizes(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	/* The legacy region and the header are always part of the area. */
	assert_int_equal(xsave_area_size(&l, 0, false), 576);
	assert_int_equal(xsave_area_size(&l, FP | SSE, false), 576);
	assert_int_equal(xsave_area_size(&l, FP | SSE, true), 576);
	assert_int_equal(xsave_area_size(&l, FP | SSE | YMM, false), 832);
	assert_int_equal(xsave_area_size(&l, AMD_XCR0, false), AMD_SIZE);
	assert_int_equal(xsave_area_size(&l, AMD_XCR0, true), AMD_SIZE);
	/* Standard form: up to the end of the last requested component at its fixed offset. */
	assert_int_equal(xsave_area_size(&l, FP | SSE | BIT(C_OPMASK), false), 896);
	assert_int_equal(xsave_area_size(&l, FP | SSE | BIT(C_OPMASK), true), 640);
	assert_int_equal(xsave_area_size(&l, BIT(C_OPMASK) | BIT(C_HI16), false), AMD_SIZE);
	assert_int_equal(xsave_area_size(&l, BIT(C_OPMASK) | BIT(C_HI16), true), 1664);

	amx_layout(&l);
	assert_int_equal(xsave_area_size(&l, AMX_XCR0, false), AMX_SIZE);
	assert_int_equal(xsave_area_size(&l, AMX_XCR0, true), 960 + 8192);
	assert_int_equal(xsave_area_size(&l, BIT(C_PKRU) | BIT(C_TILECFG), true), 648);
}

/* ---------------------------------------------------------------------------------------- */
/* XSAVE / XSAVEOPT: standard form                                                          */

/* XSAVE with rfbm into a marked area of exactly the size the instruction writes. */
static uint8_t *do_xsave(const struct xsave_layout *l, const uint8_t *kvm, uint64_t rfbm, bool compacted,
			 size_t *len)
{
	*len = xsave_area_size(l, rfbm, compacted);
	uint8_t *area = marked_area(*len);
	assert_int_equal(xsave_save(l, kvm, KVM_LEN, rfbm, compacted, area, *len), 0);
	return area;
}

static void xsave_fp_only_writes_x87_only(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	uint8_t *kvm = kvm_image(&l, KVM_LEN, AMD_XCR0);
	size_t len;
	uint8_t *a = do_xsave(&l, kvm, FP, false, &len);

	assert_int_equal(len, 576);
	assert_memory_equal(a, kvm, L_X87_HEAD_END);
	assert_fill(a, L_MXCSR, L_ST, MARK); /* no MXCSR / MXCSR_MASK without RFBM[1] or [2] */
	assert_memory_equal(a + L_ST, kvm + L_ST, L_XMM - L_ST);
	assert_fill(a, L_XMM, L_AVAIL_END, MARK);
	uint64_t old = 0xeeeeeeeeeeeeeeeeULL;
	assert_int_equal(rd64(a + HDR_XSTATE_BV), (old & ~FP) | FP);
	assert_fill(a, HDR_XCOMP_BV, HDR_END, MARK);
	free(a);
	free(kvm);
}

static void xsave_sse_only_writes_xmm_and_mxcsr(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	uint8_t *kvm = kvm_image(&l, KVM_LEN, AMD_XCR0);
	size_t len;
	uint8_t *a = do_xsave(&l, kvm, SSE, false, &len);

	assert_fill(a, 0, L_MXCSR, MARK);
	assert_int_equal(rd32(a + L_MXCSR), KVM_MXCSR);
	assert_int_equal(rd32(a + L_MXCSR_MASK), KVM_MXCSR_MASK);
	assert_fill(a, L_ST, L_XMM, MARK);
	assert_memory_equal(a + L_XMM, kvm + L_XMM, L_XMM_END - L_XMM);
	assert_fill(a, L_XMM_END, L_AVAIL_END, MARK);
	assert_fill(a, HDR_XCOMP_BV, HDR_END, MARK);
	free(a);
	free(kvm);
}

static void xsave_avx_alone_still_writes_mxcsr(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	uint8_t *kvm = kvm_image(&l, KVM_LEN, AMD_XCR0);
	size_t len;
	uint8_t *a = do_xsave(&l, kvm, YMM, false, &len);

	assert_int_equal(len, 832);
	assert_fill(a, 0, L_MXCSR, MARK);
	assert_int_equal(rd32(a + L_MXCSR), KVM_MXCSR); /* SDM 13.7: RFBM[1] or RFBM[2] */
	assert_int_equal(rd32(a + L_MXCSR_MASK), KVM_MXCSR_MASK);
	assert_fill(a, L_ST, L_AVAIL_END, MARK); /* no XMM */
	assert_memory_equal(a + 576, kvm + 576, 256);
	free(a);
	free(kvm);
}

static void xsave_extended_at_standard_offsets(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	/* YMM not in use: XSAVE (unlike XSAVEC) still writes it, with XSTATE_BV[2] = 0. */
	uint8_t *kvm = kvm_image(&l, KVM_LEN, FP | SSE | BIT(C_HI16));
	uint64_t rfbm = FP | SSE | YMM | BIT(C_HI16);
	size_t len;
	uint8_t *a = do_xsave(&l, kvm, rfbm, false, &len);

	assert_int_equal(len, AMD_SIZE);
	assert_memory_equal(a + 576, kvm + 576, 256);
	assert_fill(a, 832, 1408, MARK); /* opmask and ZMM_Hi256 not requested */
	assert_memory_equal(a + 1408, kvm + 1408, 1024);
	uint64_t old = 0xeeeeeeeeeeeeeeeeULL;
	assert_int_equal(rd64(a + HDR_XSTATE_BV), (old & ~rfbm) | FP | SSE | BIT(C_HI16));
	free(a);
	free(kvm);
}

static void xsave_merges_xstate_bv_and_leaves_header(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	uint8_t *kvm = kvm_image(&l, KVM_LEN, SSE | YMM);
	uint8_t *a = marked_area(AMD_SIZE);
	wr64(a + HDR_XSTATE_BV, FP | BIT(C_OPMASK) | BIT(C_HI16));
	wr64(a + HDR_XCOMP_BV, 0x1234);

	assert_int_equal(xsave_save(&l, kvm, KVM_LEN, FP | SSE | YMM, false, a, AMD_SIZE), 0);
	/* Bits in RFBM take XINUSE (FP is in its initial state: 0); the others keep memory's. */
	assert_int_equal(rd64(a + HDR_XSTATE_BV), SSE | YMM | BIT(C_OPMASK) | BIT(C_HI16));
	assert_int_equal(rd64(a + HDR_XCOMP_BV), 0x1234);
	assert_fill(a, HDR + 16, HDR_END, MARK);
	assert_fill(a, 832, AMD_SIZE, MARK);
	/* x87 saved in its initial state. */
	assert_int_equal(rd16(a + L_FCW), FCW_INIT);
	assert_zero(a, 2, L_X87_HEAD_END);

	/* RFBM = 0 writes nothing at all. */
	uint8_t *b = marked_area(576);
	assert_int_equal(xsave_save(&l, kvm, KVM_LEN, 0, false, b, 576), 0);
	assert_fill(b, 0, 576, MARK);
	free(b);
	free(a);
	free(kvm);
}

/* ---------------------------------------------------------------------------------------- */
/* XSAVEC: compacted form                                                                    */

static void xsavec_header(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	uint64_t xinuse = FP | SSE | BIT(C_OPMASK);
	uint8_t *kvm = kvm_image(&l, KVM_LEN, xinuse);
	size_t len;
	uint8_t *a = do_xsave(&l, kvm, AMD_XCR0, true, &len);

	assert_int_equal(len, AMD_SIZE);
	assert_int_equal(rd64(a + HDR_XSTATE_BV), xinuse);
	assert_int_equal(rd64(a + HDR_XCOMP_BV), XSAVE_COMPACTED | AMD_XCR0);
	/* XSAVEC writes no other part of the header. */
	assert_fill(a, HDR + 16, HDR_END, MARK);
	assert_fill(a, L_XMM_END, L_AVAIL_END, MARK);
	free(a);
	free(kvm);

	/* XCOMP_BV is RFBM, whatever is in use. */
	kvm = kvm_image(&l, KVM_LEN, 0);
	a = do_xsave(&l, kvm, FP | YMM, true, &len);
	assert_int_equal(rd64(a + HDR_XSTATE_BV), 0);
	assert_int_equal(rd64(a + HDR_XCOMP_BV), XSAVE_COMPACTED | FP | YMM);
	free(a);
	free(kvm);
}

static void xsavec_skips_components_in_initial_state(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	uint64_t xinuse = YMM | BIT(C_HI16);
	uint8_t *kvm = kvm_image(&l, KVM_LEN, xinuse);
	wr32(kvm + L_MXCSR, MXCSR_INIT); /* SSE state wholly in its initial configuration */
	size_t len;
	uint8_t *a = do_xsave(&l, kvm, AMD_XCR0, true, &len);

	/* x87 and SSE (XMM, MXCSR, MXCSR_MASK) not saved. */
	assert_fill(a, 0, L_AVAIL_END, MARK);
	assert_memory_equal(a + 576, kvm + 576, 256);
	assert_fill(a, 832, 1408, MARK); /* opmask, ZMM_Hi256 in their initial state */
	assert_memory_equal(a + 1408, kvm + 1408, 1024);
	assert_int_equal(rd64(a + HDR_XSTATE_BV), xinuse);
	free(a);
	free(kvm);
}

static void xsavec_packs_components(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	uint8_t *kvm = kvm_image(&l, KVM_LEN, AMD_XCR0);
	uint64_t rfbm = FP | SSE | BIT(C_OPMASK) | BIT(C_HI16);
	size_t len;
	uint8_t *a = do_xsave(&l, kvm, rfbm, true, &len);

	assert_int_equal(len, 1664);
	assert_memory_equal(a, kvm, L_X87_HEAD_END);
	assert_memory_equal(a + L_ST, kvm + L_ST, L_XMM_END - L_ST);
	assert_memory_equal(a + 576, kvm + 832, 64);
	assert_memory_equal(a + 640, kvm + 1408, 1024);
	assert_int_equal(rd64(a + HDR_XSTATE_BV), rfbm);
	assert_int_equal(rd64(a + HDR_XCOMP_BV), XSAVE_COMPACTED | rfbm);
	free(a);
	free(kvm);
}

static void xsavec_aligns_components(void **state)
{
	(void)state;
	struct xsave_layout l;
	amx_layout(&l);
	uint8_t *kvm = kvm_image(&l, AMX_SIZE, AMX_XCR0);
	size_t len = xsave_area_size(&l, AMX_XCR0, true);
	uint8_t *a = marked_area(len);

	assert_int_equal(xsave_save(&l, kvm, AMX_SIZE, AMX_XCR0, true, a, len), 0);
	assert_memory_equal(a + 576, kvm + 576, 256);
	assert_memory_equal(a + 832, kvm + 2688, 8);
	assert_memory_equal(a + 840, kvm + 2752, 64);
	assert_memory_equal(a + 960, kvm + 2816, 8192);
	free(a);
	free(kvm);
}

static void xsavec_mxcsr_goes_with_rfbm1_only(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	uint8_t *kvm = kvm_image(&l, KVM_LEN, AMD_XCR0);
	size_t len;

	/* SDM 13.10: unlike XSAVE, RFBM[2] does not make XSAVEC save MXCSR and MXCSR_MASK. */
	uint8_t *a = do_xsave(&l, kvm, YMM, true, &len);
	assert_int_equal(len, 832);
	assert_fill(a, 0, L_AVAIL_END, MARK);
	assert_memory_equal(a + 576, kvm + 576, 256);
	assert_int_equal(rd64(a + HDR_XSTATE_BV), YMM);
	free(a);

	/* RFBM[1] = 1, SSE in use: XMM, MXCSR and MXCSR_MASK saved. */
	a = do_xsave(&l, kvm, SSE, true, &len);
	assert_int_equal(rd32(a + L_MXCSR), KVM_MXCSR);
	assert_int_equal(rd32(a + L_MXCSR_MASK), KVM_MXCSR_MASK);
	assert_memory_equal(a + L_XMM, kvm + L_XMM, L_XMM_END - L_XMM);
	assert_int_equal(rd64(a + HDR_XSTATE_BV), SSE);
	free(a);
	free(kvm);
}

/*
 * XINUSE[1] tracks only the XMM registers. XSAVEC operation: TO_BE_SAVED[1] is also set when
 * RFBM[1] = 1 and MXCSR != 1F80H; SSE state (XMM, MXCSR, MXCSR_MASK) is stored and
 * XSTATE_BV[1] = 1, so that a compacted XRSTOR brings MXCSR back.
 */
static void xsavec_saves_sse_when_mxcsr_not_initial(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	uint8_t *kvm = kvm_image(&l, KVM_LEN, 0); /* XMM all zero, MXCSR 0x5fa1 */
	size_t len;

	uint8_t *a = do_xsave(&l, kvm, FP | SSE, true, &len);
	assert_fill(a, 0, L_MXCSR, MARK);
	assert_fill(a, L_ST, L_XMM, MARK);
	assert_int_equal(rd32(a + L_MXCSR), KVM_MXCSR);
	assert_int_equal(rd32(a + L_MXCSR_MASK), KVM_MXCSR_MASK);
	assert_zero(a, L_XMM, L_XMM_END);
	assert_int_equal(rd64(a + HDR_XSTATE_BV), SSE);
	free(a);

	/* Not requested: nothing, whatever MXCSR holds. */
	a = do_xsave(&l, kvm, FP | YMM, true, &len);
	assert_fill(a, 0, L_AVAIL_END, MARK);
	assert_int_equal(rd64(a + HDR_XSTATE_BV), 0);
	free(a);
	free(kvm);
}

/* ---------------------------------------------------------------------------------------- */
/* XRSTOR header checks                                                                      */

static uint8_t *header(uint64_t xstate_bv, uint64_t xcomp_bv)
{
	uint8_t *h = calloc(1, XSAVE_HDR_SIZE);
	assert_non_null(h);
	wr64(h, xstate_bv);
	wr64(h + 8, xcomp_bv);
	return h;
}

static int check(const struct xsave_layout *l, uint64_t xstate_bv, uint64_t xcomp_bv, uint64_t xcr0, uint64_t rfbm,
		 bool compacted_ok, size_t *need)
{
	uint8_t *h = header(xstate_bv, xcomp_bv);
	int rc = xsave_restore_check(l, h, xcr0, rfbm, compacted_ok, need);
	free(h);
	return rc;
}

static void restore_check_standard_gp(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	size_t need;
	const uint64_t xcr0 = FP | SSE | YMM;

	assert_int_equal(check(&l, FP | SSE | YMM, 0, xcr0, xcr0, true, &need), 0);
	/* XSTATE_BV bits not in XCR0 (known to the layout or not, bit 63 too). */
	assert_int_equal(check(&l, FP | BIT(C_OPMASK), 0, xcr0, xcr0, true, &need), -EINVAL);
	assert_int_equal(check(&l, BIT(3), 0, xcr0, xcr0, true, &need), -EINVAL);
	assert_int_equal(check(&l, BIT(63), 0, xcr0, xcr0, true, &need), -EINVAL);

	/* Header bytes 8..23 must be zero; bytes 24..63 are not checked in standard form. */
	for (unsigned int i = 8; i < XSAVE_HDR_SIZE; i++) {
		uint8_t *h = header(FP, 0);
		h[i] = 1;
		int want = i < 24 ? -EINVAL : 0;
		if (xsave_restore_check(&l, h, xcr0, xcr0, true, &need) != want)
			fail_msg("header byte %u set: expected %d", i, want);
		free(h);
	}
}

static void restore_check_compacted_gp(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	size_t need;
	const uint64_t xcr0 = FP | SSE | YMM;
	const uint64_t c = XSAVE_COMPACTED;

	assert_int_equal(check(&l, SSE | YMM, c | xcr0, xcr0, xcr0, true, &need), 0);
	/* No XSAVEC in the guest's CPUID: a compacted area is #GP. */
	assert_int_equal(check(&l, SSE | YMM, c | xcr0, xcr0, xcr0, false, &need), -EINVAL);
	/* XCOMP_BV bits outside XCR0. */
	assert_int_equal(check(&l, YMM, c | xcr0 | BIT(C_OPMASK), xcr0, xcr0, true, &need), -EINVAL);
	assert_int_equal(check(&l, 0, c | BIT(40), xcr0, xcr0, true, &need), -EINVAL);
	/* XSTATE_BV bits outside XCOMP_BV, even if in XCR0; XSTATE_BV bit 63 included. */
	assert_int_equal(check(&l, FP | YMM, c | FP | SSE, xcr0, xcr0, true, &need), -EINVAL);
	assert_int_equal(check(&l, SSE, c | YMM, xcr0, xcr0, true, &need), -EINVAL);
	assert_int_equal(check(&l, c | YMM, c | YMM, xcr0, xcr0, true, &need), -EINVAL);
	/* XSTATE_BV = 0 with XCOMP_BV = bit 63 alone is fine. */
	assert_int_equal(check(&l, 0, c, xcr0, xcr0, true, &need), 0);
	assert_int_equal(need, 576);

	/* Header bytes 16..63 must be zero. */
	for (unsigned int i = 16; i < XSAVE_HDR_SIZE; i++) {
		uint8_t *h = header(YMM, c | xcr0);
		h[i] = 0x80;
		if (xsave_restore_check(&l, h, xcr0, xcr0, true, &need) != -EINVAL)
			fail_msg("compacted header byte %u set: expected #GP", i);
		free(h);
	}
}

static void restore_check_need_standard(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	size_t need;

	assert_int_equal(check(&l, FP | SSE, 0, AMD_XCR0, AMD_XCR0, true, &need), 0);
	assert_int_equal(need, 576);
	assert_int_equal(check(&l, FP | SSE | YMM, 0, AMD_XCR0, AMD_XCR0, true, &need), 0);
	assert_int_equal(need, 832);
	/* Only what is both requested and present is read. */
	assert_int_equal(check(&l, YMM | BIT(C_HI16), 0, AMD_XCR0, FP | SSE | YMM, true, &need), 0);
	assert_int_equal(need, 832);
	assert_int_equal(check(&l, BIT(C_OPMASK), 0, AMD_XCR0, AMD_XCR0, true, &need), 0);
	assert_int_equal(need, 896);
	assert_int_equal(check(&l, YMM | BIT(C_HI16), 0, AMD_XCR0, AMD_XCR0, true, &need), 0);
	assert_int_equal(need, AMD_SIZE);
}

static void restore_check_need_compacted(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	size_t need;
	const uint64_t c = XSAVE_COMPACTED;
	uint64_t xcomp = c | FP | SSE | BIT(C_OPMASK) | BIT(C_HI16);

	assert_int_equal(check(&l, FP | BIT(C_HI16), xcomp, AMD_XCR0, AMD_XCR0, true, &need), 0);
	assert_int_equal(need, 1664);
	assert_int_equal(check(&l, FP | BIT(C_OPMASK), xcomp, AMD_XCR0, AMD_XCR0, true, &need), 0);
	assert_int_equal(need, 640);
	assert_int_equal(check(&l, FP | BIT(C_HI16), xcomp, AMD_XCR0, FP | SSE, true, &need), 0);
	assert_int_equal(need, 576);

	amx_layout(&l);
	assert_int_equal(check(&l, BIT(C_TILEDATA), c | AMX_XCR0, AMX_XCR0, AMX_XCR0, true, &need), 0);
	assert_int_equal(need, 960 + 8192);
	assert_int_equal(check(&l, BIT(C_TILECFG), c | AMX_XCR0, AMX_XCR0, AMX_XCR0, true, &need), 0);
	assert_int_equal(need, 904);
}

static void restore_check_unknown_component_is_erange(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	size_t need;
	uint64_t xcr0 = AMD_XCR0 | BIT(C_PKRU); /* PKRU enabled, but not in the layout */

	assert_int_equal(check(&l, BIT(C_PKRU), 0, xcr0, xcr0, true, &need), -ERANGE);
	assert_int_equal(check(&l, 0, XSAVE_COMPACTED | BIT(C_PKRU), xcr0, xcr0, true, &need), -ERANGE);
	/* #GP takes precedence. */
	assert_int_equal(check(&l, BIT(C_PKRU), 0, AMD_XCR0, AMD_XCR0, true, &need), -EINVAL);
}

/* ---------------------------------------------------------------------------------------- */
/* XRSTOR                                                                                    */

static void round_trip(const struct xsave_layout *l, size_t kvm_len, uint64_t xcr0, uint64_t xinuse, uint32_t mxcsr,
		       bool compacted)
{
	uint8_t *kvm = kvm_image(l, kvm_len, xinuse);
	wr32(kvm + L_MXCSR, mxcsr);
	size_t len = xsave_area_size(l, xcr0, compacted);
	uint8_t *a = xmalloc(len);
	memset(a, 0, len); /* a fresh area: clean header */
	assert_int_equal(xsave_save(l, kvm, kvm_len, xcr0, compacted, a, len), 0);

	size_t need;
	assert_int_equal(xsave_restore_check(l, a + HDR, xcr0, xcr0, true, &need), 0);
	assert_true(need <= len);
	uint8_t *k2 = scrambled_image(kvm_len, 0);
	assert_int_equal(xsave_restore(l, a, need, xcr0, k2, kvm_len), 0);

	assert_components_equal(l, k2, kvm, xcr0);
	assert_int_equal(rd32(k2 + L_MXCSR), mxcsr);
	assert_int_equal(rd32(k2 + L_MXCSR_MASK), KVM_MXCSR_MASK);
	/* Every component in use is marked in use again. */
	uint64_t bv = rd64(k2 + HDR_XSTATE_BV);
	assert_int_equal(bv & xinuse, xinuse);
	assert_int_equal(bv & ~(xinuse | FP | SSE), 0);
	free(k2);
	free(a);
	free(kvm);
}

static void restore_round_trip_standard(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	round_trip(&l, KVM_LEN, AMD_XCR0, AMD_XCR0, KVM_MXCSR, false);
	round_trip(&l, KVM_LEN, AMD_XCR0, SSE | BIT(C_ZMM_HI), KVM_MXCSR, false);
	round_trip(&l, KVM_LEN, AMD_XCR0, 0, KVM_MXCSR, false);
	round_trip(&l, KVM_LEN, AMD_XCR0, 0, MXCSR_INIT, false);
	amx_layout(&l);
	round_trip(&l, AMX_SIZE, AMX_XCR0, AMX_XCR0, KVM_MXCSR, false);
}

static void restore_round_trip_compacted(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	round_trip(&l, KVM_LEN, AMD_XCR0, AMD_XCR0, KVM_MXCSR, true);
	/* SSE not in use but MXCSR not initial: MXCSR must survive. */
	round_trip(&l, KVM_LEN, AMD_XCR0, FP | YMM | BIT(C_HI16), KVM_MXCSR, true);
	round_trip(&l, KVM_LEN, AMD_XCR0, 0, KVM_MXCSR, true);
	round_trip(&l, KVM_LEN, AMD_XCR0, 0, MXCSR_INIT, true);
	amx_layout(&l);
	round_trip(&l, AMX_SIZE, AMX_XCR0, AMX_XCR0, KVM_MXCSR, true);
	round_trip(&l, AMX_SIZE, AMX_XCR0, BIT(C_PKRU) | BIT(C_TILEDATA), KVM_MXCSR, true);
}

/* All of the KVM image's state components are in their initial configuration. */
static void assert_all_initial(const struct xsave_layout *l, const uint8_t *kvm)
{
	assert_int_equal(rd16(kvm + L_FCW), FCW_INIT);
	assert_zero(kvm, 2, L_X87_HEAD_END); /* FSW, FTW (all empty), FOP, FIP, FDP */
	assert_zero(kvm, L_ST, L_XMM);
	assert_zero(kvm, L_XMM, L_XMM_END);
	for (unsigned int i = 2; i < 63; i++)
		if (l->known & BIT(i))
			assert_zero(kvm, l->offset[i], l->offset[i] + l->size[i]);
}

static void restore_initialises_absent_components_standard(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	uint8_t *kvm = kvm_image(&l, KVM_LEN, AMD_XCR0);
	uint8_t *before = xmalloc(KVM_LEN);
	memcpy(before, kvm, KVM_LEN);
	uint8_t *a = restore_area(AMD_SIZE, 0, 0);

	assert_int_equal(xsave_restore(&l, a, AMD_SIZE, AMD_XCR0, kvm, KVM_LEN), 0);
	assert_all_initial(&l, kvm);
	/* The standard form loads MXCSR from memory whatever XSTATE_BV says. */
	assert_int_equal(rd32(kvm + L_MXCSR), AREA_MXCSR);
	assert_int_equal(rd32(kvm + L_MXCSR_MASK), KVM_MXCSR_MASK);
	assert_memory_equal(kvm + L_XMM_END, before + L_XMM_END, L_AVAIL_END - L_XMM_END);
	assert_int_equal(rd64(kvm + HDR_XSTATE_BV) & ~(FP | SSE), 0);
	free(a);
	free(before);
	free(kvm);
}

static void restore_initialises_absent_components_compacted(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	uint8_t *kvm = kvm_image(&l, KVM_LEN, AMD_XCR0);
	/* XCOMP_BV names no component: every requested component is initialised all the same. */
	uint8_t *a = restore_area(576, 0, XSAVE_COMPACTED);

	assert_int_equal(xsave_restore(&l, a, 576, AMD_XCR0, kvm, KVM_LEN), 0);
	assert_all_initial(&l, kvm);
	/* SDM 13.8.2: XSTATE_BV[1] = 0, so MXCSR gets its initial value, not memory's. */
	assert_int_equal(rd32(kvm + L_MXCSR), MXCSR_INIT);
	assert_int_equal(rd64(kvm + HDR_XSTATE_BV) & ~(FP | SSE), 0);
	free(a);
	free(kvm);
}

static void restore_leaves_unrequested_components(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	uint8_t *src = kvm_image(&l, KVM_LEN, AMD_XCR0);
	uint8_t *a = xmalloc(AMD_SIZE);
	memset(a, 0, AMD_SIZE);
	assert_int_equal(xsave_save(&l, src, KVM_LEN, AMD_XCR0, false, a, AMD_SIZE), 0);

	uint64_t old_bv = YMM | BIT(C_HI16);
	uint8_t *kvm = scrambled_image(KVM_LEN, old_bv);
	uint64_t rfbm = SSE | BIT(C_OPMASK);
	assert_int_equal(xsave_restore(&l, a, AMD_SIZE, rfbm, kvm, KVM_LEN), 0);

	assert_components_equal(&l, kvm, src, rfbm);
	assert_int_equal(rd32(kvm + L_MXCSR), KVM_MXCSR);
	assert_fill(kvm, 0, L_MXCSR, SCRAMBLE);
	assert_fill(kvm, L_ST, L_XMM, SCRAMBLE);
	assert_fill(kvm, L_XMM_END, L_AVAIL_END, SCRAMBLE);
	assert_fill(kvm, 576, 832, SCRAMBLE);
	assert_fill(kvm, 896, AMD_SIZE, SCRAMBLE);
	/* XSTATE_BV bits outside RFBM stay; loaded components are marked in use. */
	uint64_t bv = rd64(kvm + HDR_XSTATE_BV);
	assert_int_equal(bv & ~(FP | SSE), old_bv | BIT(C_OPMASK));
	assert_true(bv & SSE);
	free(kvm);
	free(a);
	free(src);
}

static void restore_kvm_xstate_bv(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	uint8_t *a = restore_area(AMD_SIZE, YMM, 0);
	uint64_t old_bv = SSE | BIT(C_OPMASK) | BIT(C_HI16);
	uint8_t *kvm = scrambled_image(KVM_LEN, old_bv);

	assert_int_equal(xsave_restore(&l, a, AMD_SIZE, FP | SSE | YMM | BIT(C_HI16), kvm, KVM_LEN), 0);
	/* Hi16_ZMM requested and absent: no longer in use; opmask not requested: as it was. */
	assert_int_equal(rd64(kvm + HDR_XSTATE_BV), FP | SSE | YMM | BIT(C_OPMASK));
	assert_memory_equal(kvm + 576, a + 576, 256);
	assert_zero(kvm, 1408, AMD_SIZE);
	free(kvm);
	free(a);
}

static void restore_bad_mxcsr_is_gp_and_changes_nothing(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	uint8_t *kvm = scrambled_image(KVM_LEN, 0);
	uint8_t *before = xmalloc(KVM_LEN);
	memcpy(before, kvm, KVM_LEN);

	/* Standard form. */
	uint8_t *a = restore_area(AMD_SIZE, AMD_XCR0, 0);
	wr32(a + L_MXCSR, AREA_MXCSR | 0x10000); /* outside MXCSR_MASK 0xffff */
	assert_int_equal(xsave_restore(&l, a, AMD_SIZE, AMD_XCR0, kvm, KVM_LEN), -EINVAL);
	assert_memory_equal(kvm, before, KVM_LEN);
	/* Even if only AVX is requested, the standard form loads (and checks) MXCSR. */
	assert_int_equal(xsave_restore(&l, a, AMD_SIZE, YMM, kvm, KVM_LEN), -EINVAL);
	assert_memory_equal(kvm, before, KVM_LEN);
	/* Not loaded at all without RFBM[1] or RFBM[2]: no fault, MXCSR unchanged. */
	assert_int_equal(xsave_restore(&l, a, AMD_SIZE, FP | BIT(C_OPMASK), kvm, KVM_LEN), 0);
	assert_int_equal(rd32(kvm + L_MXCSR), MXCSR_INIT);
	free(a);

	/* Compacted form, XSTATE_BV[1] = 1. */
	memcpy(kvm, before, KVM_LEN);
	a = restore_area(AMD_SIZE, FP | SSE, XSAVE_COMPACTED | AMD_XCR0);
	wr32(a + L_MXCSR, AREA_MXCSR | 0x80000000u);
	assert_int_equal(xsave_restore(&l, a, AMD_SIZE, AMD_XCR0, kvm, KVM_LEN), -EINVAL);
	assert_memory_equal(kvm, before, KVM_LEN);
	/* XSTATE_BV[1] = 0: memory's MXCSR is not loaded, so it cannot fault. */
	wr64(a + HDR_XSTATE_BV, FP);
	assert_int_equal(xsave_restore(&l, a, AMD_SIZE, AMD_XCR0, kvm, KVM_LEN), 0);
	assert_int_equal(rd32(kvm + L_MXCSR), MXCSR_INIT);
	free(a);
	free(before);
	free(kvm);
}

static void restore_mxcsr_mask_zero_means_ffbf(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	uint8_t *kvm = scrambled_image(KVM_LEN, 0);
	uint8_t *a = restore_area(576, SSE, 0);

	wr32(kvm + L_MXCSR_MASK, 0);
	wr32(a + L_MXCSR, MXCSR_INIT | 0x40); /* DAZ: bit 6, outside 0xffbf */
	assert_int_equal(xsave_restore(&l, a, 576, SSE, kvm, KVM_LEN), -EINVAL);
	assert_int_equal(rd32(kvm + L_MXCSR), MXCSR_INIT);
	wr32(a + L_MXCSR, MXCSR_INIT | 0x8000); /* FZ: inside 0xffbf */
	assert_int_equal(xsave_restore(&l, a, 576, SSE, kvm, KVM_LEN), 0);
	assert_int_equal(rd32(kvm + L_MXCSR), MXCSR_INIT | 0x8000);
	assert_int_equal(rd32(kvm + L_MXCSR_MASK), 0); /* XRSTOR never writes MXCSR_MASK */

	/* With a mask that has DAZ, DAZ is legal. */
	wr32(kvm + L_MXCSR_MASK, KVM_MXCSR_MASK);
	wr32(a + L_MXCSR, MXCSR_INIT | 0x40);
	assert_int_equal(xsave_restore(&l, a, 576, SSE, kvm, KVM_LEN), 0);
	assert_int_equal(rd32(kvm + L_MXCSR), MXCSR_INIT | 0x40);
	free(a);
	free(kvm);
}

/* MXCSR after an XRSTOR with this RFBM from an area with this header. */
static uint32_t mxcsr_after(const struct xsave_layout *l, uint64_t rfbm, uint64_t xstate_bv, uint64_t xcomp_bv)
{
	uint8_t *kvm = scrambled_image(KVM_LEN, 0);
	wr32(kvm + L_MXCSR, KVM_MXCSR);
	uint8_t *a = restore_area(AMD_SIZE, xstate_bv, xcomp_bv);
	assert_int_equal(xsave_restore(l, a, AMD_SIZE, rfbm, kvm, KVM_LEN), 0);
	uint32_t v = rd32(kvm + L_MXCSR);
	free(a);
	free(kvm);
	return v;
}

static void restore_mxcsr_standard_form(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	/* SDM 13.8.1: loaded from memory if RFBM[1] or RFBM[2], whatever XSTATE_BV says. */
	assert_int_equal(mxcsr_after(&l, SSE, SSE, 0), AREA_MXCSR);
	assert_int_equal(mxcsr_after(&l, SSE, 0, 0), AREA_MXCSR);
	assert_int_equal(mxcsr_after(&l, YMM, 0, 0), AREA_MXCSR);
	assert_int_equal(mxcsr_after(&l, YMM, YMM, 0), AREA_MXCSR);
	assert_int_equal(mxcsr_after(&l, FP | BIT(C_HI16), AMD_XCR0, 0), KVM_MXCSR);
}

static void restore_mxcsr_compacted_form(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	const uint64_t c = XSAVE_COMPACTED | AMD_XCR0;
	/*
	 * SDM 13.8.2: the compacted form loads MXCSR from memory if RFBM[1] = XSTATE_BV[1] = 1,
	 * initialises it to 1F80H if RFBM[1] = 1 and XSTATE_BV[1] = 0, and does not consider
	 * RFBM[2] at all.
	 */
	assert_int_equal(mxcsr_after(&l, SSE, SSE, c), AREA_MXCSR);
	assert_int_equal(mxcsr_after(&l, SSE | YMM, SSE | YMM, c), AREA_MXCSR);
	assert_int_equal(mxcsr_after(&l, SSE, 0, c), MXCSR_INIT);
	assert_int_equal(mxcsr_after(&l, SSE | YMM, YMM, c), MXCSR_INIT);
	assert_int_equal(mxcsr_after(&l, YMM, YMM, c), KVM_MXCSR);
	assert_int_equal(mxcsr_after(&l, YMM, 0, c), KVM_MXCSR);
	assert_int_equal(mxcsr_after(&l, FP, AMD_XCR0, c), KVM_MXCSR);
}

static void restore_compacted_reads_packed_offsets(void **state)
{
	(void)state;
	struct xsave_layout l;
	amx_layout(&l);
	/* PKRU at 576, TILECFG at 584 (ends 648), TILEDATA aligned up to 704. */
	uint64_t xcomp = XSAVE_COMPACTED | BIT(C_PKRU) | BIT(C_TILECFG) | BIT(C_TILEDATA);
	const size_t len = 704 + 8192;
	assert_int_equal(xsave_compacted_offset(&l, xcomp, C_TILEDATA), 704);
	uint8_t *a = restore_area(len, BIT(C_PKRU) | BIT(C_TILEDATA), xcomp);
	uint8_t *kvm = scrambled_image(AMX_SIZE, 0);

	assert_int_equal(xsave_restore(&l, a, len, AMX_XCR0, kvm, AMX_SIZE), 0);
	assert_memory_equal(kvm + 2688, a + 576, 8);    /* PKRU */
	assert_zero(kvm, 2752, 2752 + 64);              /* TILECFG: XSTATE_BV clear */
	assert_memory_equal(kvm + 2816, a + 704, 8192); /* TILEDATA */
	assert_zero(kvm, 576, 832);                     /* YMM: not in XCOMP_BV, initialised */
	free(kvm);
	free(a);
}

/* ---------------------------------------------------------------------------------------- */
/* -ERANGE: components the layout or KVM's image cannot hold                                */

static void save_erange(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	uint8_t *kvm = kvm_image(&l, KVM_LEN, AMD_XCR0);
	uint8_t *a = marked_area(KVM_LEN);

	/* Unknown to the layout (MPX bit 3, PKRU bit 9, a supervisor bit). */
	assert_int_equal(xsave_save(&l, kvm, KVM_LEN, FP | BIT(3), false, a, KVM_LEN), -ERANGE);
	assert_int_equal(xsave_save(&l, kvm, KVM_LEN, BIT(C_PKRU), true, a, KVM_LEN), -ERANGE);
	assert_int_equal(xsave_save(&l, kvm, KVM_LEN, BIT(11), true, a, KVM_LEN), -ERANGE);
	/* Beyond KVM's image. */
	assert_int_equal(xsave_save(&l, kvm, 1408, BIT(C_HI16), false, a, KVM_LEN), -ERANGE);
	assert_int_equal(xsave_save(&l, kvm, 1408, AMD_XCR0, true, a, KVM_LEN), -ERANGE);
	assert_int_equal(xsave_save(&l, kvm, 512, FP, false, a, KVM_LEN), -ERANGE);
	/* An area shorter than the instruction writes. */
	assert_int_equal(xsave_save(&l, kvm, KVM_LEN, YMM, false, a, 831), -ERANGE);
	assert_int_equal(xsave_save(&l, kvm, KVM_LEN, BIT(C_OPMASK), true, a, 639), -ERANGE);
	assert_fill(a, 0, KVM_LEN, MARK);
	/* What fits is fine. */
	assert_int_equal(xsave_save(&l, kvm, 1408, FP | SSE | YMM | BIT(C_ZMM_HI), false, a, 1408), 0);
	free(a);
	free(kvm);
}

static void restore_erange(void **state)
{
	(void)state;
	struct xsave_layout l;
	amd_layout(&l);
	uint8_t *kvm = scrambled_image(KVM_LEN, 0);
	uint8_t *before = xmalloc(KVM_LEN);
	memcpy(before, kvm, KVM_LEN);
	uint8_t *a = restore_area(AMD_SIZE, AMD_XCR0, 0);

	assert_int_equal(xsave_restore(&l, a, AMD_SIZE, FP | BIT(3), kvm, KVM_LEN), -ERANGE);
	assert_int_equal(xsave_restore(&l, a, AMD_SIZE, BIT(C_HI16), kvm, 1408), -ERANGE);
	assert_int_equal(xsave_restore(&l, a, 575, FP, kvm, KVM_LEN), -ERANGE);
	/* The area must hold every component it is to be loaded from. */
	assert_int_equal(xsave_restore(&l, a, AMD_SIZE - 1, AMD_XCR0, kvm, KVM_LEN), -ERANGE);
	assert_memory_equal(kvm, before, KVM_LEN);
	/* A component that is to be initialised needs no room in the area. */
	wr64(a + HDR_XSTATE_BV, FP | SSE | YMM);
	assert_int_equal(xsave_restore(&l, a, 832, AMD_XCR0, kvm, KVM_LEN), 0);
	free(a);
	free(before);
	free(kvm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(layout_from_amd_cpuid),
		cmocka_unit_test(layout_ignores_supervisor_and_unsupported),
		cmocka_unit_test(compacted_offsets_pack_in_xcomp_bv_order),
		cmocka_unit_test(compacted_offsets_honour_align64),
		cmocka_unit_test(area_sizes),
		cmocka_unit_test(xsave_fp_only_writes_x87_only),
		cmocka_unit_test(xsave_sse_only_writes_xmm_and_mxcsr),
		cmocka_unit_test(xsave_avx_alone_still_writes_mxcsr),
		cmocka_unit_test(xsave_extended_at_standard_offsets),
		cmocka_unit_test(xsave_merges_xstate_bv_and_leaves_header),
		cmocka_unit_test(xsavec_header),
		cmocka_unit_test(xsavec_skips_components_in_initial_state),
		cmocka_unit_test(xsavec_packs_components),
		cmocka_unit_test(xsavec_aligns_components),
		cmocka_unit_test(xsavec_mxcsr_goes_with_rfbm1_only),
		cmocka_unit_test(xsavec_saves_sse_when_mxcsr_not_initial),
		cmocka_unit_test(restore_check_standard_gp),
		cmocka_unit_test(restore_check_compacted_gp),
		cmocka_unit_test(restore_check_need_standard),
		cmocka_unit_test(restore_check_need_compacted),
		cmocka_unit_test(restore_check_unknown_component_is_erange),
		cmocka_unit_test(restore_round_trip_standard),
		cmocka_unit_test(restore_round_trip_compacted),
		cmocka_unit_test(restore_initialises_absent_components_standard),
		cmocka_unit_test(restore_initialises_absent_components_compacted),
		cmocka_unit_test(restore_leaves_unrequested_components),
		cmocka_unit_test(restore_kvm_xstate_bv),
		cmocka_unit_test(restore_bad_mxcsr_is_gp_and_changes_nothing),
		cmocka_unit_test(restore_mxcsr_mask_zero_means_ffbf),
		cmocka_unit_test(restore_mxcsr_standard_form),
		cmocka_unit_test(restore_mxcsr_compacted_form),
		cmocka_unit_test(restore_compacted_reads_packed_offsets),
		cmocka_unit_test(save_erange),
		cmocka_unit_test(restore_erange),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
