/* Exit-cost guest: N port-I/O writes and N MMIO writes that no device claims, first at CPL0,
 * then at CPL3. The host timestamps the console lines around each batch:
 *   "B <kind>" just before a batch, "E" just after it;
 * so the time between them is N exit round trips (plus a few for the "E" line itself).
 * Command line: exits.n=N (default 10000, rounded up to 16), exits.cpl3=0 skips the CPL3 part.
 * Runs the same under vmon (entered at _start) and QEMU (entered through pvh.S). */
#include "cmdline.h"
#include "guest.h"

#define UNCLAIMED_PORT 0x2e0 /* no device on vmon, QEMU pc or QEMU microvm */
#define UNMAPPED_MMIO 0xd0000000ull /* in the hole below 4 GiB, no RAM and no device */
#define WARMUP 512
#define UNROLL 16

/* 16 exits per iteration so the loop's own instructions (emulated at CPL0 on some hosts)
 * add little to each exit. */
static void pio_batch(uint64_t iters)
{
	__asm__ volatile("1:\n\t.rept 16\n\toutb %%al, %%dx\n\t.endr\n\tdec %0\n\tjnz 1b"
			 : "+r"(iters)
			 : "a"(0), "d"(UNCLAIMED_PORT)
			 : "memory");
}

static void mmio_batch(uint64_t iters)
{
	__asm__ volatile("1:\n\t.rept 16\n\tmovl %%eax, (%1)\n\t.endr\n\tdec %0\n\tjnz 1b"
			 : "+r"(iters)
			 : "r"(UNMAPPED_MMIO), "a"(0)
			 : "memory");
}

static uint64_t iterations;

static void measure(const char *kind, void (*batch)(uint64_t))
{
	batch(WARMUP / UNROLL);
	puts("B ");
	puts(kind);
	putc('\n');
	batch(iterations);
	puts("E\n");
}

/* --- CPL3: own page tables with user pages, a GDT with user segments, IOPL 3 ------------- */

static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t pd[4 * 512] __attribute__((aligned(4096)));
static uint8_t user_stack[16384] __attribute__((aligned(16)));
static const uint64_t gdt[] = {
	0,
	0,
	0x00af9a000000ffffull, /* 0x10: 64-bit code, DPL 0 (the selector vmon and pvh.S use) */
	0x00cf92000000ffffull, /* 0x18: data, DPL 0 */
	0x00cff2000000ffffull, /* 0x20: data, DPL 3 (selector 0x23) */
	0x00affa000000ffffull, /* 0x28: 64-bit code, DPL 3 (selector 0x2b) */
};

__attribute__((noreturn)) static void user_main(void)
{
	measure("pio3", pio_batch);
	measure("mmio3", mmio_batch);
	puts("EXITS: done\n");
	guest_poweroff();
}

__attribute__((noreturn)) static void enter_cpl3(void)
{
	enum { P = 1, RW = 2, US = 4, PS = 0x80 };
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | P | RW | US | PS;
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = ((uint64_t)&pd[i * 512]) | P | RW | US;
	pml4[0] = ((uint64_t)pdpt) | P | RW | US;
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) gdtr = { sizeof(gdt) - 1, (uint64_t)gdt };
	__asm__ volatile("lgdt %0; mov %1, %%cr3" ::"m"(gdtr), "r"((uint64_t)pml4) : "memory");
	/* iretq into user_main at CPL3 with IOPL 3 (port I/O allowed) and interrupts off; the
	 * stack is as if user_main had been called. */
	uint64_t user_rsp = (uint64_t)&user_stack[sizeof(user_stack)] - 8;
	__asm__ volatile("pushq $0x23\n\t"
			 "pushq %0\n\t"
			 "pushq $0x3002\n\t"
			 "pushq $0x2b\n\t"
			 "pushq %1\n\t"
			 "iretq" ::"r"(user_rsp),
			 "r"((uint64_t)user_main)
			 : "memory");
	__builtin_unreachable();
}

void guest_main(void *boot_params)
{
	puts("EXITS: ready\n");
	const char *cmdline = bench_cmdline(boot_params);
	uint64_t n = bench_cmdline_u64(cmdline, "exits.n", 10000);
	if (n < UNROLL)
		n = UNROLL;
	iterations = (n + UNROLL - 1) / UNROLL;
	puts("EXITS: n=");
	put_dec(iterations * UNROLL);
	putc('\n');
	measure("pio0", pio_batch);
	measure("mmio0", mmio_batch);
	if (bench_cmdline_u64(cmdline, "exits.cpl3", 1))
		enter_cpl3();
	puts("EXITS: done\n");
	guest_poweroff();
}
