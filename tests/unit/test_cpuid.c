#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "arch/x86/cpuid.h"
#include "lib/util.h"

#define B(n) (1u << (n))

/* leaf 1 ECX */
#define SSE3 B(0)
#define SSSE3 B(9)
#define CX16 B(13)
#define SSE4_2 B(20)
#define POPCNT B(23)
#define XSAVE B(26)
#define AVX B(28)
#define RDRAND B(30)
#define HYPERVISOR B(31)
/* leaf 1 EDX */
#define SSE2 B(26)
#define HTT B(28)
/* leaf 7 */
#define FSGSBASE B(0)
#define AVX2 B(5)
#define ERMS B(9)
#define AVX512F B(16)
#define SMAP B(20)
#define FSRM B(4)
/* leaf 0x40000001 EAX */
#define PV_CLOCKSOURCE B(0)
#define PV_CLOCKSOURCE2 B(3)
#define PV_UNHALT B(7)
#define PV_TLB_FLUSH B(9)
#define PV_SEND_IPI B(11)
#define PV_SCHED_YIELD B(13)
#define PV_STABLE B(24)

static void vendor(struct kvm_cpuid_entry2 *e, const char *v)
{
	memcpy(&e->ebx, v, 4);
	memcpy(&e->edx, v + 4, 4);
	memcpy(&e->ecx, v + 8, 4);
}

static void add(struct kvm_cpuid2 *t, uint32_t fn, uint32_t idx, bool sig, uint32_t a, uint32_t b, uint32_t c,
		uint32_t d)
{
	t->entries[t->nent++] = (struct kvm_cpuid_entry2){
		.function = fn, .index = idx, .flags = sig ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0,
		.eax = a, .ebx = b, .ecx = c, .edx = d,
	};
}

/* A table shaped like a hardware Intel host's KVM_GET_SUPPORTED_CPUID. */
static struct kvm_cpuid2 *intel_supported(void)
{
	struct kvm_cpuid2 *t = calloc(1, sizeof(*t) + 64 * sizeof(t->entries[0]));
	add(t, 0, 0, false, 0x1f, 0, 0, 0);
	vendor(&t->entries[0], "GenuineIntel");
	add(t, 1, 0, false, 0x000806f8, 0x00000800, SSE3 | SSSE3 | CX16 | SSE4_2 | POPCNT | XSAVE | AVX | RDRAND,
	    SSE2 | B(0));
	/* Leaf 4 as the host has it: 56 cores, L1d/L1i/L2 per core pair, L3 shared by 112. */
	add(t, 4, 0, true, 0xdc004121, 0x02c0003f, 0x3f, 0);
	add(t, 4, 1, true, 0xdc004122, 0x01c0003f, 0x3f, 0);
	add(t, 4, 2, true, 0xdc004143, 0x03c0003f, 0x7ff, 0);
	add(t, 4, 3, true, 0xdc1bc163, 0x03c0003f, 0xbfff, 4);
	add(t, 4, 4, true, 0, 0, 0, 0);
	add(t, 7, 0, true, 1, FSGSBASE | AVX2 | ERMS | AVX512F | SMAP, 0, FSRM);
	add(t, 7, 1, true, B(4), 0, 0, 0);
	add(t, 0xb, 0, true, 1, 2, 0x100, 0);
	add(t, 0xb, 1, true, 7, 112, 0x201, 0);
	add(t, 0xd, 0, true, 0xe7, 0xa80, 0xa80, 0);
	add(t, 0xd, 1, true, 0xf, 0, 0, 0);
	add(t, 0x40000000, 0, false, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d);
	add(t, 0x40000001, 0, false,
	    PV_CLOCKSOURCE | PV_CLOCKSOURCE2 | PV_UNHALT | PV_TLB_FLUSH | PV_SEND_IPI | PV_SCHED_YIELD | PV_STABLE, 0, 0,
	    0);
	add(t, 0x80000000, 0, false, 0x80000008, 0, 0, 0);
	add(t, 0x80000001, 0, false, 0, 0, 0x121, 0x2c100800);
	add(t, 0x80000008, 0, false, 0x3030, 0, 0, 0);
	return t;
}

