#include "arch/x86/xsave_image.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"

/* The legacy (FXSAVE-format) region. */
#define LEG_FCW 0
#define LEG_MXCSR 24
#define LEG_MXCSR_MASK 28
#define LEG_X87_HEAD_END 24 /* FCW, FSW, FTW, FOP, FIP, FDP */
#define LEG_ST 32
#define LEG_ST_END 160
#define LEG_XMM 160
#define LEG_XMM_END 416

#define FCW_INIT 0x037f
#define MXCSR_INIT 0x1f80
#define MXCSR_MASK_DEFAULT 0xffbf /* what MXCSR_MASK = 0 stands for (SDM 11.6.6) */
#define MASK_MXCSR_USERS (XFEATURE_MASK_SSE | XFEATURE_MASK_YMM)
#define FIRST_EXT 2
#define LAST_EXT 62

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static bool has(uint64_t mask, unsigned int i) { return (mask >> i) & 1; }

void xsave_layout_from_cpuid(const struct kvm_cpuid2 *table, struct xsave_layout *l)
{
	memset(l, 0, sizeof(*l));
	l->known = XFEATURE_MASK_FP | XFEATURE_MASK_SSE;
	for (uint32_t n = 0; table && n < table->nent; n++) {
		const struct kvm_cpuid_entry2 *e = &table->entries[n];
		if (e->function != 0xd || e->index < FIRST_EXT || e->index > LAST_EXT || e->eax == 0)
			continue;
		/* Supervisor components (ECX bit 0) have no standard-format place; XSAVES is not emulated. */
		if ((e->ecx & 1) || e->ebx < XSAVE_EXT_OFFSET)
			continue;
		l->known |= 1ULL << e->index;
		l->offset[e->index] = e->ebx;
		l->size[e->index] = e->eax;
		if (e->ecx & 2)
			l->align64 |= 1ULL << e->index;
	}
}

size_t xsave_compacted_offset(const struct xsave_layout *l, uint64_t xcomp_bv, unsigned int i)
{
	size_t off = XSAVE_EXT_OFFSET;
	for (unsigned int j = FIRST_EXT; j < i && j <= LAST_EXT; j++) {
		if (!has(xcomp_bv, j))
			continue;
		if (has(l->align64, j))
			off = ALIGN_UP(off, XSAVE_ALIGN);
		off += l->size[j];
	}
	if (i <= LAST_EXT && has(l->align64, i))
		off = ALIGN_UP(off, XSAVE_ALIGN);
	return off;
}

/* End of component i in an area of the given form (standard when xcomp_bv lacks bit 63). */
static size_t component_end(const struct xsave_layout *l, uint64_t xcomp_bv, unsigned int i)
{
	size_t start = (xcomp_bv & XSAVE_COMPACTED) ? xsave_compacted_offset(l, xcomp_bv, i) : l->offset[i];
	return start + l->size[i];
}

/* Bytes of the area covering the extended components in mask, for an area of the given form. */
static size_t extent(const struct xsave_layout *l, uint64_t xcomp_bv, uint64_t mask)
{
	size_t end = XSAVE_EXT_OFFSET;
	for (unsigned int i = FIRST_EXT; i <= LAST_EXT; i++)
		if (has(mask, i))
			end = MAX(end, component_end(l, xcomp_bv, i));
	return end;
}

size_t xsave_area_size(const struct xsave_layout *l, uint64_t rfbm, bool compacted)
{
	return extent(l, compacted ? (rfbm | XSAVE_COMPACTED) : 0, rfbm);
}

/* True if every component in mask is known and lies inside KVM's image. */
static bool fits_kvm(const struct xsave_layout *l, uint64_t mask, size_t kvm_len)
{
	if (mask & ~l->known & ~(1ULL << 63))
		return false;
	return kvm_len >= XSAVE_EXT_OFFSET && extent(l, 0, mask) <= kvm_len;
}

