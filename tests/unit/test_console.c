/* What the user at the terminal and the guest reading its UART observe of the console. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "devices/console.h"
#include "devices/console_output.h"
#include "lib/util.h"

/* ---- the escape-sequence parser ---- */

static size_t feed_all(struct console_escape *e, const char *keys, size_t len, uint8_t *out,
		       enum console_key_action *last)
{
	size_t total = 0;
	*last = CONSOLE_KEY_FORWARD;
	for (size_t i = 0; i < len; i++) {
		uint8_t o[2];
		size_t n;
		*last = console_escape_feed(e, (uint8_t)keys[i], o, &n);
		memcpy(out + total, o, n);
		total += n;
		if (*last != CONSOLE_KEY_FORWARD)
			break;
	}
	return total;
}

static void test_plain_keys_pass_through(void **state)
{
	(void)state;
	struct console_escape e = { 0 };
	uint8_t out[32];
	enum console_key_action act;

	size_t n = feed_all(&e, "ls -l\r\x03", 7, out, &act);
	assert_int_equal(act, CONSOLE_KEY_FORWARD);
	assert_int_equal(n, 7);
	assert_memory_equal(out, "ls -l\r\x03", 7); /* Ctrl-C goes to the guest */
}

static void test_ctrl_a_x_quits(void **state)
{
	(void)state;
	struct console_escape e = { 0 };
	uint8_t out[32];
	enum console_key_action act;

	size_t n = feed_all(&e, "ab\x01x", 4, out, &act);
	assert_int_equal(act, CONSOLE_KEY_QUIT);
	assert_int_equal(n, 2); /* the escape key itself is not sent */
	assert_memory_equal(out, "ab", 2);

	/* The sequence may arrive split across reads. */
	struct console_escape e2 = { 0 };
	uint8_t o[2];
	size_t k;
	assert_int_equal(console_escape_feed(&e2, 0x01, o, &k), CONSOLE_KEY_FORWARD);
	assert_int_equal(k, 0);
	assert_int_equal(console_escape_feed(&e2, 'X', o, &k), CONSOLE_KEY_QUIT);
}

static void test_ctrl_a_ctrl_a_sends_one_ctrl_a(void **state)
{
	(void)state;
	struct console_escape e = { 0 };
	uint8_t out[32];
	enum console_key_action act;

	size_t n = feed_all(&e, "\x01\x01x", 3, out, &act);
	assert_int_equal(act, CONSOLE_KEY_FORWARD); /* the x after it is an ordinary key */
	assert_int_equal(n, 2);
	assert_memory_equal(out, "\x01x", 2);
}

static void test_other_key_after_ctrl_a_sends_both(void **state)
{
	(void)state;
	struct console_escape e = { 0 };
	uint8_t out[32];
	enum console_key_action act;

	size_t n = feed_all(&e, "\x01" "e", 2, out, &act);
	assert_int_equal(act, CONSOLE_KEY_FORWARD);
	assert_int_equal(n, 2);
	assert_memory_equal(out, "\x01" "e", 2);

	feed_all(&e, "\x01h", 2, out, &act);
	assert_int_equal(act, CONSOLE_KEY_HELP);
}

/* ---- the input thread, with stdin replaced ---- */

struct fixture {
	struct serial uart;
	int saved_stdin;
	atomic_int quits;
};

static void count_quit(void *opaque)
{
	struct fixture *f = opaque;
	atomic_fetch_add(&f->quits, 1);
}

static int setup(void **state)
{
	struct fixture *f = test_calloc(1, sizeof(*f));
	serial_init(&f->uart, (struct irq_line){ 0 }, NULL, NULL);
	uint8_t fcr = 0x01; /* the guest driver turns the FIFO on */
	serial_ops.write(&f->uart, SERIAL_REG_IIR_FCR, &fcr, 1);
	f->saved_stdin = dup(STDIN_FILENO);
	assert_true(f->saved_stdin >= 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	dup2(f->saved_stdin, STDIN_FILENO);
	close(f->saved_stdin);
	serial_destroy(&f->uart);
	test_free(f);
	return 0;
}

/* Returns the write end of a pipe that is now stdin. */
static int pipe_as_stdin(void)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_true(dup2(p[0], STDIN_FILENO) >= 0);
	close(p[0]);
	return p[1];
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = ms * 1000000L };
	nanosleep(&ts, NULL);
}

