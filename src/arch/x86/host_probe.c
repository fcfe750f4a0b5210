/*
 * Host probes: each runs a few instructions in a throwaway VM (probe_vm) and looks at how KVM
 * comes back. On hardware VT-x/AMD-V every probe ends in a plain HLT exit and every flag stays
 * false; only a host whose KVM emulates or deprivileges guest code shows the defects.
 */
#include "arch/x86/host_probe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/probe_vm.h"
#include "lib/log.h"
#include "lib/util.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/*
 * Probes that end by themselves get a generous limit so a loaded machine is not mistaken for a
 * defect; the VMCALL probe hangs on a broken host, so its limit is what start-up pays there
 * (still thousands of times a hardware VMCALL round trip).
 */
#define PROBE_TIMEOUT_MS 1000
#define VMCALL_TIMEOUT_MS 100
#define PROBE_LSTAR (PROBE_VM_KCODE + 0x800)

/* lock cmpxchg16b on an aligned, matching operand: hardware just runs it. */
__asm__(".pushsection .rodata\n"
	".globl vmon_probe_cx16_start\n .hidden vmon_probe_cx16_start\n"
	".globl vmon_probe_cx16_end\n .hidden vmon_probe_cx16_end\n"
	"vmon_probe_cx16_start:\n"
	"  mov $" STR(PROBE_VM_KDATA) ", %edi\n"
	"  xor %eax, %eax\n xor %edx, %edx\n xor %ebx, %ebx\n xor %ecx, %ecx\n"
	"  lock cmpxchg16b (%rdi)\n"
	"  hlt\n"
	"vmon_probe_cx16_end:\n"
	".popsection\n");
PROBE_BLOB(vmon_probe_cx16);

/*
 * SYSCALL set up the way Linux does it: the guest itself enables EFER.SCE and writes STAR,
 * LSTAR and FMASK, then SYSRETs to a user page that executes SYSCALL.
 */
__asm__(".pushsection .rodata\n"
	".globl vmon_probe_sys_k_start\n .hidden vmon_probe_sys_k_start\n"
	".globl vmon_probe_sys_k_end\n .hidden vmon_probe_sys_k_end\n"
	"vmon_probe_sys_k_start:\n"
	"  mov $0xc0000080, %ecx\n rdmsr\n or $1, %eax\n wrmsr\n"
	"  mov $0xc0000081, %ecx\n xor %eax, %eax\n mov $0x00230010, %edx\n wrmsr\n"
	"  mov $0xc0000082, %ecx\n mov $" STR(PROBE_LSTAR) ", %eax\n xor %edx, %edx\n wrmsr\n"
	"  mov $0xc0000084, %ecx\n mov $0x47700, %eax\n xor %edx, %edx\n wrmsr\n"
	"  mov $" STR(PROBE_VM_UCODE) ", %ecx\n mov $0x202, %r11d\n"
	"  sysretq\n"
	"vmon_probe_sys_k_end:\n"
	/* LSTAR: report the CPL through CS and stop. HLT at CPL3 would #GP and triple-fault. */
	".globl vmon_probe_sys_lstar_start\n .hidden vmon_probe_sys_lstar_start\n"
	".globl vmon_probe_sys_lstar_end\n .hidden vmon_probe_sys_lstar_end\n"
	"vmon_probe_sys_lstar_start:\n"
	"  mov %cs, %eax\n"
	"  mov %eax, " STR(PROBE_VM_KDATA) "\n"
	"  hlt\n"
	"vmon_probe_sys_lstar_end:\n"
	".globl vmon_probe_sys_u_start\n .hidden vmon_probe_sys_u_start\n"
	".globl vmon_probe_sys_u_end\n .hidden vmon_probe_sys_u_end\n"
	"vmon_probe_sys_u_start:\n"
	"  syscall\n"
	"  ud2\n"
	"vmon_probe_sys_u_end:\n"
	".popsection\n");
PROBE_BLOB(vmon_probe_sys_k);
PROBE_BLOB(vmon_probe_sys_lstar);
PROBE_BLOB(vmon_probe_sys_u);

/*
 * XGETBV from CPL3 while the guest has never enabled XSAVE (CR4.OSXSAVE clear): hardware raises
 * #UD (and, with no IDT, the probe triple-faults with the marker unset). A host that runs guest
 * user code with its own XCR0 returns that, and guest programs then use AVX state whatever the
 * guest kernel set up. The kernel part is vmon_probe_sys_k (SYSRET to the user page).
 */
