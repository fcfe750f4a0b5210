/* What a guest's i8042 driver and reboot code observe of the emulated keyboard controller. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>

#include "devices/i8042.h"

#define STR_OBF 0x01
#define STR_IBF 0x02
#define STR_SYS 0x04
#define STR_AUXDATA 0x20
#define STR_TIMEOUT 0x40

struct fixture {
	struct i8042 kbc;
	int resets;
	int irq_level;
	int irq_calls;
};

static void count_reset(void *opaque)
{
	struct fixture *f = opaque;
	f->resets++;
}

static void record_irq(void *opaque, unsigned int gsi, int level)
{
	struct fixture *f = opaque;
	assert_int_equal(gsi, 1);
	f->irq_level = level;
	f->irq_calls++;
}

static int setup(void **state)
{
	struct fixture *f = test_calloc(1, sizeof(*f));
	struct irq_line irq = { .set = record_irq, .opaque = f, .gsi = 1 };
	i8042_init(&f->kbc, irq, count_reset, f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	i8042_destroy(&f->kbc);
	test_free(f);
	return 0;
}

static uint8_t status(struct fixture *f)
{
	uint8_t v = 0;
	i8042_cmd_ops.read(&f->kbc, 0, &v, 1);
	return v;
}

static void cmd(struct fixture *f, uint8_t c)
{
	/* Like Linux's i8042_wait_write: never write while IBF is set. */
	assert_false(status(f) & STR_IBF);
	i8042_cmd_ops.write(&f->kbc, 0, &c, 1);
}

static void data_out(struct fixture *f, uint8_t v)
{
	assert_false(status(f) & STR_IBF);
	i8042_ops.write(&f->kbc, 0, &v, 1);
}

static uint8_t data_in(struct fixture *f)
{
	uint8_t v = 0;
	i8042_ops.read(&f->kbc, 0, &v, 1);
	return v;
}

/* A controller command answered with one byte, as Linux's __i8042_command reads it. */
static uint8_t cmd_reply(struct fixture *f, uint8_t c)
{
	cmd(f, c);
	assert_true(status(f) & STR_OBF);
	return data_in(f);
}

static void test_reset_on_pulse_command(void **state)
{
	struct fixture *f = *state;

	/* Linux's BOOT_KBD reboot: wait for IBF clear, then pulse the reset line. */
	cmd(f, 0xfe);
	assert_int_equal(f->resets, 1);
	cmd(f, 0xff); /* pulses no line */
	assert_int_equal(f->resets, 1);
}

static void test_reset_on_output_port_write(void **state)
{
	struct fixture *f = *state;

	cmd(f, 0xd1);
	data_out(f, 0x03); /* reset inactive, A20 on */
	assert_int_equal(f->resets, 0);
	assert_int_equal(cmd_reply(f, 0xd0), 0x03);
	cmd(f, 0xd1);
	data_out(f, 0x02); /* bit 0 clear: reset */
	assert_int_equal(f->resets, 1);
}

static void test_self_tests(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(cmd_reply(f, 0xaa), 0x55);
	assert_true(status(f) & STR_SYS);
	assert_int_equal(cmd_reply(f, 0xab), 0x00);
	assert_false(status(f) & STR_OBF);
	assert_int_equal(f->resets, 0);
}

static void test_command_byte_read_write(void **state)
{
	struct fixture *f = *state;

	/* Linux reads the CTR until two reads agree, then writes it back modified. */
	uint8_t ctr = cmd_reply(f, 0x20);
	assert_int_equal(cmd_reply(f, 0x20), ctr);
	assert_true(ctr & 0x40); /* translated mode, as a BIOS leaves it */
	cmd(f, 0x60);
	data_out(f, (uint8_t)((ctr | 0x10) & ~0x01));
	assert_int_equal(cmd_reply(f, 0x20), (ctr | 0x10) & ~0x01);

	/* Port enable/disable commands show up in the command byte. */
	cmd(f, 0xae);
	assert_false(cmd_reply(f, 0x20) & 0x10);
	cmd(f, 0xad);
	assert_true(cmd_reply(f, 0x20) & 0x10);
	cmd(f, 0xa8);
	assert_false(cmd_reply(f, 0x20) & 0x20);
	cmd(f, 0xa7);
	assert_true(cmd_reply(f, 0x20) & 0x20);
}

