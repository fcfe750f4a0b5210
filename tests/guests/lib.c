#include "guest.h"

#define COM1 0x3f8
#define LSR_THRE 0x20
#define ACPI_PM1A_CNT 0x604
#define SLP_TYP_S5 (5u << 10)
#define SLP_EN (1u << 13)

void putc(char c)
{
	if (c == '\n')
		putc('\r');
	/* Bounded wait: a UART that never empties must not hang the test forever. */
	for (int i = 0; i < 100000 && !(inb(COM1 + 5) & LSR_THRE); i++)
		;
	outb(COM1, (uint8_t)c);
}

void puts(const char *s)
{
	while (*s)
		putc(*s++);
}

void put_dec(uint64_t v)
{
	char buf[21];
	int i = 20;
	buf[i] = 0;
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	puts(&buf[i]);
}

void put_hex(uint64_t v)
{
	puts("0x");
	for (int i = 60; i >= 0; i -= 4)
		putc("0123456789abcdef"[(v >> i) & 0xf]);
}

void guest_poweroff(void)
{
	outw(ACPI_PM1A_CNT, SLP_TYP_S5 | SLP_EN);
	for (;;)
		__asm__ volatile("cli; hlt");
}

void guest_fail_triple_fault(void)
{
	static const struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) empty_idt = { 0, 0 };
	__asm__ volatile("lidt %0; int3" ::"m"(empty_idt));
	for (;;)
		;
}

void guest_fail(const char *msg)
{
	puts("FAIL: ");
	puts(msg);
	putc('\n');
	guest_fail_triple_fault();
}
