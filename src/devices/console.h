/*
 * The host terminal as the guest's serial console: keystrokes go to the UART (guest output
 * goes to stdout through devices/console_output.h). Ctrl-A is the escape key (see
 * docs/console.md): Ctrl-A x quits, Ctrl-A h prints help, Ctrl-A Ctrl-A sends one Ctrl-A to
 * the guest.
 */
#ifndef VMON_DEVICES_CONSOLE_H
#define VMON_DEVICES_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/serial.h"

#define CONSOLE_ESCAPE_KEY 0x01 /* Ctrl-A */

struct console;

/*
 * Puts stdin in raw mode if it is a terminal (restored by console_stop, at exit, on fatal
 * signals, or by console_restore_terminal), and starts the input thread, which feeds stdin
 * to serial_receive() with backpressure. on_quit runs on the input thread when the user
 * types the quit sequence; it must not call console_stop (ask another thread to). When stdin
 * is not a terminal, no mode is changed and end of input only ends the input thread.
 * Returns 0 or a negative errno.
 */
int console_start(struct console **out, struct serial *s, void (*on_quit)(void *opaque),
		  void *opaque);

/* Stops the input thread, restores the terminal, frees c. NULL is ignored. */
void console_stop(struct console *c);

/* Restores the terminal mode if the console changed it. Async-signal-safe and idempotent. */
void console_restore_terminal(void);

/* The escape-sequence parser, a pure state machine so it can be tested on its own. */
enum console_key_action {
	CONSOLE_KEY_FORWARD, /* send out[0..*nout) to the guest (possibly nothing) */
	CONSOLE_KEY_QUIT,
	CONSOLE_KEY_HELP,
};

struct console_escape {
	bool after_escape; /* the previous key was the escape key */
};

/* Feeds one key typed by the user. */
enum console_key_action console_escape_feed(struct console_escape *e, uint8_t key, uint8_t out[2],
					    size_t *nout);

#endif
