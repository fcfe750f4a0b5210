#include "arch/x86/cpuid.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "lib/log.h"
#include "lib/util.h"

/* KVM's table has ~80 entries today; the cap only stops a runaway loop on a broken kernel. */
#define CPUID_INITIAL_ENTRIES 128
#define CPUID_MAX_ENTRIES 4096
/* Room for the leaves the policy may add (0xB/0x1F subleaves, hypervisor leaves). */
#define CPUID_EXTRA_ENTRIES 16

#define KVM_SIGNATURE_LEAF 0x40000000u
#define KVM_FEATURES_LEAF 0x40000001u

enum cpuid_reg { R_EAX, R_EBX, R_ECX, R_EDX };

#define BIT(n) (1u << (n))

/* Leaf 1 */
#define L1_ECX_SSE3 BIT(0)
#define L1_ECX_PCLMULQDQ BIT(1)
#define L1_ECX_MONITOR BIT(3)
#define L1_ECX_SSSE3 BIT(9)
#define L1_ECX_FMA BIT(12)
#define L1_ECX_CX16 BIT(13)
#define L1_ECX_SSE4_1 BIT(19)
#define L1_ECX_SSE4_2 BIT(20)
#define L1_ECX_MOVBE BIT(22)
#define L1_ECX_POPCNT BIT(23)
#define L1_ECX_AES BIT(25)
#define L1_ECX_XSAVE BIT(26)
#define L1_ECX_OSXSAVE BIT(27)
#define L1_ECX_AVX BIT(28)
#define L1_ECX_F16C BIT(29)
#define L1_ECX_HYPERVISOR BIT(31)
#define L1_EDX_HTT BIT(28)

/* Leaf 7 subleaf 0 */
#define L7_EBX_FSGSBASE BIT(0)
#define L7_EBX_HLE BIT(4)
#define L7_EBX_AVX2 BIT(5)
#define L7_EBX_BMI2 BIT(8)
#define L7_EBX_ERMS BIT(9)
#define L7_EBX_INVPCID BIT(10)
#define L7_EBX_RTM BIT(11)
#define L7_EBX_MPX BIT(14)
#define L7_EBX_ADX BIT(19)
#define L7_EBX_SMAP BIT(20)
#define L7_EBX_CLWB BIT(24)
#define L7_EBX_SHA BIT(29)
/* AVX512F, DQ, IFMA, PF, ER, CD, BW, VL */
#define L7_EBX_AVX512 (BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31))
#define L7_ECX_PKU BIT(3)
#define L7_ECX_OSPKE BIT(4)
#define L7_ECX_WAITPKG BIT(5)
#define L7_ECX_GFNI BIT(8)
#define L7_ECX_VAES BIT(9)
#define L7_ECX_VPCLMULQDQ BIT(10)
#define L7_ECX_RDPID BIT(22)
#define L7_ECX_MOVDIRI BIT(27)
#define L7_ECX_MOVDIR64B BIT(28)
#define L7_ECX_ENQCMD BIT(29)
/* AVX512_VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ */
#define L7_ECX_AVX512 (BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14))
#define L7_EDX_FSRM BIT(4)
#define L7_EDX_TSXLDTRK BIT(16)
/* AVX512_4VNNIW, 4FMAPS, VP2INTERSECT, FP16 */
#define L7_EDX_AVX512 (BIT(2) | BIT(3) | BIT(8) | BIT(23))
/* AMX_BF16, AMX_TILE, AMX_INT8 */
#define L7_EDX_AMX (BIT(22) | BIT(24) | BIT(25))
/* Leaf 7 subleaf 1 */
#define L7_1_EAX_AVX_VNNI BIT(4)
#define L7_1_EAX_AVX512_BF16 BIT(5)
/* Fast zero-length MOVSB, fast short STOSB, fast short CMPSB/SCASB */
#define L7_1_EAX_FAST_REP (BIT(10) | BIT(11) | BIT(12))

/* Leaf 0x80000001 */
#define LX1_ECX_SSE4A BIT(6)
#define LX1_ECX_XOP BIT(11)
#define LX1_ECX_FMA4 BIT(16)
#define LX1_ECX_TBM BIT(21)
#define LX1_EDX_RDTSCP BIT(27)

