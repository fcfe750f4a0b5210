/*
 * The PS/2 keyboard controller (i8042) at ports 0x60 (data) and 0x64 (status/command),
 * with no keyboard or mouse attached. It exists so that guests can probe it without
 * hanging and can reset the machine through it (command 0xFE, or an output-port write
 * with the reset bit clear), which is how Linux reboots when nothing else works.
 */
#ifndef VMON_DEVICES_I8042_H
#define VMON_DEVICES_I8042_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/device.h"

#define I8042_DATA_PORT 0x60
#define I8042_CMD_PORT 0x64

struct i8042 {
	pthread_mutex_t lock;
	struct irq_line kbd_irq; /* IRQ 1 */
	void (*on_reset)(void *opaque); /* the guest pulsed the CPU reset line */
	void *opaque;

	/* Guest-visible state; everything below is saved and restored. */
	uint8_t ram[32];       /* controller RAM; byte 0 is the command byte (CTR) */
	uint8_t out;           /* output buffer, valid while obf */
	bool obf;
	uint8_t status_flags;  /* latched status bits: AUXDATA, TIMEOUT, CMD/DATA */
	uint8_t pending_cmd;   /* a command waiting for its parameter on the data port; 0 = none */
	uint8_t output_port;

	int irq_level; /* the level last driven onto kbd_irq */
};

/* on_reset runs without the controller's lock held, on the vCPU thread that made the access. */
void i8042_init(struct i8042 *k, struct irq_line kbd_irq, void (*on_reset)(void *opaque),
		void *opaque);
void i8042_destroy(struct i8042 *k);

/* Data port (register at 0x60, len 1). Holds save/load/reset for the whole controller. */
extern const struct device_ops i8042_ops;
/* Status/command port (register at 0x64, len 1, same struct); its reset/save/load do nothing. */
extern const struct device_ops i8042_cmd_ops;

#endif
