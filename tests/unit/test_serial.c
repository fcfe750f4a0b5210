/* What a guest's 8250 driver and the user at the console observe of the emulated 16550A. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "devices/serial.h"

struct fixture {
	struct serial uart;
	uint8_t out[256];
	size_t out_len;
	int irq_level;
	int irq_calls;
	int rx_ready_calls;
};

static void record_out(void *opaque, const uint8_t *buf, size_t len)
{
	struct fixture *f = opaque;
	for (size_t i = 0; i < len && f->out_len < sizeof(f->out); i++)
		f->out[f->out_len++] = buf[i];
}

static void record_irq(void *opaque, unsigned int gsi, int level)
{
	struct fixture *f = opaque;
	assert_int_equal(gsi, 4);
	f->irq_level = level;
	f->irq_calls++;
}

static void count_rx_ready(void *opaque)
{
	struct fixture *f = opaque;
	f->rx_ready_calls++;
}

static int setup(void **state)
{
	struct fixture *f = test_calloc(1, sizeof(*f));
	struct irq_line irq = { .set = record_irq, .opaque = f, .gsi = 4 };
	serial_init(&f->uart, irq, record_out, f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	serial_destroy(&f->uart);
	test_free(f);
	return 0;
}

static uint8_t inb(struct fixture *f, unsigned int reg)
{
	uint8_t v = 0;
	serial_ops.read(&f->uart, reg, &v, 1);
	return v;
}

static void outb(struct fixture *f, unsigned int reg, uint8_t v)
{
	serial_ops.write(&f->uart, reg, &v, 1);
}

static void test_thr_bytes_reach_out_callback(void **state)
{
	struct fixture *f = *state;
	const char *msg = "Linux version 6.1\r\n";

	for (const char *p = msg; *p; p++) {
		/* A polling console driver waits for THRE before each byte. */
		assert_true(inb(f, SERIAL_REG_LSR) & 0x20);
		outb(f, SERIAL_REG_RBR_THR, (uint8_t)*p);
	}
	assert_int_equal(f->out_len, strlen(msg));
	assert_memory_equal(f->out, msg, strlen(msg));
	assert_int_equal(inb(f, SERIAL_REG_LSR) & 0x60, 0x60); /* THRE and TEMT: all sent */
}

static void test_dlab_switches_divisor_latch(void **state)
{
	struct fixture *f = *state;

	outb(f, SERIAL_REG_IER, 0x05);
	outb(f, SERIAL_REG_LCR, 0x83); /* DLAB, 8N1 */
	outb(f, SERIAL_REG_RBR_THR, 0x01); /* 115200 baud */
	outb(f, SERIAL_REG_IER, 0x00);
	assert_int_equal(inb(f, SERIAL_REG_RBR_THR), 0x01);
	assert_int_equal(inb(f, SERIAL_REG_IER), 0x00);
	assert_int_equal(f->out_len, 0); /* writing DLL transmits nothing */

	outb(f, SERIAL_REG_LCR, 0x03);
	assert_int_equal(inb(f, SERIAL_REG_LCR), 0x03);
	assert_int_equal(inb(f, SERIAL_REG_IER), 0x05); /* IER untouched by the DLM write */
	outb(f, SERIAL_REG_RBR_THR, 'x');
	assert_int_equal(f->out_len, 1);

	outb(f, SERIAL_REG_LCR, 0x83);
	assert_int_equal(inb(f, SERIAL_REG_RBR_THR), 0x01); /* DLL survived the THR write */
}