static struct kvm_cpuid2 *amd_supported(void)
{
	struct kvm_cpuid2 *t = calloc(1, sizeof(*t) + 64 * sizeof(t->entries[0]));
	add(t, 0, 0, false, 0x10, 0, 0, 0);
	vendor(&t->entries[0], "AuthenticAMD");
	add(t, 1, 0, false, 0x00a00f11, 0x00000800, SSE3 | CX16 | POPCNT, SSE2);
	add(t, 0x80000000, 0, false, 0x8000001f, 0, 0, 0);
	add(t, 0x80000008, 0, false, 0x3030, 0, 0x0000703f, 0);
	add(t, 0x8000001d, 0, true, 0x00000121, 0x01c0003f, 0x3f, 0);
	add(t, 0x8000001d, 1, true, 0x00000163, 0x03c0003f, 0x7fff, 1);
	add(t, 0x8000001e, 0, false, 0, 0x100, 0, 0);
	return t;
}

static const struct kvm_cpuid_entry2 *get(const struct kvm_cpuid2 *t, uint32_t fn, uint32_t idx)
{
	const struct kvm_cpuid_entry2 *e = cpuid_find_entry(t, fn, idx);
	assert_non_null(e);
	return e;
}

static const struct host_caps hardware = { .probed = true };
static const struct host_caps limited = { .probed = true, .emulator_limited = true, .hypercall_broken = true };

static void test_topology_one_vcpu(void **state)
{
	(void)state;
	struct kvm_cpuid2 *sup = intel_supported();
	struct kvm_cpuid2 *pol = cpuid_policy_build(sup, 1, &hardware);
	assert_non_null(pol);
	struct kvm_cpuid2 *v0 = cpuid_for_vcpu(pol, 0, 1);
	assert_non_null(v0);

	const struct kvm_cpuid_entry2 *l1 = get(v0, 1, 0);
	assert_int_equal((l1->ebx >> 24) & 0xff, 0);
	assert_int_equal((l1->ebx >> 16) & 0xff, 1);
	assert_false(l1->edx & HTT);
	assert_int_equal(l1->ebx & 0xffff, 0x0800); /* CLFLUSH size and brand untouched */

	const struct kvm_cpuid_entry2 *core = get(v0, 0xb, 1);
	assert_int_equal(core->ebx & 0xffff, 1);
	assert_int_equal(core->eax & 0x1f, 0);
	assert_int_equal((core->ecx >> 8) & 0xff, 2);
	/* The host's 56-core leaf 4 would tell the guest it has a big package. */
	assert_int_equal(get(v0, 4, 0)->eax >> 26, 0);
	assert_int_equal((get(v0, 4, 3)->eax >> 14) & 0xfff, 0);
	free(v0);
	free(pol);
	free(sup);
}