/* KVM paravirtual features (leaf 0x40000001 EAX) that are VMCALL hypercalls or need one. */
#define KVM_PV_HYPERCALL_FEATURES                                                                  \
	(BIT(2) /* MMU_OP */ | BIT(7) /* PV_UNHALT: KVM_HC_KICK_CPU */ |                          \
	 BIT(9) /* PV_TLB_FLUSH */ | BIT(11) /* PV_SEND_IPI: KVM_HC_SEND_IPI */ |                  \
	 BIT(13) /* PV_SCHED_YIELD: KVM_HC_SCHED_YIELD */ | BIT(16) /* HC_MAP_GPA_RANGE */)

/*
 * Features whose instructions the emulator of a limited host fails on (see docs/host-quirks.md):
 * the kernel uses them at CPL0, where every instruction is emulated there.
 */
struct feature_clear {
	uint32_t function, index;
	enum cpuid_reg reg;
	uint32_t mask;
};

static const struct feature_clear emulator_limited_clear[] = {
	{ 1, 0, R_ECX,
	  L1_ECX_SSE3 | L1_ECX_PCLMULQDQ | L1_ECX_MONITOR | L1_ECX_SSSE3 | L1_ECX_FMA | L1_ECX_CX16 |
		  L1_ECX_SSE4_1 | L1_ECX_SSE4_2 | L1_ECX_MOVBE | L1_ECX_POPCNT | L1_ECX_AES |
		  L1_ECX_XSAVE | L1_ECX_OSXSAVE | L1_ECX_AVX | L1_ECX_F16C },
	{ 7, 0, R_EBX,
	  L7_EBX_FSGSBASE | L7_EBX_HLE | L7_EBX_AVX2 | L7_EBX_BMI2 | L7_EBX_ERMS | L7_EBX_INVPCID |
		  L7_EBX_RTM | L7_EBX_MPX | L7_EBX_ADX | L7_EBX_SMAP | L7_EBX_CLWB | L7_EBX_SHA |
		  L7_EBX_AVX512 },
	{ 7, 0, R_ECX,
	  L7_ECX_PKU | L7_ECX_OSPKE | L7_ECX_WAITPKG | L7_ECX_GFNI | L7_ECX_VAES | L7_ECX_VPCLMULQDQ |
		  L7_ECX_RDPID | L7_ECX_MOVDIRI | L7_ECX_MOVDIR64B | L7_ECX_ENQCMD | L7_ECX_AVX512 },
	{ 7, 0, R_EDX, L7_EDX_FSRM | L7_EDX_TSXLDTRK | L7_EDX_AVX512 | L7_EDX_AMX },
	{ 7, 1, R_EAX, L7_1_EAX_AVX_VNNI | L7_1_EAX_AVX512_BF16 | L7_1_EAX_FAST_REP },
	{ 0x80000001, 0, R_ECX, LX1_ECX_SSE4A | LX1_ECX_XOP | LX1_ECX_FMA4 | LX1_ECX_TBM },
	{ 0x80000001, 0, R_EDX, LX1_EDX_RDTSCP },
};

/* Features that need XSAVE-managed register state; without XSAVE they cannot be used. */
static const struct feature_clear needs_xsave[] = {
	{ 1, 0, R_ECX, L1_ECX_OSXSAVE | L1_ECX_AVX | L1_ECX_FMA | L1_ECX_F16C },
	{ 7, 0, R_EBX, L7_EBX_AVX2 | L7_EBX_MPX | L7_EBX_AVX512 },
	{ 7, 0, R_ECX, L7_ECX_PKU | L7_ECX_OSPKE | L7_ECX_VAES | L7_ECX_VPCLMULQDQ | L7_ECX_AVX512 },
	{ 7, 0, R_EDX, L7_EDX_AVX512 | L7_EDX_AMX },
	{ 7, 1, R_EAX, L7_1_EAX_AVX_VNNI | L7_1_EAX_AVX512_BF16 },
	{ 0x80000001, 0, R_ECX, LX1_ECX_XOP | LX1_ECX_FMA4 },
};

static uint32_t *entry_reg(struct kvm_cpuid_entry2 *e, enum cpuid_reg r)
{
	switch (r) {
	case R_EAX: return &e->eax;
	case R_EBX: return &e->ebx;
	case R_ECX: return &e->ecx;
	default: return &e->edx;
	}
}

