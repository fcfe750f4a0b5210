/* Reads one line from the serial console (polling the UART) and prints it back upper-cased. */
#include "guest.h"

#define COM1 0x3f8
#define LSR_DR 0x01

static char getc_blocking(void)
{
	while (!(inb(COM1 + 5) & LSR_DR))
		__asm__ volatile("pause");
	return (char)inb(COM1);
}

void guest_main(void *boot_params)
{
	(void)boot_params;
	char line[128];
	unsigned n = 0;
	puts("echo ready\n");
	for (;;) {
		char c = getc_blocking();
		if (c == '\n' || c == '\r' || n == sizeof(line) - 1)
			break;
		line[n++] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
	}
	line[n] = 0;
	puts("got: ");
	puts(line);
	putc('\n');
	guest_poweroff();
}
