/*
 * The snapshot test guest. It writes a known pattern over its RAM (a dense 64 KiB block and one
 * word in every MiB up to the top of RAM), then counts forever. Each round runs a stretch of
 * register-only arithmetic in assembly (so a snapshot usually lands with live values in
 * registers), checks the result against the same computation in C, checks the whole pattern,
 * and prints "count: N". After a restore the guest must go on counting from where it was with
 * every check passing; any difference prints "FAIL: ..." and crashes the VM.
 */
#include "guest.h"

#define DENSE_BASE 0x2000000ULL /* 32 MiB, above the guest image */
#define DENSE_WORDS (64 * 1024 / 8)
#define SPARSE_STEP 0x100000ULL
#define SPIN_ROUNDS 20000
#define PACE_OUTS 200 /* port writes per round: on fast hosts they keep the output readable */

static uint64_t ram_top; /* end of the highest RAM range below 4 GiB */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

static void find_ram_top(const uint8_t *bp)
{
	uint8_t n = bp[0x1e8];
	const uint8_t *e = bp + 0x2d0;
	for (unsigned int i = 0; i < n && i < 128; i++, e += 20) {
		uint64_t addr = *(const uint64_t *)e, size = *(const uint64_t *)(e + 8);
		uint32_t type = *(const uint32_t *)(e + 16);
		if (type == 1 && addr + size <= 0x100000000ULL && addr + size > ram_top)
			ram_top = addr + size;
	}
}

static void write_pattern(void)
{
	volatile uint64_t *d = (volatile uint64_t *)DENSE_BASE;
	for (uint64_t i = 0; i < DENSE_WORDS; i++)
		d[i] = mix(DENSE_BASE + i * 8);
	for (uint64_t a = DENSE_BASE + SPARSE_STEP; a + 8 <= ram_top; a += SPARSE_STEP)
		*(volatile uint64_t *)a = mix(a) ^ 0xa5a5a5a5a5a5a5a5ULL;
}

static void check_pattern(void)
{
	volatile uint64_t *d = (volatile uint64_t *)DENSE_BASE;
	for (uint64_t i = 0; i < DENSE_WORDS; i++)
		if (d[i] != mix(DENSE_BASE + i * 8)) {
			puts("FAIL: dense pattern word ");
			put_dec(i);
			putc('\n');
			guest_fail_triple_fault();
		}
	for (uint64_t a = DENSE_BASE + SPARSE_STEP; a + 8 <= ram_top; a += SPARSE_STEP)
		if (*(volatile uint64_t *)a != (mix(a) ^ 0xa5a5a5a5a5a5a5a5ULL)) {
			puts("FAIL: sparse pattern at ");
			put_hex(a);
			putc('\n');
			guest_fail_triple_fault();
		}
}

/* The same recurrence in registers (asm) and in C; r12-r15 and rbx carry it through the loop. */
static void spin_in_registers(uint64_t seed, uint64_t out[5])
{
	uint64_t a, b, c, d, e;
	__asm__ volatile("mov %[seed], %%r12\n"
			 "mov %[seed], %%r13\n"
			 "not %%r13\n"
			 "xor %%r14d, %%r14d\n"
			 "mov $1, %%r15\n"
			 "mov $0x9e3779b97f4a7c15, %%rbx\n"
			 "mov %[n], %%rcx\n"
			 "1:\n"
			 "add %%rbx, %%r12\n"
			 "xor %%r12, %%r13\n"
			 "rol $13, %%r13\n"
			 "add %%r13, %%r14\n"
			 "lea 1(%%r15,%%r15,2), %%r15\n"
			 "dec %%rcx\n"
			 "jnz 1b\n"
			 "mov %%r12, %[a]\n"
			 "mov %%r13, %[b]\n"
			 "mov %%r14, %[c]\n"
			 "mov %%r15, %[d]\n"
			 "mov %%rbx, %[e]\n"
			 : [a] "=m"(a), [b] "=m"(b), [c] "=m"(c), [d] "=m"(d), [e] "=m"(e)
			 : [seed] "r"(seed), [n] "i"(SPIN_ROUNDS)
			 : "rbx", "rcx", "r12", "r13", "r14", "r15", "cc", "memory");
	out[0] = a;
	out[1] = b;
	out[2] = c;
	out[3] = d;
	out[4] = e;
}

static void spin_in_c(uint64_t seed, uint64_t out[5])
{
	uint64_t r12 = seed, r13 = ~seed, r14 = 0, r15 = 1, rbx = 0x9e3779b97f4a7c15ULL;
	for (int i = 0; i < SPIN_ROUNDS; i++) {
		r12 += rbx;
		r13 ^= r12;
		r13 = (r13 << 13) | (r13 >> 51);
		r14 += r13;
		r15 = r15 * 3 + 1;
	}
	out[0] = r12;
	out[1] = r13;
	out[2] = r14;
	out[3] = r15;
	out[4] = rbx;
}

void guest_main(void *boot_params)
{
	find_ram_top(boot_params);
	write_pattern();
	puts("snapcount: pattern written up to ");
	put_hex(ram_top);
	putc('\n');
	for (uint64_t count = 1;; count++) {
		uint64_t got[5], want[5];
		spin_in_registers(count, got);
		spin_in_c(count, want);
		for (int i = 0; i < 5; i++)
			if (got[i] != want[i]) {
				puts("FAIL: register value ");
				put_dec((uint64_t)i);
				puts(" changed under the guest\n");
				guest_fail_triple_fault();
			}
		check_pattern();
		for (int i = 0; i < PACE_OUTS; i++)
			outb(0x80, (uint8_t)i);
		puts("count: ");
		put_dec(count);
		putc('\n');
	}
}