static bool entry_matches(const struct kvm_cpuid_entry2 *e, uint32_t function, uint32_t index)
{
	if (e->function != function)
		return false;
	return !(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == index;
}

const struct kvm_cpuid_entry2 *cpuid_find_entry(const struct kvm_cpuid2 *table, uint32_t function, uint32_t index)
{
	for (uint32_t i = 0; i < table->nent; i++)
		if (entry_matches(&table->entries[i], function, index))
			return &table->entries[i];
	return NULL;
}

static struct kvm_cpuid_entry2 *find_mut(struct kvm_cpuid2 *table, uint32_t function, uint32_t index)
{
	return (struct kvm_cpuid_entry2 *)cpuid_find_entry(table, function, index);
}

static struct kvm_cpuid2 *cpuid_alloc(uint32_t capacity)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (size_t)capacity * sizeof(c->entries[0]));
	if (c)
		c->nent = capacity;
	return c;
}

struct kvm_cpuid2 *cpuid_get_supported(int kvm_fd)
{
	for (uint32_t n = CPUID_INITIAL_ENTRIES; n <= CPUID_MAX_ENTRIES; n *= 2) {
		struct kvm_cpuid2 *c = cpuid_alloc(n);
		if (!c)
			return NULL;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
			return c;
		int e = errno;
		free(c);
		if (e != E2BIG) {
			errno = e;
			return NULL;
		}
	}
	errno = E2BIG;
	return NULL;
}

static bool is_amd_like(const struct kvm_cpuid2 *t)
{
	const struct kvm_cpuid_entry2 *e = cpuid_find_entry(t, 0, 0);
	if (!e)
		return false;
	char vendor[13];
	memcpy(vendor, &e->ebx, 4);
	memcpy(vendor + 4, &e->edx, 4);
	memcpy(vendor + 8, &e->ecx, 4);
	vendor[12] = '\0';
	return !strcmp(vendor, "AuthenticAMD") || !strcmp(vendor, "HygonGenuine");
}

/* Bits needed to number ncpus cores: the APIC-ID shift of the core level. */
static unsigned int core_id_bits(unsigned int ncpus)
{
	unsigned int bits = 0;
	while ((1u << bits) < ncpus)
		bits++;
	return bits;
}

static struct kvm_cpuid_entry2 *append(struct kvm_cpuid2 *t, uint32_t capacity, uint32_t function, uint32_t index,
				       uint32_t flags)
{
	if (t->nent >= capacity)
		return NULL;
	struct kvm_cpuid_entry2 *e = &t->entries[t->nent++];
	memset(e, 0, sizeof(*e));
	e->function = function;
	e->index = index;
	e->flags = flags;
	return e;
}

/*
 * x2APIC topology leaf (0xB or 0x1F): one thread per core, ncpus cores in one package.
 * Subleaf 0 is the SMT level, 1 the core level, 2 the terminating invalid level. EDX (the
 * x2APIC ID) is per vCPU.
 */
static int add_topology_leaf(struct kvm_cpuid2 *t, uint32_t capacity, uint32_t function, unsigned int ncpus)
{
	for (uint32_t sub = 0; sub < 3; sub++) {
		struct kvm_cpuid_entry2 *e = append(t, capacity, function, sub, KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
		if (!e)
			return -ENOSPC;
		e->ecx = sub & 0xff;
		if (sub == 0) {
			e->eax = 0;
			e->ebx = 1;
			e->ecx |= 1u << 8; /* SMT */
		} else if (sub == 1) {
			e->eax = core_id_bits(ncpus);
			e->ebx = ncpus & 0xffff;
			e->ecx |= 2u << 8; /* core */
		}
	}
	return 0;
}

/* Deterministic cache parameters (Intel leaf 4, AMD 0x8000001D): who shares which cache. */
static void patch_cache_leaf(struct kvm_cpuid2 *t, uint32_t function, unsigned int ncpus, bool cores_field)
{
	for (uint32_t i = 0; i < t->nent; i++) {
		struct kvm_cpuid_entry2 *e = &t->entries[i];
		if (e->function != function || (e->eax & 0x1f) == 0)
			continue;
		unsigned int level = (e->eax >> 5) & 7;
		/* L1/L2 are per core, the last level is shared by the package. */
		uint32_t sharing = level >= 3 ? MIN(ncpus, 4096u) - 1 : 0;
		e->eax = (e->eax & ~(0xfffu << 14)) | (sharing << 14);
		if (cores_field)
			e->eax = (e->eax & ~(0x3fu << 26)) | ((MIN(ncpus, 64u) - 1) << 26);
	}
}

static void clear_features(struct kvm_cpuid2 *t, const struct feature_clear *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct kvm_cpuid_entry2 *e = find_mut(t, list[i].function, list[i].index);
		if (e)
			*entry_reg(e, list[i].reg) &= ~list[i].mask;
	}
}