/* Reads like a guest polling LSR.DR; gives up after a few seconds. */
static size_t guest_read(struct serial *s, uint8_t *buf, size_t want)
{
	size_t got = 0;
	int64_t deadline = now_ms() + 5000;

	while (got < want && now_ms() < deadline) {
		uint8_t lsr;
		serial_ops.read(s, SERIAL_REG_LSR, &lsr, 1);
		if (lsr & 0x01)
			serial_ops.read(s, SERIAL_REG_RBR_THR, &buf[got++], 1);
		else
			sleep_ms(1);
	}
	return got;
}

static void test_piped_input_reaches_guest_with_backpressure(void **state)
{
	struct fixture *f = *state;
	int w = pipe_as_stdin();
	uint8_t input[300], expect[300], got[300];
	size_t in_len = 0, exp_len = 0;

	memcpy(input, "ab\x01\x01" "c", 5);
	memcpy(expect, "ab\x01" "c", 4);
	in_len = 5;
	exp_len = 4;
	for (int i = 0; i < 200; i++) { /* far more than the 16-byte FIFO holds */
		input[in_len++] = (uint8_t)('0' + i % 10);
		expect[exp_len++] = (uint8_t)('0' + i % 10);
	}
	assert_int_equal(write(w, input, in_len), (ssize_t)in_len);
	close(w); /* end of input: the thread ends once everything is delivered */

	struct console *c = NULL;
	assert_int_equal(console_start(&c, &f->uart, count_quit, f), 0);
	assert_int_equal(guest_read(&f->uart, got, exp_len), exp_len);
	assert_memory_equal(got, expect, exp_len);
	assert_int_equal(guest_read(&f->uart, got, 1), 0); /* nothing extra */
	assert_int_equal(atomic_load(&f->quits), 0);        /* end of input is not a quit */
	console_stop(c);
}

static void test_quit_sequence_calls_on_quit(void **state)
{
	struct fixture *f = *state;
	int w = pipe_as_stdin();
	struct console *c = NULL;

	assert_int_equal(console_start(&c, &f->uart, count_quit, f), 0);
	assert_int_equal(write(w, "hi\x01xzz", 6), 6);
	int64_t deadline = now_ms() + 5000;
	while (atomic_load(&f->quits) == 0 && now_ms() < deadline)
		sleep_ms(1);
	assert_int_equal(atomic_load(&f->quits), 1);

	uint8_t got[8];
	assert_int_equal(guest_read(&f->uart, got, 2), 2);
	assert_memory_equal(got, "hi", 2);
	assert_int_equal(guest_read(&f->uart, got, 1), 0); /* keys after the quit are not sent */
	console_stop(c);
	close(w);
}

static void test_stop_is_prompt_while_waiting_for_input(void **state)
{
	struct fixture *f = *state;
	int w = pipe_as_stdin(); /* open and silent */
	struct console *c = NULL;

	assert_int_equal(console_start(&c, &f->uart, count_quit, f), 0);
	sleep_ms(20);
	int64_t t0 = now_ms();
	console_stop(c);
	assert_true(now_ms() - t0 < 1000);
	close(w);
}

static void test_terminal_is_raw_then_restored(void **state)
{
	struct fixture *f = *state;
	int master = posix_openpt(O_RDWR | O_NOCTTY);
	assert_true(master >= 0);
	assert_int_equal(grantpt(master), 0);
	assert_int_equal(unlockpt(master), 0);
	int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
	assert_true(slave >= 0);
	assert_true(dup2(slave, STDIN_FILENO) >= 0);

	struct termios before, during, after;
	assert_int_equal(tcgetattr(STDIN_FILENO, &before), 0);
	assert_true(before.c_lflag & ICANON);

	struct console *c = NULL;
	assert_int_equal(console_start(&c, &f->uart, count_quit, f), 0);
	assert_int_equal(tcgetattr(STDIN_FILENO, &during), 0);
	assert_false(during.c_lflag & (ICANON | ECHO | ISIG));
	assert_true(during.c_oflag & OPOST); /* vmon's own \n-terminated messages stay readable */

	/* Keys arrive one by one, without waiting for Enter. */
	assert_int_equal(write(master, "\x03q", 2), 2);
	uint8_t got[2];
	assert_int_equal(guest_read(&f->uart, got, 2), 2);
	assert_memory_equal(got, "\x03q", 2);

	console_stop(c);
	assert_int_equal(tcgetattr(STDIN_FILENO, &after), 0);
	assert_int_equal(after.c_lflag, before.c_lflag);
	assert_int_equal(after.c_oflag, before.c_oflag);
	console_restore_terminal(); /* idempotent */
	assert_int_equal(tcgetattr(STDIN_FILENO, &after), 0);
	assert_int_equal(after.c_lflag, before.c_lflag);
	close(slave);
	close(master);
}

