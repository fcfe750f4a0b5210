/* The floor of the exit cost: the cheapest possible VMM. It creates a VM with 2 MiB of RAM,
 * puts a vCPU in 64-bit mode at CPL0 or CPL3 with the same unrolled loop of `out` or MMIO
 * writes that bench/guests/exits.c runs, and does nothing on each exit but call KVM_RUN again.
 *
 *   kvm_floor pio|mmio cpl0|cpl3 N     prints "ns_per_exit=<float> exits=<n>"
 *
 * Exit status 0 on success, 1 with one line on stderr when KVM refuses or the guest misbehaves. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define RAM_SIZE 0x200000ull
#define PML4 0x1000ull
#define PDPT 0x2000ull
#define PD 0x3000ull
#define GDT 0x500ull
#define CODE 0x10000ull
#define STACK 0x8000ull
#define UNCLAIMED_PORT 0x2e0
#define DONE_PORT 0x2e1
#define UNMAPPED_MMIO 0x10000000ull /* mapped by the page tables, outside the one memslot */
#define UNROLL 16
#define WARMUP 512

/* Guest code, assembled into this binary and copied into guest RAM at CODE.
 * RCX = iterations, RDX = port, RBX = MMIO address; each iteration makes 16 exits. */
extern const uint8_t floor_code_start[], floor_pio_loop[], floor_mmio_loop[], floor_code_end[];
__asm__(".pushsection .rodata\n"
	".globl floor_code_start, floor_pio_loop, floor_mmio_loop, floor_code_end\n"
	"floor_code_start:\n"
	"floor_pio_loop:\n"
	"1:\n .rept 16\n outb %al, %dx\n .endr\n dec %rcx\n jnz 1b\n"
	" mov $" "0x2e1" ", %dx\n outb %al, %dx\n 2: jmp 2b\n"
	"floor_mmio_loop:\n"
	"1:\n .rept 16\n movl %eax, (%rbx)\n .endr\n dec %rcx\n jnz 1b\n"
	" mov $" "0x2e1" ", %dx\n outb %al, %dx\n 2: jmp 2b\n"
	"floor_code_end:\n"
	".popsection\n");

static void die(const char *what)
{
	fprintf(stderr, "kvm_floor: %s: %s\n", what, strerror(errno));
	exit(1);
}

static struct kvm_segment segment(uint16_t sel, uint8_t type, int code, unsigned dpl)
{
	struct kvm_segment s = {
		.base = 0,
		.limit = 0xffffffff,
		.selector = sel,
		.type = type,
		.present = 1,
		.dpl = (uint8_t)dpl,
		.db = code ? 0 : 1,
		.s = 1,
		.l = code ? 1 : 0,
		.g = 1,
	};
	return s;
}

static void setup_long_mode(int vcpu, uint8_t *ram, unsigned cpl)
{
	uint64_t *pml4 = (uint64_t *)(ram + PML4), *pdpt = (uint64_t *)(ram + PDPT), *pd = (uint64_t *)(ram + PD);
	enum { P = 1, RW = 2, US = 4, PS = 0x80 };
	pml4[0] = PDPT | P | RW | US;
	pdpt[0] = PD | P | RW | US;
	for (uint64_t i = 0; i < 512; i++)
		pd[i] = (i << 21) | P | RW | US | PS;
	/* The same descriptors as the segment registers below, for a host that reads the GDT. */
	uint64_t *gdt = (uint64_t *)(ram + GDT);
	gdt[2] = 0x00af9a000000ffffull;
	gdt[3] = 0x00cf92000000ffffull;
	gdt[4] = 0x00cff2000000ffffull;
	gdt[5] = 0x00affa000000ffffull;

	struct kvm_sregs sregs;
	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
		die("KVM_GET_SREGS");
	sregs.cr3 = PML4;
	sregs.cr4 = 0x20;		 /* PAE */
	sregs.cr0 = 0x80000001 | 0x10000; /* PG, PE, WP */
	sregs.efer = 0x500;		 /* LME, LMA */
	sregs.gdt.base = GDT;
	sregs.gdt.limit = 6 * 8 - 1;
	if (cpl == 0) {
		sregs.cs = segment(0x10, 0xb, 1, 0);
		sregs.ss = sregs.ds = sregs.es = segment(0x18, 0x3, 0, 0);
	} else {
		sregs.cs = segment(0x2b, 0xb, 1, 3);
		sregs.ss = sregs.ds = sregs.es = segment(0x23, 0x3, 0, 3);
	}
	sregs.fs = sregs.gs = sregs.ds;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
		die("KVM_SET_SREGS");
}