__asm__(".pushsection .rodata\n"
	".globl vmon_probe_uxcr0_start\n .hidden vmon_probe_uxcr0_start\n"
	".globl vmon_probe_uxcr0_end\n .hidden vmon_probe_uxcr0_end\n"
	"vmon_probe_uxcr0_start:\n"
	"  xor %ecx, %ecx\n"
	"  xgetbv\n"
	"  mov %eax, " STR(PROBE_VM_UDATA) "\n"
	"  mov %edx, " STR(PROBE_VM_UDATA) "+4\n"
	"  movl $1, " STR(PROBE_VM_UDATA) "+8\n"
	"  ud2\n"
	"vmon_probe_uxcr0_end:\n"
	".popsection\n");
PROBE_BLOB(vmon_probe_uxcr0);

/* An unknown hypercall number: KVM answers -KVM_ENOSYS in RAX and resumes the guest. */
__asm__(".pushsection .rodata\n"
	".globl vmon_probe_vmcall_start\n .hidden vmon_probe_vmcall_start\n"
	".globl vmon_probe_vmcall_end\n .hidden vmon_probe_vmcall_end\n"
	"vmon_probe_vmcall_start:\n"
	"  mov $0xffff, %eax\n xor %ebx, %ebx\n xor %ecx, %ecx\n xor %edx, %edx\n xor %esi, %esi\n"
	"  vmcall\n"
	"  hlt\n"
	"vmon_probe_vmcall_end:\n"
	".popsection\n");
PROBE_BLOB(vmon_probe_vmcall);

/* CPUID leaves 1 and 7.0 at CPL0, stored to KDATA: 1.ECX, 1.EDX, 7.EBX, 7.ECX, 7.EDX. */
__asm__(".pushsection .rodata\n"
	".globl vmon_probe_cpuid_start\n .hidden vmon_probe_cpuid_start\n"
	".globl vmon_probe_cpuid_end\n .hidden vmon_probe_cpuid_end\n"
	"vmon_probe_cpuid_start:\n"
	"  mov $1, %eax\n xor %ecx, %ecx\n cpuid\n"
	"  mov %ecx, " STR(PROBE_VM_KDATA) "\n"
	"  mov %edx, " STR(PROBE_VM_KDATA) "+4\n"
	"  mov $7, %eax\n xor %ecx, %ecx\n cpuid\n"
	"  mov %ebx, " STR(PROBE_VM_KDATA) "+8\n"
	"  mov %ecx, " STR(PROBE_VM_KDATA) "+12\n"
	"  mov %edx, " STR(PROBE_VM_KDATA) "+16\n"
	"  hlt\n"
	"vmon_probe_cpuid_end:\n"
	".popsection\n");
PROBE_BLOB(vmon_probe_cpuid);

/* Bits KVM itself updates at run time from guest state; they are not leaks. */
#define CPUID1_ECX_OSXSAVE (1u << 27)
#define CPUID1_ECX_HYPERVISOR (1u << 31)
#define CPUID1_EDX_APIC (1u << 9)
#define CPUID7_ECX_OSPKE (1u << 4)

static const char *exit_name(int r)
{
	static char buf[32];
	switch (r) {
	case KVM_EXIT_HLT: return "hlt";
	case KVM_EXIT_SHUTDOWN: return "shutdown";
	case KVM_EXIT_INTERNAL_ERROR: return "internal-error";
	case KVM_EXIT_IO: return "io";
	case KVM_EXIT_MMIO: return "mmio";
	case KVM_EXIT_FAIL_ENTRY: return "fail-entry";
	case -ETIMEDOUT: return "timeout";
	default:
		snprintf(buf, sizeof(buf), "%s%d", r < 0 ? "errno " : "exit ", r < 0 ? -r : r);
		return buf;
	}
}

/* Creates a probe VM and loads one blob at the entry point. */
static int start_probe(struct probe_vm *pv, int kvm_fd, const uint8_t *code, size_t len)
{
	int rc = probe_vm_create(pv, kvm_fd);
	if (rc)
		return rc;
	rc = probe_vm_load(pv, PROBE_VM_KCODE, code, len);
	if (rc)
		probe_vm_destroy(pv);
	return rc;
}