/* Removes what a guest cannot use without XSAVE, so the table stays self-consistent. */
static void drop_xsave_dependents(struct kvm_cpuid2 *t)
{
	struct kvm_cpuid_entry2 *l1 = find_mut(t, 1, 0);
	if (!l1 || (l1->ecx & L1_ECX_XSAVE))
		return;
	clear_features(t, needs_xsave, ARRAY_SIZE(needs_xsave));
	for (uint32_t i = 0; i < t->nent; i++) {
		struct kvm_cpuid_entry2 *e = &t->entries[i];
		if (e->function == 0xd)
			e->eax = e->ebx = e->ecx = e->edx = 0;
	}
}

/*
 * Where guest user code runs with the host's XCR0 (host_user_xstate_leaks), programs use AVX
 * registers whatever the guest kernel enabled, so the kernel must save them at every context
 * switch or processes see each other's registers. It gets XSAVE and leaf 0xD as KVM reports
 * them; where the host cannot run the XSAVE family, vmon emulates it (emulate.c). XSAVES is
 * left out: its supervisor state is not emulated.
 */
static void offer_xsave_for_user_state(struct kvm_cpuid2 *t, const struct host_caps *host)
{
	struct kvm_cpuid_entry2 *l1 = find_mut(t, 1, 0), *d0 = find_mut(t, 0xd, 0), *d1 = find_mut(t, 0xd, 1);
	if (!l1 || !d0)
		return;
	uint64_t xcr0 = d0->eax | ((uint64_t)d0->edx << 32);
	if ((xcr0 & 3) != 3) {
		log_warn("cpuid", "guest programs can use register state 0x%llx on this host, but KVM offers no "
				  "XSAVE for the guest kernel to save it with; guest processes may corrupt each "
				  "other's AVX registers",
			 (unsigned long long)host->user_xcr0);
		return;
	}
	if (host->user_xcr0 & ~xcr0)
		log_warn("cpuid", "guest programs can use register state 0x%llx on this host, of which KVM lets "
				  "the guest kernel save only 0x%llx",
			 (unsigned long long)host->user_xcr0, (unsigned long long)xcr0);
	l1->ecx |= L1_ECX_XSAVE;
	if (d1)
		d1->eax &= ~BIT(3);
}

static int set_kvm_leaves(struct kvm_cpuid2 *t, uint32_t capacity, const struct host_caps *host)
{
	struct kvm_cpuid_entry2 *sig = find_mut(t, KVM_SIGNATURE_LEAF, 0);
	if (!sig && !(sig = append(t, capacity, KVM_SIGNATURE_LEAF, 0, 0)))
		return -ENOSPC;
	struct kvm_cpuid_entry2 *feat = find_mut(t, KVM_FEATURES_LEAF, 0);
	if (!feat && !(feat = append(t, capacity, KVM_FEATURES_LEAF, 0, 0)))
		return -ENOSPC;

	static const char signature[12] = "KVMKVMKVM\0\0\0";
	sig->eax = MAX(sig->eax, KVM_FEATURES_LEAF);
	memcpy(&sig->ebx, signature, 4);
	memcpy(&sig->ecx, signature + 4, 4);
	memcpy(&sig->edx, signature + 8, 4);

	if (host && host->hypercall_broken)
		feat->eax &= ~KVM_PV_HYPERCALL_FEATURES;
	return 0;
}