static void test_topology_four_vcpus(void **state)
{
	(void)state;
	struct kvm_cpuid2 *sup = intel_supported();
	struct kvm_cpuid2 *pol = cpuid_policy_build(sup, 4, &hardware);
	assert_non_null(pol);
	for (unsigned int id = 0; id < 4; id++) {
		struct kvm_cpuid2 *v = cpuid_for_vcpu(pol, id, 4);
		assert_non_null(v);
		const struct kvm_cpuid_entry2 *l1 = get(v, 1, 0);
		assert_int_equal(l1->ebx >> 24, id);
		assert_int_equal((l1->ebx >> 16) & 0xff, 4);
		assert_true(l1->edx & HTT);

		const struct kvm_cpuid_entry2 *smt = get(v, 0xb, 0), *core = get(v, 0xb, 1), *end = get(v, 0xb, 2);
		assert_int_equal(smt->eax & 0x1f, 0);
		assert_int_equal(smt->ebx & 0xffff, 1);
		assert_int_equal((smt->ecx >> 8) & 0xff, 1);
		assert_int_equal(smt->ecx & 0xff, 0);
		assert_int_equal(core->eax & 0x1f, 2);
		assert_int_equal(core->ebx & 0xffff, 4);
		assert_int_equal((core->ecx >> 8) & 0xff, 2);
		assert_int_equal(core->ecx & 0xff, 1);
		assert_int_equal((end->ecx >> 8) & 0xff, 0);
		assert_int_equal(end->ebx, 0);
		assert_int_equal(smt->edx, id);
		assert_int_equal(core->edx, id);
		assert_int_equal(end->edx, id);

		/* 4 cores per package; L1/L2 private, L3 shared by all four. */
		for (uint32_t sub = 0; sub < 4; sub++)
			assert_int_equal(get(v, 4, sub)->eax >> 26, 3);
		assert_int_equal((get(v, 4, 0)->eax >> 14) & 0xfff, 0);
		assert_int_equal((get(v, 4, 2)->eax >> 14) & 0xfff, 0);
		assert_int_equal((get(v, 4, 3)->eax >> 14) & 0xfff, 3);
		assert_int_equal(get(v, 4, 3)->eax & 0x3fff, 0x0163); /* type and level kept */
		assert_int_equal(get(v, 4, 4)->eax, 0);
		free(v);
	}
	/* The host's two 0xB subleaves were replaced, not kept beside the new ones. */
	unsigned int n0b = 0;
	for (uint32_t i = 0; i < pol->nent; i++)
		n0b += pol->entries[i].function == 0xb;
	assert_int_equal(n0b, 3);

	errno = 0;
	assert_null(cpuid_for_vcpu(pol, 4, 4));
	assert_int_equal(errno, EINVAL);
	free(pol);
	free(sup);
}

static void test_amd_topology(void **state)
{
	(void)state;
	struct kvm_cpuid2 *sup = amd_supported();
	struct kvm_cpuid2 *pol = cpuid_policy_build(sup, 4, &hardware);
	assert_non_null(pol);
	const struct kvm_cpuid_entry2 *e = get(pol, 0x80000008, 0);
	assert_int_equal(e->ecx & 0xff, 3);
	assert_int_equal((e->ecx >> 12) & 0xf, 2);
	assert_int_equal(e->ecx & 0xffff0000u, 0); /* other fields as KVM had them */
	assert_int_equal((get(pol, 0x8000001d, 1)->eax >> 14) & 0xfff, 3);
	assert_int_equal((get(pol, 0x8000001d, 0)->eax >> 14) & 0xfff, 0);
	struct kvm_cpuid2 *v = cpuid_for_vcpu(pol, 2, 4);
	assert_non_null(v);
	assert_int_equal(get(v, 0x8000001e, 0)->eax, 2);
	assert_int_equal(get(v, 0x8000001e, 0)->ebx & 0xffff, 2);
	assert_int_equal(get(v, 1, 0)->ebx >> 24, 2);
	free(v);
	free(pol);
	free(sup);
}

static void test_signature_and_hypervisor_bit(void **state)
{
	(void)state;
	struct kvm_cpuid2 *sup = intel_supported();
	sup->entries[1].ecx &= ~HYPERVISOR;
	/* A KVM that lists no paravirtual leaves still gets the signature. */
	sup->nent -= 5;
	struct kvm_cpuid2 *pol = cpuid_policy_build(sup, 2, NULL);
	assert_non_null(pol);
	assert_true(get(pol, 1, 0)->ecx & HYPERVISOR);
	const struct kvm_cpuid_entry2 *sig = get(pol, 0x40000000, 0);
	char s[12];
	memcpy(s, &sig->ebx, 4);
	memcpy(s + 4, &sig->ecx, 4);
	memcpy(s + 8, &sig->edx, 4);
	assert_memory_equal(s, "KVMKVMKVM\0\0\0", 12);
	assert_true(sig->eax >= 0x40000001);
	assert_non_null(cpuid_find_entry(pol, 0x40000001, 0));
	free(pol);
	free(sup);
}

