/* The little runtime of vmon's test guests: console output, exit, port and MMIO access. */
#ifndef VMON_TEST_GUEST_H
#define VMON_TEST_GUEST_H

#include <stdint.h>

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}
static inline void mmio_write32(uint64_t addr, uint32_t v) { *(volatile uint32_t *)addr = v; }
static inline uint32_t mmio_read32(uint64_t addr) { return *(volatile uint32_t *)addr; }

void putc(char c);
void puts(const char *s);
void put_dec(uint64_t v);
void put_hex(uint64_t v);
/* Powers the VM off through the ACPI PM1a control register: vmon exits 0. */
__attribute__((noreturn)) void guest_poweroff(void);
/* Crashes the VM on purpose with a triple fault: vmon exits non-zero. */
__attribute__((noreturn)) void guest_fail_triple_fault(void);
/* Prints "FAIL: msg" and triple-faults. */
__attribute__((noreturn)) void guest_fail(const char *msg);

void guest_main(void *boot_params);

#endif