int xsave_save(const struct xsave_layout *l, const uint8_t *kvm, size_t kvm_len, uint64_t rfbm, bool compacted,
	       uint8_t *area, size_t area_len)
{
	if (!fits_kvm(l, rfbm, kvm_len) || area_len < xsave_area_size(l, rfbm, compacted))
		return -ERANGE;
	uint64_t xinuse = get64(kvm + XSAVE_HDR_OFFSET);
	/* XSAVE/XSAVEOPT store what is in rfbm; XSAVEC skips components in their initial state. */
	uint64_t store = compacted ? (rfbm & xinuse) : rfbm;
	/*
	 * XINUSE[1] tracks only the XMM registers: XSAVEC also saves SSE state (and sets
	 * XSTATE_BV[1]) when RFBM[1] = 1 and MXCSR is not 1F80H (SDM vol. 2, XSAVEC Operation).
	 */
	if (compacted && has(rfbm, XFEATURE_SSE) && get32(kvm + LEG_MXCSR) != MXCSR_INIT)
		store |= XFEATURE_MASK_SSE;

	if (has(store, XFEATURE_FP)) {
		memcpy(area, kvm, LEG_X87_HEAD_END);
		memcpy(area + LEG_ST, kvm + LEG_ST, LEG_ST_END - LEG_ST);
	}
	if (has(store, XFEATURE_SSE))
		memcpy(area + LEG_XMM, kvm + LEG_XMM, LEG_XMM_END - LEG_XMM);
	/*
	 * MXCSR and its mask: XSAVE/XSAVEOPT store them if RFBM[1] or RFBM[2], in use or not;
	 * for XSAVEC they are part of SSE state and RFBM[2] plays no part (SDM vol. 1, 13.10).
	 */
	if (compacted ? has(store, XFEATURE_SSE) : (rfbm & MASK_MXCSR_USERS) != 0)
		memcpy(area + LEG_MXCSR, kvm + LEG_MXCSR, 8);

	uint64_t xcomp_bv = rfbm | XSAVE_COMPACTED;
	for (unsigned int i = FIRST_EXT; i <= LAST_EXT; i++) {
		if (!has(store, i))
			continue;
		size_t dst = compacted ? xsave_compacted_offset(l, xcomp_bv, i) : l->offset[i];
		memcpy(area + dst, kvm + l->offset[i], l->size[i]);
	}

	uint8_t *hdr = area + XSAVE_HDR_OFFSET;
	if (compacted) {
		put64(hdr, store); /* RFBM & XINUSE, plus SSE as above */
		put64(hdr + 8, xcomp_bv);
	} else {
		/* Only XSTATE_BV, and only its bits in rfbm; the rest of the header is untouched. */
		put64(hdr, (get64(hdr) & ~rfbm) | (xinuse & rfbm));
	}
	return 0;
}

int xsave_restore_check(const struct xsave_layout *l, const uint8_t hdr[XSAVE_HDR_SIZE], uint64_t xcr0,
			uint64_t rfbm, bool compacted_ok, size_t *need)
{
	uint64_t xstate_bv = get64(hdr), xcomp_bv = get64(hdr + 8);
	if (xcomp_bv & XSAVE_COMPACTED) {
		uint64_t comp = xcomp_bv & ~XSAVE_COMPACTED;
		if (!compacted_ok || (comp & ~xcr0) || (xstate_bv & ~comp) || !all_zero(hdr + 16, XSAVE_HDR_SIZE - 16))
			return -EINVAL;
		if (comp & ~l->known)
			return -ERANGE;
	} else {
		if ((xstate_bv & ~xcr0) || !all_zero(hdr + 8, 16))
			return -EINVAL;
		if (xstate_bv & ~l->known)
			return -ERANGE;
	}
	*need = extent(l, xcomp_bv, rfbm & xstate_bv);
	return 0;
}

int xsave_restore_copy_area(const struct xsave_layout *l, uint64_t xcr0, uint64_t rfbm, bool compacted_ok,
			    xsave_area_reader read, void *ctx, uint8_t **area, size_t *len)
{
	uint8_t head[XSAVE_EXT_OFFSET];
	int rc = read(ctx, 0, head, sizeof(head));
	if (rc)
		return rc;
	size_t need;
	rc = xsave_restore_check(l, head + XSAVE_HDR_OFFSET, xcr0, rfbm, compacted_ok, &need);
	if (rc)
		return rc;
	need = MAX(need, sizeof(head));
	uint8_t *copy = malloc(need);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, head, sizeof(head));
	rc = need > sizeof(head) ? read(ctx, sizeof(head), copy + sizeof(head), need - sizeof(head)) : 0;
	if (rc) {
		free(copy);
		return rc;
	}
	*area = copy;
	*len = need;
	return 0;
}

