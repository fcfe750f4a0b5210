/* Reports a kernel panic through pvpanic, as Linux's pvpanic driver does. */
#include "guest.h"

void guest_main(void *boot_params)
{
	(void)boot_params;
	if ((inb(0x505) & 1) == 0)
		guest_fail("pvpanic does not offer the PANICKED event");
	puts("panicking through pvpanic\n");
	outb(0x505, 1);
	for (;;)
		__asm__ volatile("cli; hlt");
}
