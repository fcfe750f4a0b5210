/*
 * HLT with interrupts: the in-kernel PIT ticks through the in-kernel PIC, each `sti; hlt`
 * sleeps until the next tick. Checks that a halted vCPU wakes on interrupts and that the
 * interrupt path (PIT -> PIC -> LAPIC -> IDT) works.
 */
#include "guest.h"

#define TICKS_WANTED 20
#define PIT_HZ 1193182
#define TICK_HZ 100

struct idt_gate {
	uint16_t off_lo, sel;
	uint8_t ist, type;
	uint16_t off_mid;
	uint32_t off_hi, zero;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(16)));
volatile uint32_t ticks;

void timer_isr(void);
__asm__(".text\n"
	"timer_isr:\n"
	"  push %rax\n"
	"  lock incl ticks(%rip)\n"
	"  mov $0x20, %al\n"
	"  out %al, $0x20\n" /* EOI to the master PIC */
	"  pop %rax\n"
	"  iretq\n");

static void set_gate(int vec, void (*fn)(void))
{
	uint64_t a = (uint64_t)fn;
	uint16_t cs;
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	idt[vec] = (struct idt_gate){ .off_lo = (uint16_t)a, .sel = cs, .type = 0x8e,
				      .off_mid = (uint16_t)(a >> 16), .off_hi = (uint32_t)(a >> 32) };
}

void guest_main(void *boot_params)
{
	(void)boot_params;
	set_gate(0x20, timer_isr);
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr = { sizeof(idt) - 1, (uint64_t)idt };
	__asm__ volatile("lidt %0" ::"m"(idtr));

	/* Master PIC: ICW1..4, vectors from 0x20, then unmask only IRQ0; slave fully masked. */
	outb(0x20, 0x11); outb(0x21, 0x20); outb(0x21, 0x04); outb(0x21, 0x01);
	outb(0xa0, 0x11); outb(0xa1, 0x28); outb(0xa1, 0x02); outb(0xa1, 0x01);
	outb(0x21, 0xfe); outb(0xa1, 0xff);
	/* PIT channel 0, rate generator. */
	uint16_t div = PIT_HZ / TICK_HZ;
	outb(0x43, 0x34); outb(0x40, (uint8_t)div); outb(0x40, (uint8_t)(div >> 8));

	uint32_t halts = 0;
	while (ticks < TICKS_WANTED) {
		__asm__ volatile("sti; hlt; cli");
		halts++;
	}
	puts("timer ticks: ");
	put_dec(ticks);
	puts(", halts: ");
	put_dec(halts);
	putc('\n');
	guest_poweroff();
}
