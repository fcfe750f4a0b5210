/* Prints a line and then sleeps forever with interrupts off: only vmon can end this VM. */
#include "guest.h"

void guest_main(void *boot_params)
{
	(void)boot_params;
	puts("idle guest sleeping\n");
	for (;;)
		__asm__ volatile("cli; hlt");
}