static void test_terminal_restored_when_vmon_crashes(void **state)
{
	struct fixture *f = *state;
	int master = posix_openpt(O_RDWR | O_NOCTTY);
	assert_true(master >= 0);
	assert_int_equal(grantpt(master), 0);
	assert_int_equal(unlockpt(master), 0);
	int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
	assert_true(slave >= 0);
	struct termios before, after;
	assert_int_equal(tcgetattr(slave, &before), 0);

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(slave, STDIN_FILENO);
		struct console *c = NULL;
		if (console_start(&c, &f->uart, NULL, NULL) != 0)
			_exit(2);
		struct termios raw;
		tcgetattr(STDIN_FILENO, &raw);
		if (raw.c_lflag & ICANON)
			_exit(3);
		abort();
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
	assert_int_equal(tcgetattr(slave, &after), 0);
	assert_int_equal(after.c_lflag, before.c_lflag);
	assert_int_equal(after.c_iflag, before.c_iflag);
	close(slave);
	close(master);
}

/* ---- output ---- */

struct drain {
	int fd;
	uint8_t *buf;
	size_t len, cap;
};

static void *drain_pipe(void *arg)
{
	struct drain *d = arg;
	for (;;) {
		sleep_ms(1); /* slow reader: the writer sees a full pipe */
		ssize_t n = read(d->fd, d->buf + d->len, d->cap - d->len);
		if (n <= 0)
			break;
		d->len += (size_t)n;
	}
	return NULL;
}

static struct console_output *start_output(int fd, size_t capacity)
{
	struct console_output *o = NULL;
	assert_int_equal(console_output_start(&o, fd, capacity), 0);
	return o;
}

static void test_output_delivers_everything_to_a_slow_reader(void **state)
{
	(void)state;
	size_t size = 256 * 1024; /* several pipe buffers */
	uint8_t *data = malloc(size);
	assert_non_null(data);
	for (size_t i = 0; i < size; i++)
		data[i] = (uint8_t)(i * 7);

	int p[2];
	assert_int_equal(pipe(p), 0);
	struct drain d = { .fd = p[0], .buf = malloc(size + 1), .cap = size + 1 };
	assert_non_null(d.buf);
	pthread_t t;
	pthread_create(&t, NULL, drain_pipe, &d);

	struct console_output *o = start_output(p[1], size);
	for (size_t off = 0; off < size; off += 1000) /* a guest writes a little at a time */
		console_output_write(o, data + off, MIN(1000, size - off));
	assert_int_equal(console_output_dropped(o), 0);
	console_output_stop(o, 10000); /* a clean shutdown flushes what the reader takes */
	close(p[1]);
	pthread_join(t, NULL);
	close(p[0]);

	assert_int_equal(d.len, size);
	assert_memory_equal(d.buf, data, size);
	free(d.buf);
	free(data);
}

static void test_output_to_a_stalled_reader_never_blocks_and_stops_promptly(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0); /* nobody reads p[0] */
	size_t capacity = 64 * 1024;
	struct console_output *o = start_output(p[1], capacity);

	uint8_t line[1024];
	memset(line, 'x', sizeof(line));
	size_t total = 4 * 1024 * 1024; /* far more than the pipe and the buffer hold */
	int64_t t0 = now_ms();
	for (size_t off = 0; off < total; off += sizeof(line))
		console_output_write(o, line, sizeof(line));
	int64_t produced_ms = now_ms() - t0;
	assert_true(produced_ms < 2000); /* a blocking producer would never get here */

	uint64_t dropped = console_output_dropped(o);
	/* At most the buffer and the pipe (64 KiB on Linux) were taken. */
	assert_true(dropped >= total - capacity - 1024 * 1024);
	assert_true(dropped < total);

	t0 = now_ms();
	console_output_stop(o, 100);
	assert_true(now_ms() - t0 < 2000);
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_keys_pass_through),
		cmocka_unit_test(test_ctrl_a_x_quits),
		cmocka_unit_test(test_ctrl_a_ctrl_a_sends_one_ctrl_a),
		cmocka_unit_test(test_other_key_after_ctrl_a_sends_both),
		cmocka_unit_test_setup_teardown(test_piped_input_reaches_guest_with_backpressure, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_quit_sequence_calls_on_quit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_is_prompt_while_waiting_for_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_terminal_is_raw_then_restored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_terminal_restored_when_vmon_crashes, setup, teardown),
		cmocka_unit_test(test_output_delivers_everything_to_a_slow_reader),
		cmocka_unit_test(test_output_to_a_stalled_reader_never_blocks_and_stops_promptly),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
