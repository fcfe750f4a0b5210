/*
 * The PS/2 keyboard controller (i8042) at ports 0x60 (data) and 0x64 (status/command),
 * with a minimal keyboard and no mouse. Guests probe it without hanging, can reset the
 * machine through it (command 0xFE, or an output-port write with the reset bit clear), which
 * is how Linux reboots when nothing else works, and the host can type Ctrl-Alt-Del on the
 * keyboard, which is how a VM without ACPI is asked to shut down (PUT /vm/shutdown).
 * The keyboard answers the commands Linux's atkbd sends (reset, identify, LEDs, typematic,
 * scancode set, enable/disable) so the driver binds to it.
 */
#ifndef VMON_DEVICES_I8042_H
#define VMON_DEVICES_I8042_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/device.h"

#define I8042_DATA_PORT 0x60
#define I8042_CMD_PORT 0x64
#define I8042_KBD_QUEUE 16 /* bytes the keyboard holds for the controller, as a real one does */

struct i8042 {
	pthread_mutex_t lock;
	struct irq_line kbd_irq; /* IRQ 1 */
	void (*on_reset)(void *opaque); /* the guest pulsed the CPU reset line */
	void *opaque;

	/* Counters for metrics; not guest state. */
	_Atomic uint64_t accesses;     /* port reads and writes */
	_Atomic uint64_t keys_injected; /* scancode bytes typed by the host */
	_Atomic uint64_t errors;       /* unknown commands, injected keys dropped for lack of room */

	/* Guest-visible state; everything below is saved and restored. */
	uint8_t ram[32];       /* controller RAM; byte 0 is the command byte (CTR) */
	uint8_t out;           /* output buffer, valid while obf */
	bool obf;
	uint8_t status_flags;  /* latched status bits: AUXDATA, TIMEOUT, CMD/DATA */
	uint8_t pending_cmd;   /* a command waiting for its parameter on the data port; 0 = none */
	uint8_t output_port;

	/* The keyboard behind the first port. */
	uint8_t kbd_queue[I8042_KBD_QUEUE]; /* bytes waiting for the output buffer */
	uint8_t kbd_head;
	uint8_t kbd_count;
	uint8_t kbd_pending_cmd; /* a keyboard command waiting for its parameter; 0 = none */
	uint8_t kbd_set;         /* scancode set 1, 2 or 3 (2 after reset) */
	bool kbd_scanning;       /* sends keys (after reset and 0xF4; 0xF5 stops it) */

	int irq_level; /* the level last driven onto kbd_irq */
};

/* on_reset runs without the controller's lock held, on the vCPU thread that made the access. */
void i8042_init(struct i8042 *k, struct irq_line kbd_irq, void (*on_reset)(void *opaque),
		void *opaque);
void i8042_destroy(struct i8042 *k);

/*
 * Types Ctrl-Alt-Del (presses, then releases) on the keyboard in the scancode form the guest
 * reads (set 1 when the controller translates, else set 2). Thread-safe. Returns 0, -EAGAIN if
 * the guest has turned keyboard scanning off, or -ENOSPC if the keyboard buffer is full.
 */
int i8042_send_ctrl_alt_del(struct i8042 *k);

/* Data port (register at 0x60, len 1). Holds save/load/reset for the whole controller. */
extern const struct device_ops i8042_ops;
/* Status/command port (register at 0x64, len 1, same struct); its reset/save/load do nothing. */
extern const struct device_ops i8042_cmd_ops;

#endif
