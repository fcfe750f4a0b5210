/*
 * Guest console output, buffered and written by its own thread.
 *
 * The UART hands output over on a vCPU thread while holding the serial lock, so writing to
 * stdout there would let a reader that stops reading (a paused pager, a full pipe) stall the
 * guest and keep vmon from stopping. Instead the vCPU appends to a bounded ring and never
 * waits; a writer thread drains the ring into the file descriptor. When the ring is full,
 * output is dropped and counted (with a rate-limited warning from the writer thread).
 */
#ifndef VMON_DEVICES_CONSOLE_OUTPUT_H
#define VMON_DEVICES_CONSOLE_OUTPUT_H

#include <stddef.h>
#include <stdint.h>

#define CONSOLE_OUTPUT_DEFAULT_CAPACITY (256 * 1024)
/* How long a clean shutdown waits for the reader to take what is still buffered. */
#define CONSOLE_OUTPUT_FLUSH_MS 500

struct console_output;

/*
 * Starts the writer thread for fd (not closed by console_output_stop). This is the only place
 * the writer thread is started. Returns 0 or a negative errno (reported).
 */
int console_output_start(struct console_output **out, int fd, size_t capacity);

/*
 * Appends guest output; never blocks on fd. Usable as the serial out callback (opaque is
 * the struct console_output).
 */
void console_output_write(void *opaque, const uint8_t *buf, size_t len);

/* Bytes dropped so far because the buffer was full. */
uint64_t console_output_dropped(struct console_output *o);

/*
 * Writes what is still buffered for at most flush_ms (0: nothing), then ends the writer
 * thread even if it is stuck in write(), reports dropped output once, and frees o. NULL is
 * ignored.
 */
void console_output_stop(struct console_output *o, unsigned int flush_ms);

#endif