/* The probe sequence of Linux's 8250 autoconfig() and autoconfig_16550a(). */
static void test_linux_autoconfig_identifies_16550a(void **state)
{
	struct fixture *f = *state;

	/* IER existence test. */
	uint8_t saved_ier = inb(f, SERIAL_REG_IER);
	outb(f, SERIAL_REG_IER, 0);
	assert_int_equal(inb(f, SERIAL_REG_IER) & 0x0f, 0);
	outb(f, SERIAL_REG_IER, 0x0f);
	assert_int_equal(inb(f, SERIAL_REG_IER) & 0x0f, 0x0f);
	outb(f, SERIAL_REG_IER, saved_ier);

	/* Loopback test: RTS and OUT2 come back as CTS and DCD. */
	uint8_t saved_mcr = inb(f, SERIAL_REG_MCR);
	uint8_t saved_lcr = inb(f, SERIAL_REG_LCR);
	outb(f, SERIAL_REG_MCR, 0x10 | 0x0a);
	assert_int_equal(inb(f, SERIAL_REG_MSR) & 0xf0, 0x90);
	outb(f, SERIAL_REG_MCR, saved_mcr);

	/* FIFO detection: IIR bits 6-7 both set means 16550A. */
	outb(f, SERIAL_REG_LCR, 0xbf);
	outb(f, SERIAL_REG_IIR_FCR, 0); /* EFR on newer parts, FCR here */
	outb(f, SERIAL_REG_LCR, 0);
	outb(f, SERIAL_REG_IIR_FCR, 0x01);
	assert_int_equal(inb(f, SERIAL_REG_IIR_FCR) >> 6, 3);

	/* No EFR, in either configuration mode: not a 16650 or later. */
	outb(f, SERIAL_REG_LCR, 0x80);
	assert_int_not_equal(inb(f, SERIAL_REG_IIR_FCR), 0);
	outb(f, SERIAL_REG_LCR, 0xbf);
	assert_int_not_equal(inb(f, SERIAL_REG_IIR_FCR), 0);

	/* Not a TI16750: the 64-byte FIFO bit never shows in IIR. */
	outb(f, SERIAL_REG_LCR, 0);
	outb(f, SERIAL_REG_IIR_FCR, 0x21);
	assert_int_equal(inb(f, SERIAL_REG_IIR_FCR) & 0xe0, 0xc0);
	outb(f, SERIAL_REG_IIR_FCR, 0x01);
	outb(f, SERIAL_REG_LCR, 0x80);
	outb(f, SERIAL_REG_IIR_FCR, 0x21);
	assert_int_equal(inb(f, SERIAL_REG_IIR_FCR) & 0xe0, 0xc0);
	outb(f, SERIAL_REG_IIR_FCR, 0x01);
	outb(f, SERIAL_REG_LCR, 0);

	/* Not an XScale: IER bit 6 (UUE) does not stick. */
	outb(f, SERIAL_REG_IER, 0x40);
	assert_int_equal(inb(f, SERIAL_REG_IER) & 0x40, 0);
	outb(f, SERIAL_REG_IER, 0);

	/* Scratch register holds what is written. */
	outb(f, SERIAL_REG_SCR, 0xa5);
	assert_int_equal(inb(f, SERIAL_REG_SCR), 0xa5);
	outb(f, SERIAL_REG_SCR, 0x5a);
	assert_int_equal(inb(f, SERIAL_REG_SCR), 0x5a);

	outb(f, SERIAL_REG_LCR, saved_lcr);
	assert_int_equal(f->out_len, 0); /* probing put nothing on the console */
	assert_int_equal(f->irq_calls, 0);
	assert_int_not_equal(inb(f, SERIAL_REG_LSR), 0xff); /* serial8250_startup's safety check */
}

