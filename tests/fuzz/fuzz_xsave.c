/*
 * libFuzzer target: the XSAVE-family image code the instruction emulation uses
 * (src/arch/x86/xsave_image.c): a layout from a fuzzed CPUID leaf 0xD, then XRSTOR's header
 * checks and load from a fuzzed guest area into KVM's image, and XSAVE/XSAVEC back out.
 * Input: [0] entries (mod 9), 8 bytes each (component, size, offset, flags); XCR0 and RFBM
 * (8 bytes each); one flags byte; then the guest's XSAVE area.
 * Build and run: make fuzz && build/fuzz/fuzz_xsave tests/fuzz/corpus_xsave
 */
#include <linux/kvm.h>
#include <string.h>

#include "arch/x86/xsave_image.h"
#include "fuzz_common.h"

#define KVM_IMAGE 4096   /* struct kvm_xsave's region */
#define AREA_MAX 0x10000 /* the most the target builds; larger layouts are skipped */
#define ENTRY_BYTES 8

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned int n = data[0] % 9;
	size_t fixed = 1 + n * ENTRY_BYTES + 17;
	if (size < fixed)
		return 0;
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[8];
	} t;
	memset(&t, 0, sizeof(t));
	t.hdr.nent = n;
	const uint8_t *p = data + 1;
	for (unsigned int i = 0; i < n; i++, p += ENTRY_BYTES) {
		t.e[i].function = p[0] & 0x80 ? 0x7 : 0xd; /* now and then another leaf */
		t.e[i].index = p[0] & 0x3f;
		t.e[i].eax = (uint32_t)(p[1] | p[2] << 8 | (p[3] & 0x7f) << 16);
		t.e[i].ebx = (uint32_t)(p[4] | p[5] << 8 | p[6] << 16);
		t.e[i].ecx = p[7];
	}
	uint64_t xcr0, rfbm;
	memcpy(&xcr0, p, 8);
	memcpy(&rfbm, p + 8, 8);
	uint8_t flags = p[16];
	const uint8_t *area = p + 17;
	size_t area_len = size - fixed;

	struct xsave_layout l;
	xsave_layout_from_cpuid(&t.hdr, &l);

	static uint8_t kvm[KVM_IMAGE];
	memset(kvm, 0, sizeof(kvm));
	if (area_len >= XSAVE_HDR_OFFSET + XSAVE_HDR_SIZE) {
		size_t need = 0;
		if (xsave_restore_check(&l, area + XSAVE_HDR_OFFSET, xcr0, rfbm, flags & 1, &need) == 0 &&
		    need <= area_len)
			(void)xsave_restore(&l, area, area_len, rfbm, kvm, sizeof(kvm));
	}

	bool compacted = flags & 2;
	size_t out_len = xsave_area_size(&l, rfbm, compacted);
	if (out_len < XSAVE_LEGACY_SIZE + XSAVE_HDR_SIZE || out_len > AREA_MAX)
		return 0;
	uint8_t *out = calloc(1, out_len);
	fuzz_check(out != NULL, "calloc");
	(void)xsave_save(&l, kvm, sizeof(kvm), rfbm, compacted, out, out_len);
	free(out);
	return 0;
}
