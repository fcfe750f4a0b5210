/*
 * The XSAVE family against the real /dev/kvm: a CPL0 guest enables XSAVE, saves its registers
 * with XSAVE and XSAVEC, loads others with XRSTOR and saves again. Hardware runs these itself;
 * a host whose emulator fails on them gets vmon's emulation. Either way the guest's memory and
 * registers must come out as the architecture says.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cpuid.h>
#include <stdlib.h>

#include "arch/x86/xsave_image.h"

#include "emulate_harness.h"

#define AREA1 0xd000ULL /* xsave of the starting registers */
#define AREA2 0xd400ULL /* xsavec of the same */
#define AREA3 0xe000ULL /* what xrstor loads */
#define AREA4 0xe400ULL /* xsave after the xrstor */
#define UD_HANDLER (PROBE_VM_KCODE + 0x800)
#define GP_HANDLER (PROBE_VM_KCODE + 0x900)

/* Slots: 0 = XCR0 to set, 1 = run xsavec, 2 = #UD count, 3 = #GP count. */
__asm__(".pushsection .rodata\n" BLOB(t_xs)
	"  mov %cr4, %rax\n or $0x40000, %rax\n mov %rax, %cr4\n"
	"  xor %ecx, %ecx\n mov " KDATA(0) ", %eax\n xor %edx, %edx\n xsetbv\n"
	"  mov $-1, %eax\n mov $-1, %edx\n mov $" STR(AREA1) ", %edi\n xsave64 (%rdi)\n"
	"  cmpq $0, " KDATA(1) "\n je 1f\n"
	"  mov $-1, %eax\n mov $-1, %edx\n mov $" STR(AREA2) ", %edi\n xsavec64 (%rdi)\n"
	"1:\n"
	"  mov $-1, %eax\n mov $-1, %edx\n mov $" STR(AREA3) ", %edi\n xrstor64 (%rdi)\n"
	"  mov $-1, %eax\n mov $-1, %edx\n mov $" STR(AREA4) ", %edi\n xsave64 (%rdi)\n"
	"  hlt\n"
	BLOB_END(t_xs)
	/* Faults: each faulting instruction below is 4 bytes (REX.W 0F AE /m). */
	BLOB(t_xsf)
	"  mov $-1, %eax\n mov $-1, %edx\n mov $" STR(AREA1) ", %edi\n"
	"  xsave64 (%rdi)\n"                             /* CR4.OSXSAVE clear: #UD */
	"  mov %cr4, %rax\n or $0x40000, %rax\n mov %rax, %cr4\n"
	"  xor %ecx, %ecx\n mov $3, %eax\n xor %edx, %edx\n xsetbv\n"
	"  mov $-1, %eax\n mov $-1, %edx\n mov $" STR(AREA1) "+16, %edi\n"
	"  xsave64 (%rdi)\n"                             /* not 64-byte aligned: #GP */
	"  mov $" STR(AREA3) ", %edi\n"
	"  xrstor64 (%rdi)\n"                            /* header bytes 8..23 not zero: #GP */
	"  hlt\n"
	BLOB_END(t_xsf)
	BLOB(t_xs_ud)
	"  incq " KDATA(2) "\n addq $4, (%rsp)\n iretq\n"
	BLOB_END(t_xs_ud)
	BLOB(t_xs_gp)
	"  incq " KDATA(3) "\n add $8, %rsp\n addq $4, (%rsp)\n iretq\n"
	BLOB_END(t_xs_gp) ".popsection\n");
PROBE_BLOB(t_xs);
PROBE_BLOB(t_xsf);
PROBE_BLOB(t_xs_ud);
PROBE_BLOB(t_xs_gp);

/* KVM's CPUID with XSAVE advertised; returns the XCR0 it allows (0 if no usable XSAVE). */
static uint64_t give_xsave(struct harness *h, struct xsave_layout *layout)
{
	struct kvm_cpuid2 *c = probe_vm_supported_cpuid(h->kvm_fd);
	assert_non_null(c);
	uint64_t xcr0 = 0;
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function == 1)
			e->ecx |= 1u << 26;
		if (e->function == 0xd && e->index == 0)
			xcr0 = e->eax | ((uint64_t)e->edx << 32);
	}
	xsave_layout_from_cpuid(c, layout);
	assert_int_equal(probe_vm_set_cpuid(&h->pv, c), 0);
	free(c);
	return (xcr0 & 3) == 3 ? xcr0 & 7 : 0;
}

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + 7 * i);
}

static void read_area(struct harness *h, uint64_t gpa, uint8_t *buf, size_t len)
{
	assert_int_equal(guest_mem_read(&h->pv.mem, gpa, buf, len), 0);
}