static void test_rx_irq_needs_erbfi_and_out2(void **state)
{
	struct fixture *f = *state;

	outb(f, SERIAL_REG_IIR_FCR, 0x01); /* FIFO on, trigger level 1 */
	assert_int_equal(serial_receive(&f->uart, (const uint8_t *)"ab", 2), 2);
	assert_int_equal(f->irq_level, 0);
	assert_true(inb(f, SERIAL_REG_LSR) & 0x01); /* DR visible to a polling driver */

	outb(f, SERIAL_REG_IER, 0x01);
	assert_int_equal(f->irq_level, 0); /* OUT2 clear: the PC's interrupt gate is closed */
	assert_int_equal(f->irq_calls, 0);

	outb(f, SERIAL_REG_MCR, 0x0b); /* DTR, RTS, OUT2 */
	assert_int_equal(f->irq_level, 1);
	assert_int_equal(f->irq_calls, 1);
	assert_int_equal(inb(f, SERIAL_REG_IIR_FCR) & 0x0f, 0x04);

	assert_int_equal(inb(f, SERIAL_REG_RBR_THR), 'a');
	assert_int_equal(f->irq_level, 1);
	assert_int_equal(f->irq_calls, 1); /* only level changes are signalled */
	assert_int_equal(inb(f, SERIAL_REG_RBR_THR), 'b');
	assert_int_equal(f->irq_level, 0);
	assert_int_equal(f->irq_calls, 2);
	assert_int_equal(inb(f, SERIAL_REG_IIR_FCR), 0xc1);
	assert_false(inb(f, SERIAL_REG_LSR) & 0x01);

	/* With the FIFO on, data below the trigger level is reported as a timeout. */
	outb(f, SERIAL_REG_IIR_FCR, 0xc1); /* trigger at 14 */
	serial_receive(&f->uart, (const uint8_t *)"c", 1);
	assert_int_equal(f->irq_level, 1);
	assert_int_equal(inb(f, SERIAL_REG_IIR_FCR), 0xcc);
	serial_receive(&f->uart, (const uint8_t *)"0123456789abcd", 14);
	assert_int_equal(inb(f, SERIAL_REG_IIR_FCR), 0xc4);

	/* Clearing OUT2 lowers the line even with data pending. */
	outb(f, SERIAL_REG_MCR, 0x03);
	assert_int_equal(f->irq_level, 0);
}

static void test_full_fifo_accepts_short_count_without_loss(void **state)
{
	struct fixture *f = *state;
	uint8_t msg[20];

	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)('A' + i);
	outb(f, SERIAL_REG_IIR_FCR, 0x01);
	assert_int_equal(serial_receive(&f->uart, msg, sizeof(msg)), SERIAL_FIFO_SIZE);
	assert_int_equal(serial_receive(&f->uart, msg + 16, 4), 0);

	uint8_t lsr = inb(f, SERIAL_REG_LSR);
	assert_int_equal(lsr & 0x03, 0x01); /* DR, no OE: the refused bytes were kept by the sender */
	for (int i = 0; i < SERIAL_FIFO_SIZE; i++)
		assert_int_equal(inb(f, SERIAL_REG_RBR_THR), 'A' + i);
	assert_int_equal(serial_receive(&f->uart, msg + 16, 4), 4);
	assert_int_equal(inb(f, SERIAL_REG_RBR_THR), 'A' + 16);

	/* Without the FIFO the receiver holds a single byte. */
	outb(f, SERIAL_REG_IIR_FCR, 0x00);
	assert_int_equal(serial_receive(&f->uart, msg, 2), 1);
}

static void test_loopback_overflow_sets_oe(void **state)
{
	struct fixture *f = *state;

	outb(f, SERIAL_REG_IIR_FCR, 0x01);
	outb(f, SERIAL_REG_IER, 0x04); /* receiver line status interrupt */
	outb(f, SERIAL_REG_MCR, 0x10);
	for (int i = 0; i < SERIAL_FIFO_SIZE + 1; i++)
		outb(f, SERIAL_REG_RBR_THR, (uint8_t)i);
	assert_int_equal(f->out_len, 0); /* loopback keeps bytes off the line */
	assert_int_equal(inb(f, SERIAL_REG_IIR_FCR) & 0x0f, 0x06);
	assert_int_equal(inb(f, SERIAL_REG_LSR) & 0x03, 0x03); /* DR and OE */
	assert_int_equal(inb(f, SERIAL_REG_LSR) & 0x03, 0x01); /* OE cleared by the read */
	for (int i = 0; i < SERIAL_FIFO_SIZE; i++)
		assert_int_equal(inb(f, SERIAL_REG_RBR_THR), i);
	assert_int_equal(f->irq_calls, 0); /* loopback forces OUT2 inactive */
}