int main(int argc, char **argv)
{
	if (argc != 4 || (strcmp(argv[1], "pio") && strcmp(argv[1], "mmio")) ||
	    (strcmp(argv[2], "cpl0") && strcmp(argv[2], "cpl3"))) {
		fprintf(stderr, "usage: kvm_floor pio|mmio cpl0|cpl3 N\n");
		return 2;
	}
	int mmio = !strcmp(argv[1], "mmio");
	unsigned cpl = strcmp(argv[2], "cpl0") ? 3 : 0;
	unsigned long long n = strtoull(argv[3], NULL, 10);
	if (n < UNROLL || n > (1ull << 40)) {
		fprintf(stderr, "kvm_floor: N must be between %d and 2^40\n", UNROLL);
		return 2;
	}
	uint64_t iterations = (n + WARMUP + UNROLL - 1) / UNROLL;

	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		die("open /dev/kvm");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		die("KVM_CREATE_VM");
	uint8_t *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (ram == MAP_FAILED)
		die("mmap guest RAM");
	struct kvm_userspace_memory_region region = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = RAM_SIZE, .userspace_addr = (uint64_t)ram
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		die("KVM_SET_USER_MEMORY_REGION");
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		die("KVM_CREATE_VCPU");
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (int)sizeof(struct kvm_run))
		die("KVM_GET_VCPU_MMAP_SIZE");
	struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		die("mmap kvm_run");

	memcpy(ram + CODE, floor_code_start, (size_t)(floor_code_end - floor_code_start));
	setup_long_mode(vcpu, ram, cpl);
	const uint8_t *entry = mmio ? floor_mmio_loop : floor_pio_loop;
	struct kvm_regs regs = {
		.rip = CODE + (uint64_t)(entry - floor_code_start),
		.rsp = STACK,
		.rcx = iterations,
		.rdx = UNCLAIMED_PORT,
		.rbx = UNMAPPED_MMIO,
		.rflags = 0x2 | (cpl ? 0x3000 : 0), /* IOPL 3 so CPL3 may use `out` */
	};
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
		die("KVM_SET_REGS");

	uint64_t exits = 0, timed = 0;
	struct timespec t0 = { 0 }, t1;
	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			die("KVM_RUN");
		}
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == DONE_PORT)
			break;
		int expected = mmio ? run->exit_reason == KVM_EXIT_MMIO
				    : run->exit_reason == KVM_EXIT_IO && run->io.port == UNCLAIMED_PORT;
		if (!expected) {
			fprintf(stderr, "kvm_floor: unexpected exit reason %u after %llu exits (%s at CPL%u)\n",
				run->exit_reason, (unsigned long long)exits, argv[1], cpl);
			return 1;
		}
		if (++exits == WARMUP)
			clock_gettime(CLOCK_MONOTONIC, &t0);
		else if (exits > WARMUP)
			timed++;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (timed == 0) {
		fprintf(stderr, "kvm_floor: the guest finished before the warm-up ended\n");
		return 1;
	}
	double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
	printf("ns_per_exit=%.1f exits=%llu\n", ns / (double)timed, (unsigned long long)timed);
	return 0;
}