static uint64_t u64_at(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static bool cpu_has_xsavec(void)
{
	unsigned int a, b, c, d;
	return __get_cpuid_count(0xd, 1, &a, &b, &c, &d) && (a & 2);
}

static void test_xsave_xsavec_xrstor(void **state)
{
	(void)state;
	struct harness h;
	harness_init(&h);
	struct xsave_layout l;
	uint64_t xcr0 = give_xsave(&h, &l);
	if (!xcr0) {
		print_message("KVM offers no XSAVE with SSE; skipped\n");
		harness_destroy(&h);
		skip();
	}
	bool ymm = xcr0 & XFEATURE_MASK_YMM;
	size_t ymm_off = ymm ? l.offset[2] : 0;

	/* The starting registers: XMM0-15 and the upper YMM halves, written through KVM. */
	struct kvm_xsave xs;
	assert_int_equal(ioctl(h.pv.vcpu_fd, KVM_GET_XSAVE, &xs), 0);
	uint8_t *img = (uint8_t *)xs.region;
	fill(img + 160, 256, 0x11);
	uint64_t bv = u64_at(img + 512) | XFEATURE_MASK_SSE;
	if (ymm) {
		fill(img + ymm_off, 256, 0x55);
		bv |= XFEATURE_MASK_YMM;
	}
	memcpy(img + 512, &bv, 8);
	assert_int_equal(ioctl(h.pv.vcpu_fd, KVM_SET_XSAVE, &xs), 0);

	/* What XRSTOR loads: other values, standard format. */
	uint8_t a3[1024];
	memset(a3, 0, sizeof(a3));
	uint16_t fcw = 0x27f;
	uint32_t mxcsr = 0x1f80;
	memcpy(a3, &fcw, 2);
	memcpy(a3 + 24, &mxcsr, 4);
	fill(a3 + 160, 256, 0x99);
	uint64_t bv3 = XFEATURE_MASK_FP | XFEATURE_MASK_SSE;
	if (ymm) {
		fill(a3 + ymm_off, 256, 0xc3);
		bv3 |= XFEATURE_MASK_YMM;
	}
	memcpy(a3 + 512, &bv3, 8);
	assert_int_equal(guest_mem_write(&h.pv.mem, AREA3, a3, sizeof(a3)), 0);

	uint64_t slots[2] = { xcr0, cpu_has_xsavec() };
	assert_int_equal(guest_mem_write(&h.pv.mem, PROBE_VM_KDATA, slots, sizeof(slots)), 0);
	load(&h, PROBE_VM_KCODE, t_xs_start, t_xs_end);
	assert_int_equal(harness_run(&h), KVM_EXIT_HLT);

	uint8_t area[1024], want[256];
	/* XSAVE: the starting registers, in use, at their standard places. */
	read_area(&h, AREA1, area, sizeof(area));
	fill(want, 256, 0x11);
	assert_memory_equal(area + 160, want, 256);
	assert_int_equal(u64_at(area + 512) & XFEATURE_MASK_SSE, XFEATURE_MASK_SSE);
	if (ymm) {
		fill(want, 256, 0x55);
		assert_memory_equal(area + ymm_off, want, 256);
		assert_int_equal(u64_at(area + 512) & XFEATURE_MASK_YMM, XFEATURE_MASK_YMM);
	}
	/* XSAVEC: compacted, XCOMP_BV = RFBM with bit 63, the first extended component at 576. */
	if (slots[1]) {
		read_area(&h, AREA2, area, sizeof(area));
		assert_int_equal(u64_at(area + 520), xcr0 | XSAVE_COMPACTED);
		fill(want, 256, 0x11);
		assert_memory_equal(area + 160, want, 256);
		if (ymm) {
			fill(want, 256, 0x55);
			assert_memory_equal(area + XSAVE_EXT_OFFSET, want, 256);
		}
	} else {
		print_message("CPU has no XSAVEC; that part skipped\n");
	}
	/* XRSTOR loaded AREA3: the XSAVE after it shows those values, and so does KVM. */
	read_area(&h, AREA4, area, sizeof(area));
	assert_memory_equal(area + 160, a3 + 160, 256);
	assert_int_equal(area[0] | (area[1] << 8), 0x27f);
	assert_int_equal(ioctl(h.pv.vcpu_fd, KVM_GET_XSAVE, &xs), 0);
	assert_memory_equal(img + 160, a3 + 160, 256);
	if (ymm) {
		assert_memory_equal(area + ymm_off, a3 + ymm_off, 256);
		assert_memory_equal(img + ymm_off, a3 + ymm_off, 256);
	}
	if (h.failures) {
		assert_int_equal(x86_emul_get(&h.vcpu, X86_EMUL_XSAVE), slots[1] ? 3 : 2);
		assert_int_equal(x86_emul_get(&h.vcpu, X86_EMUL_XRSTOR), 1);
	} else {
		print_message("host ran the XSAVE family itself; emulation not exercised\n");
	}
	harness_destroy(&h);
}

static void test_xsave_faults(void **state)
{
	(void)state;
	struct harness h;
	harness_init(&h);
	struct xsave_layout l;
	if (!give_xsave(&h, &l)) {
		harness_destroy(&h);
		skip();
	}
	uint8_t a3[576];
	memset(a3, 0, sizeof(a3));
	a3[512 + 8] = 1; /* XCOMP_BV = 1: standard form with a reserved header byte set */
	assert_int_equal(guest_mem_write(&h.pv.mem, AREA3, a3, sizeof(a3)), 0);
	load(&h, PROBE_VM_KCODE, t_xsf_start, t_xsf_end);
	load(&h, UD_HANDLER, t_xs_ud_start, t_xs_ud_end);
	load(&h, GP_HANDLER, t_xs_gp_start, t_xs_gp_end);
	assert_int_equal(probe_vm_set_gate(&h.pv, 6, UD_HANDLER, 0), 0);
	assert_int_equal(probe_vm_set_gate(&h.pv, 13, GP_HANDLER, 0), 0);
	assert_int_equal(harness_run(&h), KVM_EXIT_HLT);
	assert_int_equal(kdata(&h, 2), 1); /* #UD without CR4.OSXSAVE */
	assert_int_equal(kdata(&h, 3), 2); /* #GP: misaligned area, bad header */
	harness_destroy(&h);
}

/*
 * XRSTOR against a racing vCPU, without KVM: guest memory whose header turns bad as soon as
 * it has been read once (another vCPU rewriting it between the checks and the restore).
 */
struct racing_area {
	uint8_t mem[1024];
	unsigned int reads;
	size_t bytes_read[1024]; /* how often each byte was read */
};

static int racing_read(void *ctx, size_t offset, void *buf, size_t len)
{
	struct racing_area *r = ctx;
	assert_true(offset + len <= sizeof(r->mem));
	memcpy(buf, r->mem + offset, len);
	for (size_t i = 0; i < len; i++)
		r->bytes_read[offset + i]++;
	r->reads++;
	/* The other vCPU: a reserved header byte set, and XSTATE_BV beyond XCR0. */
	r->mem[XSAVE_HDR_OFFSET + 8] = 1;
	r->mem[XSAVE_HDR_OFFSET + 7] = 0x80;
	return 0;
}

static void racing_layout(struct xsave_layout *l)
{
	memset(l, 0, sizeof(*l));
	l->known = XFEATURE_MASK_FP | XFEATURE_MASK_SSE | XFEATURE_MASK_YMM;
	l->offset[2] = 576;
	l->size[2] = 256;
}

static void test_xrstor_reads_guest_area_once(void **state)
{
	(void)state;
	struct xsave_layout l;
	racing_layout(&l);
	const uint64_t xcr0 = 7, bv = 7;
	struct racing_area r;
	memset(&r, 0, sizeof(r));
	fill(r.mem + 160, 256, 0x21);
	fill(r.mem + 576, 256, 0x42);
	uint32_t mxcsr = 0x1f80;
	memcpy(r.mem + 24, &mxcsr, 4);
	memcpy(r.mem + XSAVE_HDR_OFFSET, &bv, 8);
	uint8_t checked_hdr[XSAVE_HDR_SIZE];
	memcpy(checked_hdr, r.mem + XSAVE_HDR_OFFSET, sizeof(checked_hdr));

	uint8_t *area = NULL;
	size_t len = 0;
	assert_int_equal(xsave_restore_copy_area(&l, xcr0, xcr0, false, racing_read, &r, &area, &len), 0);
	assert_int_equal(len, 576 + 256);
	/* every byte came from guest memory exactly once ... */
	for (size_t i = 0; i < len; i++)
		assert_int_equal(r.bytes_read[i], 1);
	/* ... and the copy holds the header that passed the checks, not what the guest wrote later */
	assert_memory_equal(area + XSAVE_HDR_OFFSET, checked_hdr, sizeof(checked_hdr));
	assert_int_equal(xsave_restore_check(&l, r.mem + XSAVE_HDR_OFFSET, xcr0, xcr0, false, &(size_t){ 0 }),
			 -EINVAL);
	uint8_t kvm[4096];
	memset(kvm, 0, sizeof(kvm));
	assert_int_equal(xsave_restore(&l, area, len, xcr0, kvm, sizeof(kvm)), 0);
	assert_memory_equal(kvm + 576, area + 576, 256);
	free(area);
}

static void test_xrstor_bad_header_reads_no_more(void **state)
{
	(void)state;
	struct xsave_layout l;
	racing_layout(&l);
	struct racing_area r;
	memset(&r, 0, sizeof(r));
	r.mem[XSAVE_HDR_OFFSET + 8] = 1; /* XCOMP_BV = 1: a reserved header byte */
	uint8_t *area = NULL;
	size_t len = 0;
	assert_int_equal(xsave_restore_copy_area(&l, 7, 7, false, racing_read, &r, &area, &len), -EINVAL);
	assert_int_equal(r.reads, 1);
	assert_null(area);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_xrstor_reads_guest_area_once),
		cmocka_unit_test(test_xrstor_bad_header_reads_no_more),
		cmocka_unit_test(test_xsave_xsavec_xrstor),
		cmocka_unit_test(test_xsave_faults),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