static void test_thre_interrupt(void **state)
{
	struct fixture *f = *state;

	outb(f, SERIAL_REG_MCR, 0x08);
	assert_int_equal(f->irq_level, 0);

	/* serial8250_startup: enabling ETBEI with THR empty interrupts at once... */
	outb(f, SERIAL_REG_IER, 0x02);
	assert_int_equal(f->irq_level, 1);
	assert_true(inb(f, SERIAL_REG_LSR) & 0x40);
	uint8_t iir1 = inb(f, SERIAL_REG_IIR_FCR);
	assert_int_equal(iir1, 0x02);
	/* ...reading IIR acknowledges it... */
	assert_int_equal(f->irq_level, 0);
	assert_int_equal(inb(f, SERIAL_REG_IIR_FCR), 0x01);
	/* ...and disabling then re-enabling ETBEI raises it again (no UART_BUG_THRE). */
	outb(f, SERIAL_REG_IER, 0x00);
	outb(f, SERIAL_REG_IER, 0x02);
	assert_int_equal(inb(f, SERIAL_REG_IIR_FCR), 0x02);
	assert_int_equal(f->irq_level, 0);

	/* Each byte sent empties THR again, so the driver is asked for the next one. */
	outb(f, SERIAL_REG_RBR_THR, 'z');
	assert_int_equal(f->irq_level, 1);
	assert_int_equal(inb(f, SERIAL_REG_IIR_FCR), 0x02);

	/* Disabling ETBEI (the driver's stop_tx) drops the line. */
	outb(f, SERIAL_REG_RBR_THR, 'z');
	assert_int_equal(f->irq_level, 1);
	outb(f, SERIAL_REG_IER, 0x00);
	assert_int_equal(f->irq_level, 0);
}

static void test_interrupt_priorities(void **state)
{
	struct fixture *f = *state;

	outb(f, SERIAL_REG_MCR, 0x18); /* loopback to produce an overrun, OUT2 */
	outb(f, SERIAL_REG_RBR_THR, 1);
	outb(f, SERIAL_REG_RBR_THR, 2); /* FIFO off: one-byte receiver, so this overruns */
	outb(f, SERIAL_REG_MCR, 0x08);
	outb(f, SERIAL_REG_IER, 0x0f);
	inb(f, SERIAL_REG_MSR); /* leaving loopback changed the modem lines; clear the deltas */

	assert_int_equal(inb(f, SERIAL_REG_IIR_FCR), 0x06); /* line status first */
	inb(f, SERIAL_REG_LSR);
	assert_int_equal(inb(f, SERIAL_REG_IIR_FCR), 0x04); /* then received data */
	assert_int_equal(inb(f, SERIAL_REG_RBR_THR), 1);
	assert_int_equal(inb(f, SERIAL_REG_IIR_FCR), 0x02); /* then THR empty */
	assert_int_equal(inb(f, SERIAL_REG_IIR_FCR), 0x01);

	/* Modem status last: in loopback, raising DTR shows as DSR with its delta. */
	outb(f, SERIAL_REG_MCR, 0x18);
	inb(f, SERIAL_REG_MSR);
	outb(f, SERIAL_REG_MCR, 0x18 | 0x01);
	assert_int_equal(inb(f, SERIAL_REG_IIR_FCR), 0x00);
	assert_int_equal(inb(f, SERIAL_REG_MSR), 0x80 | 0x20 | 0x02); /* DCD, DSR, DDSR */
	assert_int_equal(inb(f, SERIAL_REG_MSR), 0x80 | 0x20);
	assert_int_equal(inb(f, SERIAL_REG_IIR_FCR), 0x01);
}

static void test_modem_lines_look_connected(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(inb(f, SERIAL_REG_MSR) & 0xf0, 0xb0); /* DCD, DSR, CTS */
	outb(f, SERIAL_REG_MCR, 0x0b);
	assert_int_equal(inb(f, SERIAL_REG_MSR), 0xb0); /* outside loopback MCR changes nothing */
}

static void test_rx_ready_callback_after_drain(void **state)
{
	struct fixture *f = *state;
	uint8_t msg[20] = { 0 };

	serial_set_rx_ready_cb(&f->uart, count_rx_ready, f);
	outb(f, SERIAL_REG_IIR_FCR, 0x01);
	assert_int_equal(serial_receive(&f->uart, msg, 8), 8);
	for (int i = 0; i < 8; i++)
		inb(f, SERIAL_REG_RBR_THR);
	assert_int_equal(f->rx_ready_calls, 0); /* nobody was waiting */

	assert_int_equal(serial_receive(&f->uart, msg, sizeof(msg)), 16);
	for (int i = 0; i < 15; i++)
		inb(f, SERIAL_REG_RBR_THR);
	assert_int_equal(f->rx_ready_calls, 0);
	inb(f, SERIAL_REG_RBR_THR);
	assert_int_equal(f->rx_ready_calls, 1);
	inb(f, SERIAL_REG_RBR_THR);
	assert_int_equal(f->rx_ready_calls, 1);
	serial_set_rx_ready_cb(&f->uart, NULL, NULL);
}

