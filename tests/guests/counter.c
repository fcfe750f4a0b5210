/*
 * Counts in a loop for the control-API tests: every iteration writes the counter to the POST
 * port 0x80 (one port-I/O exit each, so exit metrics move while the guest works), every
 * COUNTER_PRINT_EVERY iterations it prints "count: N" on the console, so a paused guest is seen
 * to stop printing. It also watches the keyboard controller: when Ctrl-Alt-Del arrives (set-1
 * scancodes, as the translating i8042 delivers them) it says so and powers off, as a guest OS
 * would shut down.
 */
#include "guest.h"

#define PROGRESS_PORT 0x80
#define COUNTER_PRINT_EVERY 2000
#define I8042_STATUS 0x64
#define I8042_DATA 0x60
#define STR_OBF 0x01
#define STR_AUXDATA 0x20

static unsigned int ctrl_alt_del_seen(uint8_t code)
{
	/* Ctrl (0x1d), Alt (0x38), then Delete (0xe0 0x53) while both are held. */
	static int ctrl, alt, extended;
	if (code == 0xe0) {
		extended = 1;
		return 0;
	}
	int was_extended = extended;
	extended = 0;
	switch (code) {
	case 0x1d: ctrl = 1; break;
	case 0x9d: ctrl = 0; break;
	case 0x38: alt = 1; break;
	case 0xb8: alt = 0; break;
	case 0x53: return was_extended && ctrl && alt;
	}
	return 0;
}

void guest_main(void *boot_params)
{
	(void)boot_params;
	puts("counter guest counting\n");
	for (uint64_t count = 1;; count++) {
		outl(PROGRESS_PORT, (uint32_t)count);
		if (count % COUNTER_PRINT_EVERY == 0) {
			puts("count: ");
			put_dec(count);
			putc('\n');
		}
		uint8_t st = inb(I8042_STATUS);
		if ((st & STR_OBF) && !(st & STR_AUXDATA) && ctrl_alt_del_seen(inb(I8042_DATA))) {
			puts("counter guest got Ctrl-Alt-Del, powering off\n");
			guest_poweroff();
		}
	}
}
