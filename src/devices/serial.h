/*
 * A 16550A UART as found at COM1 on PCs: the guest's serial console.
 *
 * Transmission is instantaneous (no baud-rate timing): every byte written to THR reaches the
 * out callback at once, so THR and the transmitter always read back empty. Reception goes
 * through a 16-byte FIFO fed by serial_receive(), which applies backpressure instead of
 * dropping bytes. The interrupt output is gated by MCR.OUT2, as PC boards wire it.
 */
#ifndef VMON_DEVICES_SERIAL_H
#define VMON_DEVICES_SERIAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/device.h"

#define SERIAL_FIFO_SIZE 16
#define SERIAL_NUM_REGS 8 /* the port range the device decodes */

/* Register offsets from the base port. */
enum {
	SERIAL_REG_RBR_THR = 0, /* DLL when LCR.DLAB */
	SERIAL_REG_IER = 1,     /* DLM when LCR.DLAB */
	SERIAL_REG_IIR_FCR = 2,
	SERIAL_REG_LCR = 3,
	SERIAL_REG_MCR = 4,
	SERIAL_REG_LSR = 5,
	SERIAL_REG_MSR = 6,
	SERIAL_REG_SCR = 7,
};

struct serial {
	pthread_mutex_t lock; /* vCPU threads and the console input thread call in concurrently */
	struct irq_line irq;
	void (*out)(void *opaque, const uint8_t *buf, size_t len);
	void *out_opaque;
	/* Told when the guest has drained the RX FIFO after serial_receive() returned short. */
	void (*rx_ready)(void *opaque);
	void *rx_ready_opaque;
	bool rx_ready_wanted;

	/* Counters for metrics; not guest state. */
	_Atomic uint64_t accesses; /* register reads and writes */
	_Atomic uint64_t tx_bytes; /* bytes the guest sent to the console */
	_Atomic uint64_t rx_bytes; /* bytes the guest read from the console */
	_Atomic uint64_t overruns; /* bytes lost to a full receiver (LSR.OE) */

	/* Guest-visible state; everything below is saved and restored. */
	uint8_t ier;
	uint8_t lcr;
	uint8_t mcr;
	uint8_t lsr_errors; /* latched LSR error bits (OE), cleared by reading LSR */
	uint8_t msr;        /* status in bits 4-7, deltas in bits 0-3 */
	uint8_t scr;
	uint8_t dll;
	uint8_t dlm;
	uint8_t fcr;          /* FIFO enable, DMA mode and trigger bits as last programmed */
	bool thre_pending;    /* THR-empty interrupt latched: cleared by reading IIR or writing THR */
	uint8_t rx_fifo[SERIAL_FIFO_SIZE];
	uint8_t rx_head;
	uint8_t rx_count;

	int irq_level; /* the level last driven onto the interrupt line */
};

/*
 * out is called with the lock held, for every transmitted byte, in order; it must not call
 * back into this serial port.
 */
void serial_init(struct serial *s, struct irq_line irq,
		 void (*out)(void *opaque, const uint8_t *buf, size_t len), void *out_opaque);
void serial_destroy(struct serial *s);

extern const struct device_ops serial_ops;

struct serial_stats {
	uint64_t accesses, tx_bytes, rx_bytes, overruns;
};
/* A consistent-enough snapshot of the counters (each read atomically), for metrics. */
void serial_get_stats(struct serial *s, struct serial_stats *out);

/*
 * Feeds bytes typed by the user into the RX FIFO; returns how many were accepted (fewer than
 * len when the FIFO is full). Refused bytes are not lost from the guest's point of view: the
 * caller keeps them and retries, like a sender honouring flow control, so no overrun is
 * signalled. Thread-safe.
 */
size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len);

/*
 * Registers a callback run (with the serial lock held, so it must only signal, e.g. write an
 * eventfd) when the guest empties the RX FIFO after serial_receive() could not take
 * everything. Pass NULL to unregister; after that returns the callback is no longer running.
 */
void serial_set_rx_ready_cb(struct serial *s, void (*rx_ready)(void *opaque), void *opaque);

#endif