static int probe_cmpxchg16b(int kvm_fd, struct host_caps *caps)
{
	struct probe_vm pv;
	int rc = start_probe(&pv, kvm_fd, vmon_probe_cx16_start, PROBE_BLOB_SIZE(vmon_probe_cx16));
	if (rc)
		return rc;
	int r = probe_vm_run(&pv, PROBE_TIMEOUT_MS);
	log_debug("host-probe", "lock cmpxchg16b at CPL0: %s", exit_name(r));
	caps->emulator_limited = r == KVM_EXIT_INTERNAL_ERROR;
	probe_vm_destroy(&pv);
	return r < 0 && r != -ETIMEDOUT ? r : 0;
}

static int probe_syscall(int kvm_fd, struct host_caps *caps)
{
	struct probe_vm pv;
	int rc = start_probe(&pv, kvm_fd, vmon_probe_sys_k_start, PROBE_BLOB_SIZE(vmon_probe_sys_k));
	if (rc)
		return rc;
	if ((rc = probe_vm_load(&pv, PROBE_LSTAR, vmon_probe_sys_lstar_start,
				PROBE_BLOB_SIZE(vmon_probe_sys_lstar))) ||
	    (rc = probe_vm_load(&pv, PROBE_VM_UCODE, vmon_probe_sys_u_start, PROBE_BLOB_SIZE(vmon_probe_sys_u))) ||
	    (rc = probe_vm_set_user(&pv, PROBE_VM_UCODE, 0x1000))) {
		probe_vm_destroy(&pv);
		return rc;
	}
	int r = probe_vm_run(&pv, PROBE_TIMEOUT_MS);
	bool ok = false;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint32_t marker = 0;
	if (r == KVM_EXIT_HLT && ioctl(pv.vcpu_fd, KVM_GET_REGS, &regs) == 0 &&
	    ioctl(pv.vcpu_fd, KVM_GET_SREGS, &sregs) == 0 &&
	    guest_mem_read(&pv.mem, PROBE_VM_KDATA, &marker, 4) == 0) {
		/* SYSCALL is 2 bytes: RCX must hold the address after it. */
		ok = sregs.cs.selector == PROBE_VM_SEL_KCODE && (marker & 0xffff) == PROBE_VM_SEL_KCODE &&
		     regs.rcx == PROBE_VM_UCODE + 2;
		log_debug("host-probe", "syscall from CPL3: hlt at rip 0x%llx, cs 0x%x, marker cs 0x%x, rcx 0x%llx",
			  (unsigned long long)regs.rip, sregs.cs.selector, marker & 0xffff,
			  (unsigned long long)regs.rcx);
	} else {
		log_debug("host-probe", "syscall from CPL3: %s", exit_name(r));
	}
	caps->syscall_broken = !ok;
	probe_vm_destroy(&pv);
	return r < 0 && r != -ETIMEDOUT ? r : 0;
}

static int probe_vmcall(int kvm_fd, struct host_caps *caps)
{
	struct probe_vm pv;
	int rc = start_probe(&pv, kvm_fd, vmon_probe_vmcall_start, PROBE_BLOB_SIZE(vmon_probe_vmcall));
	if (rc)
		return rc;
	int r = probe_vm_run(&pv, VMCALL_TIMEOUT_MS);
	log_debug("host-probe", "vmcall at CPL0: %s", exit_name(r));
	caps->hypercall_broken = r != KVM_EXIT_HLT;
	probe_vm_destroy(&pv);
	return r < 0 && r != -ETIMEDOUT ? r : 0;
}

static int probe_user_xcr0(int kvm_fd, struct host_caps *caps)
{
	struct probe_vm pv;
	int rc = start_probe(&pv, kvm_fd, vmon_probe_sys_k_start, PROBE_BLOB_SIZE(vmon_probe_sys_k));
	if (rc)
		return rc;
	if ((rc = probe_vm_load(&pv, PROBE_VM_UCODE, vmon_probe_uxcr0_start, PROBE_BLOB_SIZE(vmon_probe_uxcr0))) ||
	    (rc = probe_vm_set_user(&pv, PROBE_VM_UCODE, 0x2000))) {
		probe_vm_destroy(&pv);
		return rc;
	}
	int r = probe_vm_run(&pv, PROBE_TIMEOUT_MS);
	uint32_t seen[3] = { 0 };
	if (guest_mem_read(&pv.mem, PROBE_VM_UDATA, seen, sizeof(seen)) == 0 && seen[2] == 1)
		caps->user_xcr0 = seen[0] | ((uint64_t)seen[1] << 32);
	log_debug("host-probe", "xgetbv at CPL3 without CR4.OSXSAVE: %s, %s 0x%llx", exit_name(r),
		  seen[2] == 1 ? "returned" : "faulted", (unsigned long long)caps->user_xcr0);
	probe_vm_destroy(&pv);
	return r < 0 && r != -ETIMEDOUT ? r : 0;
}