/* On hardware only topology and signature leaves may differ from what KVM supports. */
static void test_hardware_host_keeps_features(void **state)
{
	(void)state;
	struct kvm_cpuid2 *sup = intel_supported();
	struct kvm_cpuid2 *pol = cpuid_policy_build(sup, 2, &hardware);
	assert_non_null(pol);
	const struct kvm_cpuid_entry2 *l1 = get(pol, 1, 0);
	assert_true(l1->ecx & CX16);
	assert_int_equal(l1->ecx, sup->entries[1].ecx | HYPERVISOR);
	assert_int_equal(get(pol, 0x40000001, 0)->eax, get(sup, 0x40000001, 0)->eax);

	for (uint32_t i = 0; i < sup->nent; i++) {
		const struct kvm_cpuid_entry2 *s = &sup->entries[i];
		if (s->function == 1 || s->function == 4 || s->function == 0xb || s->function == 0x40000000)
			continue;
		const struct kvm_cpuid_entry2 *p = get(pol, s->function, s->index);
		assert_memory_equal(p, s, sizeof(*s));
	}
	free(pol);
	free(sup);
}

static void test_limited_host_clears_features(void **state)
{
	(void)state;
	struct kvm_cpuid2 *sup = intel_supported();
	struct kvm_cpuid2 *pol = cpuid_policy_build(sup, 2, &limited);
	assert_non_null(pol);
	const struct kvm_cpuid_entry2 *l1 = get(pol, 1, 0);
	assert_false(l1->ecx & (CX16 | POPCNT | SSE4_2 | SSSE3 | SSE3 | XSAVE | AVX));
	assert_true(l1->ecx & RDRAND); /* runs fine in the emulator */
	assert_true(l1->edx & SSE2);
	const struct kvm_cpuid_entry2 *l7 = get(pol, 7, 0);
	assert_false(l7->ebx & (FSGSBASE | SMAP | ERMS | AVX2 | AVX512F));
	assert_false(l7->edx & FSRM);
	assert_int_equal(get(pol, 7, 1)->eax, 0);
	assert_int_equal(get(pol, 0xd, 0)->eax, 0);
	assert_int_equal(get(pol, 0xd, 1)->eax, 0);

	uint32_t pv = get(pol, 0x40000001, 0)->eax;
	assert_false(pv & (PV_UNHALT | PV_TLB_FLUSH | PV_SEND_IPI | PV_SCHED_YIELD));
	assert_int_equal(pv, PV_CLOCKSOURCE | PV_CLOCKSOURCE2 | PV_STABLE);
	free(pol);
	free(sup);
}

/* The two workarounds are independent: a host with working VMCALL keeps PV IPIs. */
static void test_hypercall_flag_alone(void **state)
{
	(void)state;
	struct kvm_cpuid2 *sup = intel_supported();
	struct host_caps only_emulator = { .probed = true, .emulator_limited = true };
	struct kvm_cpuid2 *pol = cpuid_policy_build(sup, 1, &only_emulator);
	assert_true(get(pol, 0x40000001, 0)->eax & PV_SEND_IPI);
	free(pol);
	struct host_caps only_hypercall = { .probed = true, .hypercall_broken = true };
	pol = cpuid_policy_build(sup, 1, &only_hypercall);
	assert_false(get(pol, 0x40000001, 0)->eax & PV_SEND_IPI);
	assert_true(get(pol, 1, 0)->ecx & CX16);
	free(pol);
	free(sup);
}

/* KVM on a nested host reported AVX-512 and XSAVE state without XSAVE itself. */
static void test_xsave_dependents_dropped_without_xsave(void **state)
{
	(void)state;
	struct kvm_cpuid2 *sup = intel_supported();
	sup->entries[1].ecx &= ~(XSAVE | AVX);
	struct kvm_cpuid2 *pol = cpuid_policy_build(sup, 1, &hardware);
	assert_false(get(pol, 7, 0)->ebx & (AVX512F | AVX2));
	assert_true(get(pol, 7, 0)->ebx & SMAP);
	assert_int_equal(get(pol, 0xd, 0)->eax, 0);
	free(pol);
	free(sup);
}

/*
 * A host that runs guest user code with its own XCR0: the guest kernel gets XSAVE and leaf 0xD
 * so it saves that state at context switches; XSAVES (not emulated) stays hidden.
 */
