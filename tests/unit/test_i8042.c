/* What a guest's i8042 driver and reboot code observe of the emulated keyboard controller. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdatomic.h>

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

static void test_absent_mouse_answers_at_once(void **state)
{
	struct fixture *f = *state;

	/* A byte for the mouse gets the no-device reply immediately, with the timeout bit. */
	cmd(f, 0xd4);
	data_out(f, 0xf2);
	uint8_t st = status(f);
	assert_true(st & STR_OBF);
	assert_true(st & STR_TIMEOUT);
	assert_true(st & STR_AUXDATA);
	assert_int_equal(data_in(f), 0xfe);
	assert_false(status(f) & (STR_OBF | STR_TIMEOUT));

	/* AUX loopback comes back marked as mouse data. */
	cmd(f, 0xd3);
	data_out(f, 0x5a);
	assert_int_equal(status(f) & (STR_OBF | STR_AUXDATA), STR_OBF | STR_AUXDATA);
	assert_int_equal(data_in(f), 0x5a);

	assert_int_equal(cmd_reply(f, 0xa9), 0x00);
}

/* Reads every byte the keyboard sends after a command, as Linux's ps2_command collects them. */
static size_t kbd_answer(struct fixture *f, uint8_t command, uint8_t *buf, size_t cap)
{
	data_out(f, command);
	size_t n = 0;
	while ((status(f) & STR_OBF) && n < cap) {
		assert_false(status(f) & (STR_AUXDATA | STR_TIMEOUT));
		buf[n++] = data_in(f);
	}
	return n;
}

static void test_keyboard_answers_atkbd_probe(void **state)
{
	struct fixture *f = *state;
	uint8_t r[8];

	/* Identify, translated (the controller's default): ACK, 0xab, 0x41. */
	assert_int_equal(kbd_answer(f, 0xf2, r, sizeof(r)), 3);
	assert_memory_equal(r, ((uint8_t[]){ 0xfa, 0xab, 0x41 }), 3);
	/* Reset: ACK then the self-test passed code. */
	assert_int_equal(kbd_answer(f, 0xff, r, sizeof(r)), 2);
	assert_memory_equal(r, ((uint8_t[]){ 0xfa, 0xaa }), 2);
	/* LEDs: ACK for the command and for its parameter. */
	assert_int_equal(kbd_answer(f, 0xed, r, sizeof(r)), 1);
	assert_int_equal(r[0], 0xfa);
	assert_int_equal(kbd_answer(f, 0x07, r, sizeof(r)), 1);
	assert_int_equal(r[0], 0xfa);
	/* Scancode set query: set 2, reported translated as 0x41. */
	kbd_answer(f, 0xf0, r, sizeof(r));
	assert_int_equal(kbd_answer(f, 0x00, r, sizeof(r)), 2);
	assert_memory_equal(r, ((uint8_t[]){ 0xfa, 0x41 }), 2);
	/* Echo and an unknown command. */
	assert_int_equal(kbd_answer(f, 0xee, r, sizeof(r)), 1);
	assert_int_equal(r[0], 0xee);
	assert_int_equal(kbd_answer(f, 0x01, r, sizeof(r)), 1);
	assert_int_equal(r[0], 0xfe);

	/* Untranslated, the ID's second byte is the keyboard's own. */
	cmd(f, 0x60);
	data_out(f, 0x05);
	assert_int_equal(kbd_answer(f, 0xf2, r, sizeof(r)), 3);
	assert_memory_equal(r, ((uint8_t[]){ 0xfa, 0xab, 0x83 }), 3);
}

static void test_ctrl_alt_del_set1_with_an_edge_per_byte(void **state)
{
	struct fixture *f = *state;
	static const uint8_t want[] = { 0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d };

	assert_int_equal(i8042_send_ctrl_alt_del(&f->kbc), 0);
	assert_int_equal(f->irq_level, 1);
	for (size_t i = 0; i < sizeof(want); i++) {
		assert_true(status(f) & STR_OBF);
		int rises = f->irq_calls;
		assert_int_equal(data_in(f), want[i]);
		if (i + 1 < sizeof(want)) {
			/* lowered and raised again: a new edge for the next byte */
			assert_int_equal(f->irq_calls - rises, 2);
			assert_int_equal(f->irq_level, 1);
		}
	}
	assert_false(status(f) & STR_OBF);
	assert_int_equal(f->irq_level, 0);
	assert_int_equal(atomic_load(&f->kbc.keys_injected), sizeof(want));
}

static void test_ctrl_alt_del_set2_and_port_disable(void **state)
{
	struct fixture *f = *state;
	static const uint8_t want[] = { 0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14 };

	cmd(f, 0x60);
	data_out(f, 0x05); /* no translation: set 2 reaches the guest */
	cmd(f, 0xad);      /* keyboard port disabled: keys wait in the keyboard */
	assert_int_equal(i8042_send_ctrl_alt_del(&f->kbc), 0);
	assert_false(status(f) & STR_OBF);
	cmd(f, 0xae);
	for (size_t i = 0; i < sizeof(want); i++)
		assert_int_equal(data_in(f), want[i]);
	assert_false(status(f) & STR_OBF);
}

static void test_ctrl_alt_del_refused_when_scanning_off_or_full(void **state)
{
	struct fixture *f = *state;
	uint8_t r[4];

	kbd_answer(f, 0xf5, r, sizeof(r)); /* scanning off */
	assert_int_equal(i8042_send_ctrl_alt_del(&f->kbc), -EAGAIN);
	kbd_answer(f, 0xf4, r, sizeof(r));
	assert_int_equal(i8042_send_ctrl_alt_del(&f->kbc), 0);
	/* 8 bytes queued (one of them in the output buffer); a third sequence does not fit. */
	assert_int_equal(i8042_send_ctrl_alt_del(&f->kbc), 0);
	assert_int_equal(i8042_send_ctrl_alt_del(&f->kbc), -ENOSPC);
	assert_true(atomic_load(&f->kbc.errors) >= 2);
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
		cmocka_unit_test_setup_teardown(test_absent_mouse_answers_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keyboard_answers_atkbd_probe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ctrl_alt_del_set1_with_an_edge_per_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ctrl_alt_del_set2_and_port_disable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ctrl_alt_del_refused_when_scanning_off_or_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keyboard_irq_follows_obf_and_ctr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