static struct kvm_cpuid_entry2 *find_leaf(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == idx)
			return &c->entries[i];
	return NULL;
}

static int probe_cpuid_leaks(int kvm_fd, struct host_caps *caps)
{
	struct probe_vm pv;
	int rc = start_probe(&pv, kvm_fd, vmon_probe_cpuid_start, PROBE_BLOB_SIZE(vmon_probe_cpuid));
	if (rc)
		return rc;
	struct kvm_cpuid2 *c = probe_vm_supported_cpuid(kvm_fd);
	if (!c) {
		rc = -errno;
		probe_vm_destroy(&pv);
		return rc;
	}
	struct kvm_cpuid_entry2 *l1 = find_leaf(c, 1, 0), *l7 = find_leaf(c, 7, 0);
	if (l1)
		l1->ecx = l1->edx = 0;
	if (l7)
		l7->ebx = l7->ecx = l7->edx = 0;
	rc = probe_vm_set_cpuid(&pv, c);
	bool have7 = l7 != NULL;
	free(c);
	if (rc) {
		probe_vm_destroy(&pv);
		return rc;
	}
	int r = probe_vm_run(&pv, PROBE_TIMEOUT_MS);
	uint32_t seen[5] = { 0 };
	if (r == KVM_EXIT_HLT && guest_mem_read(&pv.mem, PROBE_VM_KDATA, seen, sizeof(seen)) == 0) {
		log_debug("host-probe",
			  "cpuid at CPL0 with leaves 1 and 7 cleared: 1.ecx 0x%08x 1.edx 0x%08x 7.ebx 0x%08x "
			  "7.ecx 0x%08x 7.edx 0x%08x",
			  seen[0], seen[1], seen[2], seen[3], seen[4]);
		caps->leaked_1_ecx = seen[0] & ~(CPUID1_ECX_HYPERVISOR | CPUID1_ECX_OSXSAVE);
		caps->leaked_1_edx = seen[1] & ~CPUID1_EDX_APIC;
		if (have7) {
			caps->leaked_7_ebx = seen[2];
			caps->leaked_7_ecx = seen[3] & ~CPUID7_ECX_OSPKE;
			caps->leaked_7_edx = seen[4];
		}
	} else {
		log_debug("host-probe", "cpuid at CPL0: %s", exit_name(r));
	}
	probe_vm_destroy(&pv);
	return r < 0 && r != -ETIMEDOUT ? r : 0;
}

int host_probe_run(int kvm_fd, struct host_caps *caps)
{
	memset(caps, 0, sizeof(*caps));
	uint64_t t0 = monotonic_ns();
	int rc;
	if ((rc = probe_cmpxchg16b(kvm_fd, caps)) || (rc = probe_syscall(kvm_fd, caps)) ||
	    (rc = probe_vmcall(kvm_fd, caps)) || (rc = probe_cpuid_leaks(kvm_fd, caps)) ||
	    (rc = probe_user_xcr0(kvm_fd, caps)))
		return rc;
	caps->probed = true;
	log_info("host-probe",
		 "emulator_limited=%d syscall_broken=%d hypercall_broken=%d user_xcr0=0x%llx cpuid leaks: "
		 "1.ecx 0x%08x 1.edx 0x%08x 7.ebx 0x%08x 7.ecx 0x%08x 7.edx 0x%08x (%llu ms)",
		 caps->emulator_limited, caps->syscall_broken, caps->hypercall_broken,
		 (unsigned long long)caps->user_xcr0, caps->leaked_1_ecx, caps->leaked_1_edx, caps->leaked_7_ebx,
		 caps->leaked_7_ecx, caps->leaked_7_edx, (unsigned long long)((monotonic_ns() - t0) / 1000000));
	return 0;
}