static void test_user_xstate_gets_xsave(void **state)
{
	(void)state;
	struct kvm_cpuid2 *sup = intel_supported();
	struct host_caps h = limited;
	h.user_xcr0 = 0xe7;
	struct kvm_cpuid2 *pol = cpuid_policy_build(sup, 1, &h);
	assert_non_null(pol);
	assert_true(get(pol, 1, 0)->ecx & XSAVE);
	assert_false(get(pol, 1, 0)->ecx & (CX16 | POPCNT | AVX));
	assert_int_equal(get(pol, 0xd, 0)->eax, 0xe7);
	assert_int_equal(get(pol, 0xd, 0)->ecx, 0xa80);
	assert_int_equal(get(pol, 0xd, 1)->eax, 0xf & ~B(3));
	free(pol);
	/* User code limited to x87/SSE is no reason to give the kernel XSAVE. */
	h.user_xcr0 = 0x3;
	pol = cpuid_policy_build(sup, 1, &h);
	assert_false(get(pol, 1, 0)->ecx & XSAVE);
	assert_int_equal(get(pol, 0xd, 0)->eax, 0);
	free(pol);
	free(sup);
}

static void test_cmdline_user_xstate(void **state)
{
	(void)state;
	char buf[256];
	struct host_caps h = {
		.leaked_1_ecx = XSAVE | AVX | POPCNT,
		.leaked_7_ebx = AVX2 | AVX512F,
		.user_xcr0 = 0xe7,
	};
	assert_int_equal(cpuid_guest_cmdline_options(&h, buf, sizeof(buf)), 0);
	/* No noxsave, and AVX/AVX-512F stay so the kernel's XCR0 covers them; AVX2 alone can go. */
	assert_string_equal(buf, "clearcpuid=popcnt,avx2");
	/* A component user code cannot reach may still be cleared. */
	h.user_xcr0 = 0x7;
	assert_int_equal(cpuid_guest_cmdline_options(&h, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "clearcpuid=popcnt,avx2,avx512f");
}

static void test_cmdline_measured_list(void **state)
{
	(void)state;
	struct host_caps h = {
		.leaked_1_ecx = 0x76d81203 & ~(B(12) | B(28) | B(29) | B(30) | SSE3),
		.leaked_7_ebx = SMAP | FSGSBASE | B(29) | ERMS | AVX2 | AVX512F,
		.leaked_7_edx = FSRM,
	};
	char buf[256];
	assert_int_equal(cpuid_guest_cmdline_options(&h, buf, sizeof(buf)), 0);
	/* Exactly the list measured to boot Debian's kernel here; avx2/avx512f go with noxsave. */
	assert_string_equal(buf, "clearcpuid=smap,fsgsbase,popcnt,ssse3,sse4_1,sse4_2,pclmulqdq,aes,movbe,sha_ni,"
				 "erms,fsrm noxsave");
}

static void test_cmdline_names(void **state)
{
	(void)state;
	char buf[256];
	struct host_caps none = { .probed = true };
	assert_int_equal(cpuid_guest_cmdline_options(&none, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "");

	struct host_caps xsave_only = { .leaked_1_ecx = XSAVE };
	assert_int_equal(cpuid_guest_cmdline_options(&xsave_only, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "noxsave");

	struct host_caps sse3 = { .leaked_1_ecx = SSE3 | CX16, .leaked_7_ebx = AVX2 };
	assert_int_equal(cpuid_guest_cmdline_options(&sse3, buf, sizeof(buf)), 0);
	/* Linux calls SSE3 "pni"; without noxsave avx2 must be named. */
	assert_string_equal(buf, "clearcpuid=cx16,pni,avx2");

	/* A bit Linux has no name for (1.ECX bit 16 is reserved) is left out. */
	struct host_caps unnamed = { .leaked_1_ecx = B(16) };
	assert_int_equal(cpuid_guest_cmdline_options(&unnamed, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "");
}

static void test_cmdline_fits_kernel_buffer(void **state)
{
	(void)state;
	struct host_caps all = { .leaked_1_ecx = ~0u & ~XSAVE, .leaked_1_edx = ~0u,
				 .leaked_7_ebx = ~0u, .leaked_7_ecx = ~0u, .leaked_7_edx = ~0u };
	char buf[512];
	assert_int_equal(cpuid_guest_cmdline_options(&all, buf, sizeof(buf)), 0);
	assert_true(strncmp(buf, "clearcpuid=smap,fsgsbase,popcnt,", 32) == 0);
	/* Linux 6.1 reads at most 127 characters of the value. */
	assert_true(strlen(buf) - strlen("clearcpuid=") <= 127);
	assert_null(strchr(buf, ' '));
}

static void test_cmdline_enospc(void **state)
{
	(void)state;
	struct host_caps h = { .leaked_1_ecx = POPCNT | XSAVE };
	char buf[16];
	assert_int_equal(cpuid_guest_cmdline_options(&h, buf, sizeof(buf)), -ENOSPC);
	assert_int_equal(cpuid_guest_cmdline_options(&h, buf, 1), -ENOSPC);
	char exact[sizeof("clearcpuid=popcnt noxsave")];
	assert_int_equal(cpuid_guest_cmdline_options(&h, exact, sizeof(exact)), 0);
	assert_string_equal(exact, "clearcpuid=popcnt noxsave");
}

/* Against the real KVM: the table it supports and the policy built from it are accepted. */
static void test_kvm_apply(void **state)
{
	(void)state;
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		skip();
	struct kvm_cpuid2 *sup = cpuid_get_supported(kvm);
	assert_non_null(sup);
	assert_true(sup->nent > 2);
	assert_non_null(cpuid_find_entry(sup, 0, 0));
	assert_non_null(cpuid_find_entry(sup, 1, 0));

	const struct host_caps *hosts[] = { &hardware, &limited };
	for (size_t h = 0; h < ARRAY_SIZE(hosts); h++) {
		int vm = ioctl(kvm, KVM_CREATE_VM, 0);
		assert_true(vm >= 0);
		struct kvm_cpuid2 *pol = cpuid_policy_build(sup, 2, hosts[h]);
		assert_non_null(pol);
		for (unsigned int id = 0; id < 2; id++) {
			int vcpu = ioctl(vm, KVM_CREATE_VCPU, id);
			assert_true(vcpu >= 0);
			assert_int_equal(cpuid_apply_to_vcpu(vcpu, pol, id, 2), 0);

			struct kvm_cpuid2 *back = calloc(1, sizeof(*back) + 256 * sizeof(back->entries[0]));
			back->nent = 256;
			assert_int_equal(ioctl(vcpu, KVM_GET_CPUID2, back), 0);
			const struct kvm_cpuid_entry2 *l1 = get(back, 1, 0);
			assert_int_equal(l1->ebx >> 24, id);
			assert_true(l1->ecx & HYPERVISOR);
			if (hosts[h]->emulator_limited)
				assert_false(l1->ecx & CX16);
			free(back);
			close(vcpu);
		}
		free(pol);
		close(vm);
	}
	free(sup);
	close(kvm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_topology_one_vcpu),
		cmocka_unit_test(test_topology_four_vcpus),
		cmocka_unit_test(test_amd_topology),
		cmocka_unit_test(test_signature_and_hypervisor_bit),
		cmocka_unit_test(test_hardware_host_keeps_features),
		cmocka_unit_test(test_limited_host_clears_features),
		cmocka_unit_test(test_hypercall_flag_alone),
		cmocka_unit_test(test_xsave_dependents_dropped_without_xsave),
		cmocka_unit_test(test_user_xstate_gets_xsave),
		cmocka_unit_test(test_cmdline_user_xstate),
		cmocka_unit_test(test_cmdline_measured_list),
		cmocka_unit_test(test_cmdline_names),
		cmocka_unit_test(test_cmdline_fits_kernel_buffer),
		cmocka_unit_test(test_cmdline_enospc),
		cmocka_unit_test(test_kvm_apply),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