struct kvm_cpuid2 *cpuid_policy_build(const struct kvm_cpuid2 *supported, unsigned int ncpus,
				      const struct host_caps *host)
{
	if (ncpus == 0 || !supported) {
		errno = EINVAL;
		return NULL;
	}
	uint32_t capacity = supported->nent + CPUID_EXTRA_ENTRIES;
	struct kvm_cpuid2 *t = cpuid_alloc(capacity);
	if (!t)
		return NULL;

	/* The topology leaves are rebuilt from scratch; everything else starts as KVM reports it. */
	bool has_0b = false, has_1f = false;
	t->nent = 0;
	for (uint32_t i = 0; i < supported->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &supported->entries[i];
		if (e->function == 0xb || e->function == 0x1f) {
			has_0b |= e->function == 0xb;
			has_1f |= e->function == 0x1f;
			continue;
		}
		t->entries[t->nent++] = *e;
	}
	if ((has_0b && add_topology_leaf(t, capacity, 0xb, ncpus) < 0) ||
	    (has_1f && add_topology_leaf(t, capacity, 0x1f, ncpus) < 0) || set_kvm_leaves(t, capacity, host) < 0) {
		free(t);
		errno = ENOMEM;
		return NULL;
	}

	struct kvm_cpuid_entry2 *l1 = find_mut(t, 1, 0);
	if (l1) {
		l1->ebx = (l1->ebx & ~(0xffu << 16)) | (MIN(ncpus, 255u) << 16);
		if (ncpus > 1)
			l1->edx |= L1_EDX_HTT;
		else
			l1->edx &= ~L1_EDX_HTT;
		l1->ecx |= L1_ECX_HYPERVISOR;
	}

	bool amd = is_amd_like(t);
	if (!amd)
		patch_cache_leaf(t, 4, ncpus, true);
	if (amd) {
		patch_cache_leaf(t, 0x8000001d, ncpus, false);
		struct kvm_cpuid_entry2 *e = find_mut(t, 0x80000008, 0);
		if (e) {
			/* NC = cores - 1; ApicIdSize = bits of the core number (0 means "derive from NC"). */
			e->ecx = (e->ecx & ~0xf0ffu) | ((MIN(ncpus, 256u) - 1) & 0xff) | (core_id_bits(ncpus) << 12);
		}
	}

	if (host && host->emulator_limited)
		clear_features(t, emulator_limited_clear, ARRAY_SIZE(emulator_limited_clear));
	if (host_user_xstate_leaks(host))
		offer_xsave_for_user_state(t, host);
	drop_xsave_dependents(t);
	return t;
}

struct kvm_cpuid2 *cpuid_for_vcpu(const struct kvm_cpuid2 *policy, unsigned int vcpu_id, unsigned int ncpus)
{
	if (vcpu_id >= ncpus) {
		errno = EINVAL;
		return NULL;
	}
	struct kvm_cpuid2 *t = cpuid_alloc(policy->nent);
	if (!t)
		return NULL;
	memcpy(t->entries, policy->entries, (size_t)policy->nent * sizeof(t->entries[0]));
	bool amd = is_amd_like(t);

	for (uint32_t i = 0; i < t->nent; i++) {
		struct kvm_cpuid_entry2 *e = &t->entries[i];
		switch (e->function) {
		case 1:
			e->ebx = (e->ebx & 0x00ffffffu) | ((vcpu_id & 0xffu) << 24);
			break;
		case 0xb:
		case 0x1f:
			e->edx = vcpu_id;
			break;
		case 0x8000001e:
			if (amd) {
				e->eax = vcpu_id;                 /* extended APIC ID */
				e->ebx = vcpu_id & 0xffu;         /* core ID; one thread per core */
				e->ecx = 0;                       /* node 0, one node per package */
			}
			break;
		default:
			break;
		}
	}
	return t;
}

int cpuid_apply_to_vcpu(int vcpu_fd, const struct kvm_cpuid2 *policy, unsigned int vcpu_id, unsigned int ncpus)
{
	struct kvm_cpuid2 *t = cpuid_for_vcpu(policy, vcpu_id, ncpus);
	if (!t)
		return -errno;
	int rc = 0;
	if (ioctl(vcpu_fd, KVM_SET_CPUID2, t) < 0) {
		rc = -errno;
		log_error("cpuid", "KVM rejected the CPUID table for vCPU %u: %s", vcpu_id, strerror(errno));
	}
	free(t);
	return rc;
}

/*
 * Linux's names (as in /proc/cpuinfo and accepted by clearcpuid= since 6.0) for features a
 * limited host may leak, most important first: the kernel reads clearcpuid= into a 128-byte
 * buffer, so when many bits leak only the names that fit are passed.
 */
