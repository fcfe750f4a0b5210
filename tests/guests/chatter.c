/*
 * Prints numbered lines as fast as the UART takes them, forever: a guest whose console output
 * outruns any reader, for the tests of a stdout that is not being read.
 */
#include "guest.h"

void guest_main(void *boot_params)
{
	(void)boot_params;
	puts("chatter guest printing\n");
	for (uint64_t line = 1;; line++) {
		puts("chatter line ");
		put_dec(line);
		putc('\n');
	}
}
