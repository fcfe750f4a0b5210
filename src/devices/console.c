/*
 * Terminal console: raw-mode stdin feeding the guest's UART (guest output goes through
 * console_output.c, so a stalled stdout never holds up a vCPU).
 *
 * The input thread never blocks on the guest: bytes the UART cannot take yet wait in a
 * buffer until the guest drains its RX FIFO (the serial device signals an eventfd), and
 * stdin keeps being read on a terminal so that the quit sequence always works.
 */
#include "devices/console.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <termios.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "sandbox/sandbox.h"

#define PENDING_CAP 4096

struct console {
	struct serial *serial;
	void (*on_quit)(void *opaque);
	void *opaque;
	int wake_fd; /* eventfd: stop requests and "RX FIFO drained" notifications */
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;
	bool stdin_is_tty;
	struct console_escape esc;
	uint8_t pending[PENDING_CAP]; /* typed bytes the UART has not accepted yet */
	size_t pending_len;
	struct log_ratelimit drop_rl;
};

/* ---- terminal mode ---- */

static struct termios saved_termios;
static volatile sig_atomic_t termios_changed;
static pthread_once_t restore_hooks_once = PTHREAD_ONCE_INIT;

static const int fatal_signals[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
static struct sigaction previous_fatal_actions[ARRAY_SIZE(fatal_signals)];

void console_restore_terminal(void)
{
	if (termios_changed) {
		termios_changed = 0;
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios); /* async-signal-safe */
	}
}

static void on_fatal_signal(int sig, siginfo_t *info, void *ctx)
{
	(void)ctx;
	int saved_errno = errno;

	console_restore_terminal();
	for (size_t i = 0; i < ARRAY_SIZE(fatal_signals); i++)
		if (fatal_signals[i] == sig)
			sigaction(sig, &previous_fatal_actions[i], NULL);
	/*
	 * Hand the signal to whoever had it before (the default action, or a sanitizer's
	 * reporter). A fault recurs by itself when the instruction is re-executed; a signal
	 * that was sent has to be raised again.
	 */
	if (info->si_code <= 0)
		raise(sig);
	errno = saved_errno;
}

static void install_restore_hooks(void)
{
	atexit(console_restore_terminal);

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fatal_signal;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK; /* a stack overflow needs the alternate stack */
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < ARRAY_SIZE(fatal_signals); i++)
		sigaction(fatal_signals[i], &sa, &previous_fatal_actions[i]);
}

static int enter_raw_mode(void)
{
	struct termios raw;

	if (termios_changed)
		return 0; /* already raw; saved_termios holds the user's settings */
	if (tcgetattr(STDIN_FILENO, &saved_termios) < 0)
		return -errno;
	raw = saved_termios;
	cfmakeraw(&raw);
	/*
	 * Keep output processing: the guest sends \r\n itself (an extra \r is harmless), but
	 * vmon's own messages on stderr end lines with \n alone.
	 */
	raw.c_oflag |= OPOST | ONLCR;
	raw.c_cc[VMIN] = 1;
	raw.c_cc[VTIME] = 0;
	pthread_once(&restore_hooks_once, install_restore_hooks);
	termios_changed = 1;
	if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) < 0) {
		int err = errno;
		termios_changed = 0;
		return -err;
	}
	return 0;
}

/* ---- escape sequence ---- */

enum console_key_action console_escape_feed(struct console_escape *e, uint8_t key, uint8_t out[2],
					    size_t *nout)
{
	*nout = 0;
	if (!e->after_escape) {
		if (key == CONSOLE_ESCAPE_KEY) {
			e->after_escape = true;
			return CONSOLE_KEY_FORWARD;
		}
		out[(*nout)++] = key;
		return CONSOLE_KEY_FORWARD;
	}

	e->after_escape = false;
	switch (key) {
	case 'x':
	case 'X':
		return CONSOLE_KEY_QUIT;
	case 'h':
	case 'H':
	case '?':
		return CONSOLE_KEY_HELP;
	case CONSOLE_ESCAPE_KEY:
		out[(*nout)++] = CONSOLE_ESCAPE_KEY;
		return CONSOLE_KEY_FORWARD;
	default:
		/* Not a command: the guest gets both keys, so nothing typed is lost. */
		out[(*nout)++] = CONSOLE_ESCAPE_KEY;
		out[(*nout)++] = key;
		return CONSOLE_KEY_FORWARD;
	}
}

static void print_help(void)
{
	static const char help[] = "\r\nvmon console keys:\r\n"
				   "  Ctrl-A x       quit vmon (stops the VM)\r\n"
				   "  Ctrl-A Ctrl-A  send Ctrl-A to the guest\r\n"
				   "  Ctrl-A h       this help\r\n";
	ssize_t n = write(STDERR_FILENO, help, sizeof(help) - 1);
	(void)n; /* nothing sensible to do if stderr is gone */
}

/* ---- input thread ---- */

static void wake_input_thread(void *opaque)
{
	struct console *c = opaque;
	uint64_t one = 1;
	ssize_t n = write(c->wake_fd, &one, sizeof(one));
	(void)n; /* EAGAIN means a wake-up is already pending */
}

