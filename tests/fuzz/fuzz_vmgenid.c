/*
 * libFuzzer target: the VM generation ID's snapshot state (devices/vmgenid.c), which comes from
 * a snapshot file vmon does not control. A blob it accepts must save back to the same bytes and
 * load again.
 * Build and run: make fuzz && build/fuzz/fuzz_vmgenid tests/fuzz/corpus_vmgenid
 */
#include <string.h>

#include "arch/x86/layout.h"
#include "devices/vmgenid.h"
#include "fuzz_common.h"
#include "lib/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	log_set_level(LOG_ERROR);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmgenid g;
	vmgenid_init(&g, LAYOUT_VMGENID, (struct irq_line){ 0 });
	g.present = false;
	if (vmgenid_load(&g, data, size) != 0) {
		fuzz_check(!g.present, "a refused blob made the device present");
		return 0;
	}
	fuzz_check(g.present && g.gpa == LAYOUT_VMGENID, "an accepted blob moved the buffer");
	uint8_t out[256];
	long n = vmgenid_save(&g, out, sizeof(out));
	fuzz_check(n > 0 && (size_t)n == size && !memcmp(out, data, size), "save does not give back what was loaded");
	struct vmgenid h;
	vmgenid_init(&h, LAYOUT_VMGENID, (struct irq_line){ 0 });
	fuzz_check(vmgenid_load(&h, out, (size_t)n) == 0 && !memcmp(h.id, g.id, VMGENID_LEN), "the saved state does not load");
	return 0;
}