int xsave_restore(const struct xsave_layout *l, const uint8_t *area, size_t area_len, uint64_t rfbm, uint8_t *kvm,
		  size_t kvm_len)
{
	const uint8_t *hdr = area + XSAVE_HDR_OFFSET;
	if (area_len < XSAVE_EXT_OFFSET || !fits_kvm(l, rfbm, kvm_len))
		return -ERANGE;
	uint64_t xstate_bv = get64(hdr), xcomp_bv = get64(hdr + 8);
	bool compacted = xcomp_bv & XSAVE_COMPACTED;
	uint64_t load = rfbm & xstate_bv;
	if (extent(l, xcomp_bv, load) > area_len)
		return -ERANGE;

	/* MXCSR first: a reserved bit set makes the whole instruction fault with nothing changed. */
	uint32_t mask = get32(kvm + LEG_MXCSR_MASK);
	if (mask == 0)
		mask = MXCSR_MASK_DEFAULT;
	/*
	 * The standard form loads MXCSR from memory if RFBM[1] or RFBM[2]. The compacted form
	 * treats it as part of SSE state: loaded if RFBM[1] = XSTATE_BV[1] = 1, set to 1F80H if
	 * RFBM[1] = 1 and XSTATE_BV[1] = 0, RFBM[2] not considered (SDM vol. 1, 13.8.2).
	 */
	bool mxcsr_set = compacted ? has(rfbm, XFEATURE_SSE) : (rfbm & MASK_MXCSR_USERS) != 0;
	uint32_t mxcsr = MXCSR_INIT;
	if (mxcsr_set && (!compacted || has(load, XFEATURE_SSE)))
		mxcsr = get32(area + LEG_MXCSR);
	if (mxcsr_set && (mxcsr & ~mask))
		return -EINVAL;

	if (has(rfbm, XFEATURE_FP)) {
		if (has(load, XFEATURE_FP)) {
			memcpy(kvm, area, LEG_X87_HEAD_END);
			memcpy(kvm + LEG_ST, area + LEG_ST, LEG_ST_END - LEG_ST);
		} else {
			memset(kvm, 0, LEG_X87_HEAD_END);
			memset(kvm + LEG_ST, 0, LEG_ST_END - LEG_ST);
			kvm[LEG_FCW] = FCW_INIT & 0xff;
			kvm[LEG_FCW + 1] = FCW_INIT >> 8;
		}
	}
	if (has(rfbm, XFEATURE_SSE)) {
		if (has(load, XFEATURE_SSE))
			memcpy(kvm + LEG_XMM, area + LEG_XMM, LEG_XMM_END - LEG_XMM);
		else
			memset(kvm + LEG_XMM, 0, LEG_XMM_END - LEG_XMM);
	}
	if (mxcsr_set)
		put32(kvm + LEG_MXCSR, mxcsr);
	for (unsigned int i = FIRST_EXT; i <= LAST_EXT; i++) {
		if (!has(rfbm, i))
			continue;
		uint8_t *dst = kvm + l->offset[i];
		if (has(load, i))
			memcpy(dst, area + (compacted ? xsave_compacted_offset(l, xcomp_bv, i) : l->offset[i]), l->size[i]);
		else
			memset(dst, 0, l->size[i]);
	}

	/*
	 * KVM's header: a component in its initial state may be marked in use with its initial
	 * values written, which is the same state. FP and SSE stay marked when restored so KVM
	 * takes the legacy region and MXCSR as written here.
	 */
	uint64_t bv = get64(kvm + XSAVE_HDR_OFFSET);
	bv = (bv & ~rfbm) | load;
	if (rfbm & XFEATURE_MASK_FP)
		bv |= XFEATURE_MASK_FP;
	if (mxcsr_set)
		bv |= XFEATURE_MASK_SSE;
	put64(kvm + XSAVE_HDR_OFFSET, bv);
	return 0;
}
