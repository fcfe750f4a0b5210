/*
 * libFuzzer target: the 16550A serial port's registers (see fuzz_ops.h), with host input
 * arriving in between (an access with extra bits set types its value's bytes instead).
 * Build and run: make fuzz && build/fuzz/fuzz_serial tests/fuzz/corpus_serial
 */
#include "devices/serial.h"
#include "fuzz_ops.h"
#include "lib/log.h"

#define COM1 0x3f8

static struct bus pio;
static struct serial com1;

/* What the console backend would do with the guest's output: read every byte. */
static void check_out(void *opaque, const uint8_t *buf, size_t len)
{
	(void)opaque;
	uint8_t copy[256];
	for (size_t done = 0; done < len; done += sizeof(copy))
		memcpy(copy, buf + done, len - done < sizeof(copy) ? len - done : sizeof(copy));
}

static void host_types(void *dev, const struct fuzz_op *op)
{
	uint8_t bytes[8];
	memcpy(bytes, &op->val, sizeof(bytes));
	size_t n = op->extra % 8 + 1;
	fuzz_check(serial_receive(dev, bytes, n) <= n, "serial_receive took more than it was given");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	log_set_level(LOG_ERROR);
	bus_init(&pio, "pio");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	serial_init(&com1, (struct irq_line){ 0 }, check_out, NULL);
	fuzz_check(bus_register(&pio, COM1, SERIAL_NUM_REGS, &serial_ops, &com1) == 0, "bus_register");
	fuzz_port_device(&pio, &serial_ops, &com1, COM1, SERIAL_NUM_REGS, data, size, host_types);
	bus_unregister(&pio, COM1);
	serial_destroy(&com1);
	return 0;
}