static void test_flush_terminates(void **state)
{
	struct fixture *f = *state;

	/* i8042_flush reads while OBF is set; the buffer must run dry. */
	cmd(f, 0x20);
	int reads = 0;
	while ((status(f) & STR_OBF) && reads < 16) {
		data_in(f);
		reads++;
	}
	assert_int_equal(reads, 1);
}

static void test_absent_devices_answer_at_once(void **state)
{
	struct fixture *f = *state;

	/* A byte for the keyboard gets the no-device reply immediately, with the timeout bit. */
	data_out(f, 0xf2);
	uint8_t st = status(f);
	assert_true(st & STR_OBF);
	assert_true(st & STR_TIMEOUT);
	assert_false(st & STR_AUXDATA);
	assert_int_equal(data_in(f), 0xfe);
	assert_false(status(f) & (STR_OBF | STR_TIMEOUT));

	/* AUX loopback comes back marked as mouse data. */
	cmd(f, 0xd3);
	data_out(f, 0x5a);
	assert_int_equal(status(f) & (STR_OBF | STR_AUXDATA), STR_OBF | STR_AUXDATA);
	assert_int_equal(data_in(f), 0x5a);

	assert_int_equal(cmd_reply(f, 0xa9), 0x00);
}

static void test_keyboard_irq_follows_obf_and_ctr(void **state)
{
	struct fixture *f = *state;

	cmd(f, 0x60);
	data_out(f, 0x44); /* XLATE, SYS, no interrupts */
	cmd(f, 0xd2);
	data_out(f, 0x1c);
	assert_int_equal(f->irq_level, 0);
	data_in(f);

	cmd(f, 0x60);
	data_out(f, 0x45); /* keyboard interrupt on */
	cmd(f, 0xd2);
	data_out(f, 0x1c);
	assert_int_equal(f->irq_level, 1);
	assert_int_equal(data_in(f), 0x1c);
	assert_int_equal(f->irq_level, 0);

	/* Mouse data does not raise the keyboard IRQ. */
	cmd(f, 0xd3);
	data_out(f, 0x00);
	assert_int_equal(f->irq_level, 0);
}

static void test_save_load(void **state)
{
	struct fixture *f = *state;
	uint8_t blob[128];

	cmd(f, 0x60);
	data_out(f, 0x47);
	cmd(f, 0xaa);
	long n = i8042_ops.save(&f->kbc, blob, sizeof(blob));
	assert_true(n > 0);
	assert_int_equal(i8042_ops.save(&f->kbc, blob, 2), -ENOSPC);
	assert_int_equal(i8042_cmd_ops.save(&f->kbc, blob + n, sizeof(blob) - (size_t)n), 0);

	struct fixture g = { 0 };
	struct irq_line irq = { .set = record_irq, .opaque = &g, .gsi = 1 };
	i8042_init(&g.kbc, irq, count_reset, &g);
	assert_int_equal(i8042_ops.load(&g.kbc, blob, (size_t)n), 0);
	assert_int_equal(g.irq_level, 1); /* the pending self-test reply interrupts */
	assert_int_equal(data_in(&g), 0x55);
	assert_int_equal(cmd_reply(&g, 0x20), 0x47);
	assert_int_equal(i8042_ops.load(&g.kbc, blob, (size_t)n - 1), -EINVAL);
	blob[0] = 7;
	assert_int_equal(i8042_ops.load(&g.kbc, blob, (size_t)n), -EINVAL);
	i8042_destroy(&g.kbc);

	i8042_ops.reset(&f->kbc);
	assert_false(status(f) & STR_OBF);
	assert_int_equal(f->irq_level, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_reset_on_pulse_command, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_on_output_port_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_self_tests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_command_byte_read_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush_terminates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_absent_devices_answer_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keyboard_irq_follows_obf_and_ctr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
