/*
 * SMP bring-up through the in-kernel LAPIC: the BSP wakes every AP with INIT-SIPI-SIPI, as
 * Linux does, and reports how many came up. The test compares that with --cpus.
 */
#include "guest.h"

#define AP_TRAMP_BASE 0x10000
#define LAPIC 0xfee00000ULL
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define ICR_ALL_BUT_SELF (3u << 18)
#define ICR_INIT 0x500
#define ICR_STARTUP 0x600
#define ICR_ASSERT (1u << 14)
#define ICR_LEVEL (1u << 15)
#define ICR_BUSY (1u << 12)

extern const char ap_tramp[], ap_tramp_end[], ap_tramp_cr3[];
extern volatile uint32_t ap_ticket;
static volatile uint32_t ap_arrived;

void ap_main(void);
void ap_main(void)
{
	__atomic_fetch_add(&ap_arrived, 1, __ATOMIC_SEQ_CST);
}

static void icr_send(uint32_t lo)
{
	mmio_write32(LAPIC + LAPIC_ICR_HI, 0);
	mmio_write32(LAPIC + LAPIC_ICR_LO, lo);
	for (int i = 0; i < 100000 && (mmio_read32(LAPIC + LAPIC_ICR_LO) & ICR_BUSY); i++)
		;
}

/* "smp.expect=N" on the command line lets the BSP stop waiting as soon as all N CPUs are up. */
static uint32_t expected_cpus(const uint8_t *boot_params)
{
	const char *cmdline = (const char *)(uint64_t)*(const uint32_t *)(boot_params + 0x228);
	const char *key = "smp.expect=";
	for (const char *p = cmdline; p && *p; p++) {
		int i = 0;
		while (key[i] && p[i] == key[i])
			i++;
		if (key[i])
			continue;
		uint32_t n = 0;
		for (p += i; *p >= '0' && *p <= '9'; p++)
			n = n * 10 + (uint32_t)(*p - '0');
		return n;
	}
	return 64;
}

void guest_main(void *boot_params)
{
	uint32_t expect = expected_cpus(boot_params);
	uint8_t *dst = (uint8_t *)AP_TRAMP_BASE;
	for (const char *p = ap_tramp; p < ap_tramp_end; p++)
		*dst++ = (uint8_t)*p;
	uint64_t cr3;
	__asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
	*(volatile uint32_t *)(AP_TRAMP_BASE + (ap_tramp_cr3 - ap_tramp)) = (uint32_t)cr3;

	mmio_write32(LAPIC + LAPIC_SVR, 0x1ff);
	icr_send(ICR_ALL_BUT_SELF | ICR_INIT | ICR_ASSERT | ICR_LEVEL);
	icr_send(ICR_ALL_BUT_SELF | ICR_STARTUP | (AP_TRAMP_BASE >> 12));
	icr_send(ICR_ALL_BUT_SELF | ICR_STARTUP | (AP_TRAMP_BASE >> 12));

	/* APs start in real mode, which some hosts emulate slowly: wait until the count stays
	 * unchanged for a long quiet period, measured with the TSC. */
	uint32_t seen = 0;
	uint64_t last_change = rdtsc();
	while (rdtsc() - last_change < 10000000000ULL) {
		uint32_t now = __atomic_load_n(&ap_arrived, __ATOMIC_SEQ_CST);
		if (now != seen) {
			seen = now;
			last_change = rdtsc();
		}
		if (now + 1 >= expect)
			break;
		__asm__ volatile("pause");
	}
	puts("SMP: ");
	put_dec(seen + 1);
	puts(" cpus up\n");
	guest_poweroff();
}