enum feature_xsave {
	PLAIN,       /* no XSAVE-managed state */
	NEEDS_XSAVE, /* instructions on XSAVE-managed registers: Linux drops them itself with noxsave */
	/*
	 * Defines state components (arch/x86/kernel/fpu/xstate.c: xsave_cpuid_features): cleared,
	 * Linux leaves them out of XCR0. Gone with noxsave; where guest user code uses one of them
	 * anyway (host_caps.user_xcr0), the guest kernel must keep it to save it, so it is not named.
	 */
	XSTATE_COMPONENT,
};

struct feature_name {
	uint32_t function;
	enum cpuid_reg reg;
	unsigned int bit;
	const char *name;
	enum feature_xsave xsave;
	uint64_t components; /* for XSTATE_COMPONENT: the XCR0 bits it brings */
};

static const struct feature_name feature_names[] = {
	/* Measured to matter for a stock kernel (docs/host-quirks.md). */
	{ 7, R_EBX, 20, "smap", PLAIN, 0 },
	{ 7, R_EBX, 0, "fsgsbase", PLAIN, 0 },
	{ 1, R_ECX, 23, "popcnt", PLAIN, 0 },
	{ 1, R_ECX, 9, "ssse3", PLAIN, 0 },
	{ 1, R_ECX, 19, "sse4_1", PLAIN, 0 },
	{ 1, R_ECX, 20, "sse4_2", PLAIN, 0 },
	{ 1, R_ECX, 1, "pclmulqdq", PLAIN, 0 },
	{ 1, R_ECX, 25, "aes", PLAIN, 0 },
	{ 1, R_ECX, 22, "movbe", PLAIN, 0 },
	{ 7, R_EBX, 29, "sha_ni", PLAIN, 0 },
	{ 7, R_EBX, 9, "erms", PLAIN, 0 },
	{ 7, R_EDX, 4, "fsrm", PLAIN, 0 },
	/* Instructions that fail in the emulator but were not met in a boot. */
	{ 1, R_ECX, 13, "cx16", PLAIN, 0 },
	{ 7, R_EBX, 8, "bmi2", PLAIN, 0 },
	{ 7, R_EBX, 19, "adx", PLAIN, 0 },
	{ 1, R_ECX, 0, "pni", PLAIN, 0 },
	{ 7, R_ECX, 22, "rdpid", PLAIN, 0 },
	{ 7, R_EBX, 10, "invpcid", PLAIN, 0 },
	{ 7, R_EBX, 24, "clwb", PLAIN, 0 },
	{ 7, R_ECX, 8, "gfni", PLAIN, 0 },
	{ 1, R_ECX, 29, "f16c", PLAIN, 0 },
	{ 7, R_EBX, 11, "rtm", PLAIN, 0 },
	{ 7, R_EBX, 4, "hle", PLAIN, 0 },
	{ 1, R_ECX, 3, "monitor", PLAIN, 0 },
	{ 7, R_ECX, 5, "waitpkg", PLAIN, 0 },
	{ 7, R_ECX, 27, "movdiri", PLAIN, 0 },
	{ 7, R_ECX, 28, "movdir64b", PLAIN, 0 },
	{ 7, R_EDX, 16, "tsxldtrk", PLAIN, 0 },
	/* The AVX family: registers XSAVE manages. */
	{ 1, R_ECX, 28, "avx", XSTATE_COMPONENT, 0x4 },
	{ 1, R_ECX, 12, "fma", NEEDS_XSAVE, 0 },
	{ 7, R_EBX, 5, "avx2", NEEDS_XSAVE, 0 },
	{ 7, R_EBX, 14, "mpx", XSTATE_COMPONENT, 0x18 },
	{ 7, R_EBX, 16, "avx512f", XSTATE_COMPONENT, 0xe0 },
	{ 7, R_EBX, 17, "avx512dq", NEEDS_XSAVE, 0 },
	{ 7, R_EBX, 21, "avx512ifma", NEEDS_XSAVE, 0 },
	{ 7, R_EBX, 26, "avx512pf", NEEDS_XSAVE, 0 },
	{ 7, R_EBX, 27, "avx512er", NEEDS_XSAVE, 0 },
	{ 7, R_EBX, 28, "avx512cd", NEEDS_XSAVE, 0 },
	{ 7, R_EBX, 30, "avx512bw", NEEDS_XSAVE, 0 },
	{ 7, R_EBX, 31, "avx512vl", NEEDS_XSAVE, 0 },
	{ 7, R_ECX, 1, "avx512vbmi", NEEDS_XSAVE, 0 },
	{ 7, R_ECX, 3, "pku", XSTATE_COMPONENT, 0x200 },
	{ 7, R_ECX, 6, "avx512_vbmi2", NEEDS_XSAVE, 0 },
	{ 7, R_ECX, 9, "vaes", NEEDS_XSAVE, 0 },
	{ 7, R_ECX, 10, "vpclmulqdq", NEEDS_XSAVE, 0 },
	{ 7, R_ECX, 11, "avx512_vnni", NEEDS_XSAVE, 0 },
	{ 7, R_ECX, 12, "avx512_bitalg", NEEDS_XSAVE, 0 },
	{ 7, R_ECX, 14, "avx512_vpopcntdq", NEEDS_XSAVE, 0 },
	{ 7, R_ECX, 29, "enqcmd", XSTATE_COMPONENT, 0x400 },
	{ 7, R_EDX, 2, "avx512_4vnniw", NEEDS_XSAVE, 0 },
	{ 7, R_EDX, 3, "avx512_4fmaps", NEEDS_XSAVE, 0 },
	{ 7, R_EDX, 8, "avx512_vp2intersect", NEEDS_XSAVE, 0 },
	{ 7, R_EDX, 23, "avx512_fp16", NEEDS_XSAVE, 0 },
	{ 7, R_EDX, 24, "amx_tile", XSTATE_COMPONENT, 0x60000 },
};