static void flush_pending(struct console *c)
{
	if (c->pending_len == 0)
		return;
	size_t n = serial_receive(c->serial, c->pending, c->pending_len);
	memmove(c->pending, c->pending + n, c->pending_len - n);
	c->pending_len -= n;
}

/* Returns true if the user asked to quit. */
static bool handle_keys(struct console *c, const uint8_t *keys, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		uint8_t out[2];
		size_t nout;

		switch (console_escape_feed(&c->esc, keys[i], out, &nout)) {
		case CONSOLE_KEY_QUIT:
			return true;
		case CONSOLE_KEY_HELP:
			print_help();
			break;
		case CONSOLE_KEY_FORWARD:
			if (c->pending_len + nout > PENDING_CAP) {
				log_warn_ratelimited(&c->drop_rl, "console",
						     "the guest is not reading its console; dropped typed input");
				break;
			}
			memcpy(c->pending + c->pending_len, out, nout);
			c->pending_len += nout;
			break;
		}
	}
	return false;
}

/*
 * How much to read from stdin now. A terminal is always read, so that the quit key works
 * even when the guest ignores input (overflow is dropped); a pipe or file is read only as
 * far as the buffer has room (each byte can become two), so nothing piped in is lost.
 */
static size_t read_budget(const struct console *c, size_t bufsize)
{
	if (c->stdin_is_tty)
		return bufsize;
	return MIN(bufsize, (PENDING_CAP - c->pending_len) / 2);
}

static void *input_thread(void *arg)
{
	struct console *c = arg;
	bool eof = false;
	uint8_t buf[256];
	sandbox_enter(SANDBOX_CONSOLE_IN);

	while (!atomic_load(&c->stop)) {
		size_t budget = eof ? 0 : read_budget(c, sizeof(buf));
		struct pollfd fds[2] = {
			{ .fd = c->wake_fd, .events = POLLIN },
			{ .fd = STDIN_FILENO, .events = POLLIN },
		};

		if (poll(fds, budget ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("console", "waiting for console input failed: %s", strerror(errno));
			break;
		}
		if (fds[0].revents & POLLIN) {
			uint64_t v;
			ssize_t n = read(c->wake_fd, &v, sizeof(v));
			(void)n;
		}
		if (atomic_load(&c->stop))
			break;

		if (budget && (fds[1].revents & POLLNVAL)) {
			eof = true;
		} else if (budget && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			ssize_t n = read(STDIN_FILENO, buf, budget);
			if (n == 0) {
				eof = true;
			} else if (n < 0) {
				if (errno != EINTR && errno != EAGAIN) {
					log_warn("console", "reading stdin failed (%s); console input stops",
						 strerror(errno));
					eof = true;
				}
			} else if (handle_keys(c, buf, (size_t)n)) {
				flush_pending(c); /* what was typed before the quit key still counts */
				if (c->on_quit)
					c->on_quit(c->opaque);
				break;
			}
		}
		flush_pending(c);
		if (eof && c->pending_len == 0)
			break; /* all input delivered; the VM keeps running */
	}
	return NULL;
}

int console_start(struct console **out, struct serial *s, void (*on_quit)(void *opaque),
		  void *opaque)
{
	struct console *c = calloc(1, sizeof(*c));
	int rc;

	if (!c)
		return -ENOMEM;
	c->serial = s;
	c->on_quit = on_quit;
	c->opaque = opaque;
	atomic_init(&c->stop, false);
	c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->wake_fd < 0) {
		rc = -errno;
		log_error("console", "cannot create the console's eventfd: %s", strerror(-rc));
		free(c);
		return rc;
	}

	bool read_input = true;
	c->stdin_is_tty = isatty(STDIN_FILENO);
	if (c->stdin_is_tty) {
		pid_t fg = tcgetpgrp(STDIN_FILENO);
		if (fg >= 0 && fg != getpgrp()) {
			/* Touching the terminal from the background would stop the process. */
			log_warn("console", "vmon runs in the background, so console input is off; "
					    "bring it to the foreground (fg) and restart it to type into the guest");
			read_input = false;
		} else if ((rc = enter_raw_mode()) < 0) {
			log_warn("console", "cannot put the terminal in raw mode (%s); keys are line-buffered "
					    "and Ctrl-C stops vmon", strerror(-rc));
		}
	}

	serial_set_rx_ready_cb(s, wake_input_thread, c);
	if (read_input) {
		rc = pthread_create(&c->thread, NULL, input_thread, c);
		if (rc != 0) {
			log_error("console", "cannot start the console input thread: %s", strerror(rc));
			serial_set_rx_ready_cb(s, NULL, NULL);
			console_restore_terminal();
			close(c->wake_fd);
			free(c);
			return -rc;
		}
		c->thread_started = true;
	}
	*out = c;
	return 0;
}

void console_stop(struct console *c)
{
	if (!c)
		return;
	if (c->thread_started && pthread_equal(pthread_self(), c->thread)) {
		log_error("console", "console_stop called from the console's own input thread; ignored");
		return;
	}
	serial_set_rx_ready_cb(c->serial, NULL, NULL);
	if (c->thread_started) {
		atomic_store(&c->stop, true);
		wake_input_thread(c);
		pthread_join(c->thread, NULL);
	}
	close(c->wake_fd);
	console_restore_terminal();
	free(c);
}
