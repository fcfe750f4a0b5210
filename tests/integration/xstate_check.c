/*
 * Runs inside a Linux guest: do a program's AVX registers survive context switches?
 *
 * Two processes pinned to one CPU load different patterns into YMM0-15 (and ZMM16-31 where
 * AVX-512 is usable), yield to each other many times through sched_yield(), then store the
 * registers and compare. A guest kernel that does not save this state at context switches (for
 * example one booted with noxsave on a host that still lets user code use AVX) hands one
 * process's registers to the other.
 *
 * Prints one line, "VMON-TEST xstate=ok regs=<what was checked>" or
 * "VMON-TEST xstate=corrupted ..." or "VMON-TEST xstate=no-avx", and exits 0 unless corrupted.
 * Built with gcc -static; only the checking function is compiled for AVX-512.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define YIELDS 40

struct regs {
	uint8_t ymm[16][32];
	uint8_t zmm[16][64]; /* ZMM16-31 */
};

static uint64_t xgetbv0(void)
{
	uint32_t lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return lo | ((uint64_t)hi << 32);
}

static int usable(bool *zmm)
{
	unsigned int a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE) || !(c & bit_AVX))
		return 0;
	uint64_t xcr0 = xgetbv0();
	if ((xcr0 & 6) != 6)
		return 0;
	*zmm = (xcr0 & 0xe0) == 0xe0 && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_AVX512F);
	return 1;
}

#define LOAD_Y(n) "vmovdqu " #n "*32(%[in]), %%ymm" #n "\n"
#define STORE_Y(n) "vmovdqu %%ymm" #n ", " #n "*32(%[out])\n"
#define LOAD_Z(n, r) "vmovdqu64 512+" #n "*64(%[in]), %%zmm" #r "\n"
#define STORE_Z(n, r) "vmovdqu64 %%zmm" #r ", 512+" #n "*64(%[out])\n"
#define SCHED_YIELD "24"

/* Loads in, yields YIELDS times, stores the same registers into out; nothing in between. */
static void cycle_ymm(const struct regs *in, struct regs *out)
{
	__asm__ volatile(LOAD_Y(0) LOAD_Y(1) LOAD_Y(2) LOAD_Y(3) LOAD_Y(4) LOAD_Y(5) LOAD_Y(6) LOAD_Y(7)
			 LOAD_Y(8) LOAD_Y(9) LOAD_Y(10) LOAD_Y(11) LOAD_Y(12) LOAD_Y(13) LOAD_Y(14) LOAD_Y(15)
			 "mov %[n], %%r12d\n"
			 "1: mov $" SCHED_YIELD ", %%eax\n syscall\n dec %%r12d\n jnz 1b\n"
			 STORE_Y(0) STORE_Y(1) STORE_Y(2) STORE_Y(3) STORE_Y(4) STORE_Y(5) STORE_Y(6) STORE_Y(7)
			 STORE_Y(8) STORE_Y(9) STORE_Y(10) STORE_Y(11) STORE_Y(12) STORE_Y(13) STORE_Y(14) STORE_Y(15)
			 :
			 : [in] "r"(in), [out] "r"(out), [n] "i"(YIELDS)
			 : "rax", "rcx", "r11", "r12", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5",
			   "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

__attribute__((target("avx512f"))) static void cycle_zmm(const struct regs *in, struct regs *out)
{
	__asm__ volatile(LOAD_Y(0) LOAD_Y(1) LOAD_Y(2) LOAD_Y(3) LOAD_Y(4) LOAD_Y(5) LOAD_Y(6) LOAD_Y(7)
			 LOAD_Y(8) LOAD_Y(9) LOAD_Y(10) LOAD_Y(11) LOAD_Y(12) LOAD_Y(13) LOAD_Y(14) LOAD_Y(15)
			 LOAD_Z(0, 16) LOAD_Z(1, 17) LOAD_Z(2, 18) LOAD_Z(3, 19) LOAD_Z(4, 20) LOAD_Z(5, 21)
			 LOAD_Z(6, 22) LOAD_Z(7, 23) LOAD_Z(8, 24) LOAD_Z(9, 25) LOAD_Z(10, 26) LOAD_Z(11, 27)
			 LOAD_Z(12, 28) LOAD_Z(13, 29) LOAD_Z(14, 30) LOAD_Z(15, 31)
			 "mov %[n], %%r12d\n"
			 "1: mov $" SCHED_YIELD ", %%eax\n syscall\n dec %%r12d\n jnz 1b\n"
			 STORE_Y(0) STORE_Y(1) STORE_Y(2) STORE_Y(3) STORE_Y(4) STORE_Y(5) STORE_Y(6) STORE_Y(7)
			 STORE_Y(8) STORE_Y(9) STORE_Y(10) STORE_Y(11) STORE_Y(12) STORE_Y(13) STORE_Y(14) STORE_Y(15)
			 STORE_Z(0, 16) STORE_Z(1, 17) STORE_Z(2, 18) STORE_Z(3, 19) STORE_Z(4, 20) STORE_Z(5, 21)
			 STORE_Z(6, 22) STORE_Z(7, 23) STORE_Z(8, 24) STORE_Z(9, 25) STORE_Z(10, 26) STORE_Z(11, 27)
			 STORE_Z(12, 28) STORE_Z(13, 29) STORE_Z(14, 30) STORE_Z(15, 31)
			 :
			 : [in] "r"(in), [out] "r"(out), [n] "i"(YIELDS)
			 : "rax", "rcx", "r11", "r12", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5",
			   "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
			   "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25",
			   "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");
}

/* Returns the number of registers that came back different. */
static int check(uint8_t seed, bool zmm)
{
	static struct regs in, out;
	for (size_t i = 0; i < sizeof(in); i++)
		((uint8_t *)&in)[i] = (uint8_t)(seed + 31 * i + (i >> 8));
	memset(&out, 0, sizeof(out));
	if (zmm)
		cycle_zmm(&in, &out);
	else
		cycle_ymm(&in, &out);
	int bad = 0;
	for (int r = 0; r < 16; r++)
		bad += memcmp(in.ymm[r], out.ymm[r], 32) != 0;
	for (int r = 0; zmm && r < 16; r++)
		bad += memcmp(in.zmm[r], out.zmm[r], 64) != 0;
	return bad;
}

int main(void)
{
	bool zmm = false;
	if (!usable(&zmm)) {
		printf("VMON-TEST xstate=no-avx\n");
		return 0;
	}
	/* One CPU, so the two processes really take turns on it. */
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(0, &one);
	sched_setaffinity(0, sizeof(one), &one);
	fflush(stdout);
	pid_t child = fork();
	if (child == 0)
		_exit(check(0x5a, zmm) ? 1 : 0);
	int bad = check(0xa5, zmm);
	int status = 0;
	waitpid(child, &status, 0);
	int child_bad = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
	const char *what = zmm ? "ymm0-15,zmm16-31" : "ymm0-15";
	if (bad || child_bad) {
		printf("VMON-TEST xstate=corrupted regs=%s parent_bad=%d child_bad=%d\n", what, bad, child_bad);
		return 1;
	}
	printf("VMON-TEST xstate=ok regs=%s\n", what);
	return 0;
}