/* Longest value Linux reads for clearcpuid= (arch/x86/kernel/cpu/common.c: char arg[128]). */
#define CLEARCPUID_MAX_VALUE 127

static uint32_t leaked_mask(const struct host_caps *host, uint32_t function, enum cpuid_reg reg)
{
	if (function == 1)
		return reg == R_ECX ? host->leaked_1_ecx : reg == R_EDX ? host->leaked_1_edx : 0;
	switch (reg) {
	case R_EBX: return host->leaked_7_ebx;
	case R_ECX: return host->leaked_7_ecx;
	case R_EDX: return host->leaked_7_edx;
	default: return 0;
	}
}

int cpuid_guest_cmdline_options(const struct host_caps *host, char *buf, size_t len)
{
	if (!buf || len == 0)
		return -ENOSPC;
	buf[0] = '\0';
	if (!host)
		return 0;

	/* noxsave keeps a kernel off the XSAVE instructions, unless it has user AVX state to save. */
	bool noxsave = (host->leaked_1_ecx & L1_ECX_XSAVE) && !host_user_xstate_leaks(host);
	char value[CLEARCPUID_MAX_VALUE + 1] = "";
	char left_out[256] = "";
	size_t vlen = 0, left_len = 0;
	for (size_t i = 0; i < ARRAY_SIZE(feature_names); i++) {
		const struct feature_name *f = &feature_names[i];
		if (!(leaked_mask(host, f->function, f->reg) & BIT(f->bit)))
			continue;
		if ((noxsave && f->xsave != PLAIN) ||
		    (f->xsave == XSTATE_COMPONENT && (host->user_xcr0 & f->components)))
			continue;
		size_t need = strlen(f->name) + (vlen ? 1 : 0);
		if (vlen + need > CLEARCPUID_MAX_VALUE) {
			if (left_len < sizeof(left_out))
				left_len += (size_t)snprintf(left_out + left_len, sizeof(left_out) - left_len, "%s%s",
							     left_len ? "," : "", f->name);
			continue;
		}
		vlen += (size_t)snprintf(value + vlen, sizeof(value) - vlen, "%s%s", vlen ? "," : "", f->name);
	}

	if (left_len)
		log_info("cpuid", "the guest kernel reads only %d characters of clearcpuid=, so it may still use: %s",
			 CLEARCPUID_MAX_VALUE, left_out);

	int n = snprintf(buf, len, "%s%s%s%s", vlen ? "clearcpuid=" : "", value, vlen && noxsave ? " " : "",
			 noxsave ? "noxsave" : "");
	if (n < 0 || (size_t)n >= len) {
		buf[0] = '\0';
		return -ENOSPC;
	}
	return 0;
}