static void test_save_load_roundtrip(void **state)
{
	struct fixture *f = *state;
	uint8_t blob[256];

	outb(f, SERIAL_REG_LCR, 0x83);
	outb(f, SERIAL_REG_RBR_THR, 0x01);
	outb(f, SERIAL_REG_LCR, 0x03);
	outb(f, SERIAL_REG_IIR_FCR, 0xc7);
	outb(f, SERIAL_REG_SCR, 0x42);
	outb(f, SERIAL_REG_MCR, 0x0b);
	outb(f, SERIAL_REG_IER, 0x01);
	serial_receive(&f->uart, (const uint8_t *)"xyz", 3);
	inb(f, SERIAL_REG_RBR_THR); /* move the ring's head off zero */
	assert_int_equal(f->irq_level, 1);

	long n = serial_ops.save(&f->uart, blob, sizeof(blob));
	assert_true(n > 0);
	assert_int_equal(serial_ops.save(&f->uart, blob, 4), -ENOSPC);

	struct fixture g = { 0 };
	struct irq_line irq = { .set = record_irq, .opaque = &g, .gsi = 4 };
	serial_init(&g.uart, irq, record_out, &g);
	assert_int_equal(serial_ops.load(&g.uart, blob, (size_t)n), 0);
	assert_int_equal(g.irq_level, 1); /* the restored line is driven to its level */
	assert_int_equal(inb(&g, SERIAL_REG_LCR), 0x03);
	assert_int_equal(inb(&g, SERIAL_REG_SCR), 0x42);
	assert_int_equal(inb(&g, SERIAL_REG_MCR), 0x0b);
	assert_int_equal(inb(&g, SERIAL_REG_IIR_FCR), 0xc4 | 0x08); /* FIFO on, 2 < trigger 14 */
	assert_int_equal(inb(&g, SERIAL_REG_RBR_THR), 'y');
	assert_int_equal(inb(&g, SERIAL_REG_RBR_THR), 'z');
	assert_int_equal(g.irq_level, 0);
	outb(&g, SERIAL_REG_LCR, 0x83);
	assert_int_equal(inb(&g, SERIAL_REG_RBR_THR), 0x01);

	/* Malformed blobs are refused and leave the device as it was. */
	assert_int_equal(serial_ops.load(&g.uart, blob, (size_t)n - 1), -EINVAL);
	blob[0] = 99;
	assert_int_equal(serial_ops.load(&g.uart, blob, (size_t)n), -EINVAL);
	blob[0] = 1;
	blob[11] = 17; /* rx_count beyond the FIFO */
	assert_int_equal(serial_ops.load(&g.uart, blob, (size_t)n), -EINVAL);
	assert_int_equal(inb(&g, SERIAL_REG_LCR), 0x83);
	serial_destroy(&g.uart);
}

static void test_reset_lowers_irq_and_clears_state(void **state)
{
	struct fixture *f = *state;

	outb(f, SERIAL_REG_MCR, 0x08);
	outb(f, SERIAL_REG_IER, 0x01);
	serial_receive(&f->uart, (const uint8_t *)"q", 1);
	assert_int_equal(f->irq_level, 1);
	serial_ops.reset(&f->uart);
	assert_int_equal(f->irq_level, 0);
	assert_int_equal(inb(f, SERIAL_REG_IER), 0);
	assert_int_equal(inb(f, SERIAL_REG_LSR), 0x60);
	assert_int_equal(inb(f, SERIAL_REG_IIR_FCR), 0x01);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_thr_bytes_reach_out_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dlab_switches_divisor_latch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_linux_autoconfig_identifies_16550a, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_irq_needs_erbfi_and_out2, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_fifo_accepts_short_count_without_loss, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loopback_overflow_sets_oe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thre_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupt_priorities, setup, teardown),
		cmocka_unit_test_setup_teardown(test_modem_lines_look_connected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_ready_callback_after_drain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_lowers_irq_and_clears_state, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
