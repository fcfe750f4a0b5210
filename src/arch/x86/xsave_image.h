/*
 * The XSAVE area as the CPU lays it out (Intel SDM vol. 1, chapter 13), for emulating
 * XSAVE, XSAVEOPT, XSAVEC and XRSTOR on hosts whose KVM cannot run them at CPL0.
 *
 * Two images take part: KVM's (KVM_GET_XSAVE / KVM_SET_XSAVE, always the standard format with
 * the host CPU's component offsets) and the guest's area in guest memory (standard or compacted
 * format). Everything here is pure byte shuffling with the architectural rules, so it can be
 * tested without a VM; emulate.c does the register and memory access around it.
 */
#ifndef VMON_ARCH_X86_XSAVE_IMAGE_H
#define VMON_ARCH_X86_XSAVE_IMAGE_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XSAVE_LEGACY_SIZE 512 /* the FXSAVE-format region: x87, MXCSR, XMM0-15 */
#define XSAVE_HDR_OFFSET 512
#define XSAVE_HDR_SIZE 64     /* XSTATE_BV, XCOMP_BV, reserved */
#define XSAVE_EXT_OFFSET 576  /* where the first extended component starts in compacted form */
#define XSAVE_ALIGN 64        /* an XSAVE area must be 64-byte aligned (#GP otherwise) */
#define XSAVE_COMPACTED (1ULL << 63) /* XCOMP_BV bit 63: the area is in compacted format */

#define XFEATURE_FP 0
#define XFEATURE_SSE 1
#define XFEATURE_YMM 2
#define XFEATURE_MASK_FP (1ULL << XFEATURE_FP)
#define XFEATURE_MASK_SSE (1ULL << XFEATURE_SSE)
#define XFEATURE_MASK_YMM (1ULL << XFEATURE_YMM)

/* Where each state component lives, from CPUID leaf 0xD of the CPU KVM's image comes from. */
struct xsave_layout {
	uint64_t known;       /* components with an offset and size below (FP and SSE always) */
	uint64_t align64;     /* components 64-byte aligned in compacted form (0xD.i ECX bit 1) */
	uint32_t offset[63];  /* standard-format offset, components 2..62 */
	uint32_t size[63];
};

/* Fills the layout from CPUID leaf 0xD subleaves 2..62 of table (KVM_GET_SUPPORTED_CPUID). */
void xsave_layout_from_cpuid(const struct kvm_cpuid2 *table, struct xsave_layout *l);

/* Bytes from the start of the area that a save with this RFBM writes (standard or compacted). */
size_t xsave_area_size(const struct xsave_layout *l, uint64_t rfbm, bool compacted);

/*
 * Offset of component i (>= 2) in a compacted area whose XCOMP_BV is xcomp_bv: the components
 * in XCOMP_BV are packed in order from byte 576, each 64-byte aligned if its CPUID says so.
 */
size_t xsave_compacted_offset(const struct xsave_layout *l, uint64_t xcomp_bv, unsigned int i);

/*
 * XSAVE / XSAVEOPT (compacted false) or XSAVEC (compacted true): writes the state of the
 * components in rfbm from KVM's image kvm (kvm_len bytes, XSTATE_BV in its header telling which
 * components are in use) into the guest's area image (area_len >= xsave_area_size(), read from
 * guest memory first: the bytes the instruction leaves alone keep their value).
 * Returns 0, or -ERANGE if a component in rfbm is unknown or outside KVM's image.
 */
int xsave_save(const struct xsave_layout *l, const uint8_t *kvm, size_t kvm_len, uint64_t rfbm, bool compacted,
	       uint8_t *area, size_t area_len);

/*
 * The checks XRSTOR makes on the area's header before touching any state (alignment is the
 * caller's). xcr0 is the guest's XCR0; compacted_ok says whether the CPU the guest was told
 * about has XSAVEC (else a compacted area is #GP). On success *need is how many bytes of the
 * area xsave_restore() reads. Returns 0 or -EINVAL where the CPU raises #GP.
 */
int xsave_restore_check(const struct xsave_layout *l, const uint8_t hdr[XSAVE_HDR_SIZE], uint64_t xcr0,
			uint64_t rfbm, bool compacted_ok, size_t *need);

/* Reads len bytes at offset from the start of the guest's area; returns 0 or non-zero. */
typedef int (*xsave_area_reader)(void *ctx, size_t offset, void *buf, size_t len);

/*
 * Copies the area XRSTOR reads, reading each byte of guest memory once: the legacy region and
 * header first, checked with xsave_restore_check(), then the rest of what that header says
 * xsave_restore() needs. The checks and the restore then use only this copy, so another vCPU
 * rewriting the header in between changes nothing. On success *area (malloc'ed, *len bytes,
 * at least XSAVE_EXT_OFFSET) holds the copy. Returns 0, -EINVAL where the CPU raises #GP,
 * -ERANGE for a component vmon does not know, -ENOMEM, or read's non-zero value.
 */
int xsave_restore_copy_area(const struct xsave_layout *l, uint64_t xcr0, uint64_t rfbm, bool compacted_ok,
			    xsave_area_reader read, void *ctx, uint8_t **area, size_t *len);

/*
 * XRSTOR: loads the components in rfbm from the guest's area (standard or compacted, as its
 * header says; xsave_restore_check() passed) into KVM's image: components whose XSTATE_BV bit
 * is clear get their initial state, MXCSR is loaded (and checked against MXCSR_MASK) as the
 * CPU does, components outside rfbm stay as they are.
 * Returns 0, -EINVAL for a #GP (reserved MXCSR bits), or -ERANGE if a component is unknown.
 */
int xsave_restore(const struct xsave_layout *l, const uint8_t *area, size_t area_len, uint64_t rfbm,
		  uint8_t *kvm, size_t kvm_len);

#endif
