/* Port-I/O console output and a clean ACPI power-off: vmon must print the line and exit 0. */
#include "guest.h"

void guest_main(void *boot_params)
{
	(void)boot_params;
	puts("hello from the vmon test guest\n");
	/* Reads from a port nobody claims must see an empty bus (all ones), and writes must be dropped. */
	outb(0x2e0, 0x12);
	if (inb(0x2e0) != 0xff)
		guest_fail("unclaimed port did not read 0xff");
	puts("PASS\n");
	guest_poweroff();
}
