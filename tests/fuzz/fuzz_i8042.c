/*
 * libFuzzer target: the i8042 keyboard controller's data and command ports (see fuzz_ops.h),
 * with host Ctrl-Alt-Del presses in between (an access with extra bits set).
 * Build and run: make fuzz && build/fuzz/fuzz_i8042 tests/fuzz/corpus_i8042
 */
#include "devices/i8042.h"
#include "fuzz_ops.h"
#include "lib/log.h"

static struct bus pio;
static struct i8042 kbd;

static void on_reset(void *opaque) { (void)opaque; }

static void host_presses(void *dev, const struct fuzz_op *op)
{
	(void)op;
	(void)i8042_send_ctrl_alt_del(dev);
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
	i8042_init(&kbd, (struct irq_line){ 0 }, on_reset, NULL);
	fuzz_check(bus_register(&pio, I8042_DATA_PORT, 1, &i8042_ops, &kbd) == 0, "bus_register data");
	fuzz_check(bus_register(&pio, I8042_CMD_PORT, 1, &i8042_cmd_ops, &kbd) == 0, "bus_register cmd");
	/* Ports 0x60..0x64: the two the controller decodes and three nobody claims. */
	fuzz_port_device(&pio, &i8042_ops, &kbd, I8042_DATA_PORT, 5, data, size, host_presses);
	bus_unregister(&pio, I8042_DATA_PORT);
	bus_unregister(&pio, I8042_CMD_PORT);
	i8042_destroy(&kbd);
	return 0;
}
