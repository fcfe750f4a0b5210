/*
 * A Linux guest program for tests/integration/test_vsock.sh (built there with gcc -static into
 * the test's initramfs; busybox has no vsock tool). Reports on stdout (the serial console).
 *
 *   vsock_echo server PORT [N]      listens on vsock port PORT, prints "VSOCK-SERVER-READY",
 *                                   then for N connections (default 1), one after the other,
 *                                   echoes every byte back until EOF
 *   vsock_echo hold CID PORT        connects to CID:PORT, sends "hold\n", prints
 *                                   "VSOCK-HOLD-CONNECTED", then waits until the connection
 *                                   ends and prints "VSOCK-HOLD-END: <why>"
 *   vsock_echo client CID PORT MSG  connects to CID:PORT, sends "MSG\n", prints the line it gets
 *                                   back as "VSOCK-CLIENT-GOT: <line>"
 *   vsock_echo console DEV MSG      puts the tty DEV (/dev/hvc0) in raw mode, writes "MSG\n",
 *                                   prints the line it reads back as "HVC-GOT: <line>"
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

static void die(const char *what)
{
	printf("VSOCK-ECHO-ERROR: %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

/* Reads one line (without '\n') from fd; returns its length or -1 on EOF/error before any '\n'. */
static int read_line(int fd, char *buf, int cap)
{
	int n = 0;
	while (n < cap - 1) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return n ? n : -1;
		if (c == '\n')
			break;
		if (c != '\r')
			buf[n++] = c;
	}
	buf[n] = 0;
	return n;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Echoes every byte of one connection back until EOF. */
static void echo(int s)
{
	char buf[4096];
	long total = 0;
	ssize_t n;
	while ((n = read(s, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
		if (n > 0 && write_all(s, buf, (size_t)n) < 0)
			die("write");
		total += n > 0 ? n : 0;
	}
	printf("VSOCK-SERVER-DONE bytes=%ld\n", total);
	fflush(stdout);
}

static int server(unsigned int port, int count)
{
	int ls = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (ls < 0)
		die("socket");
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("bind");
	if (listen(ls, 4) < 0)
		die("listen");
	printf("VSOCK-SERVER-READY port=%u\n", port);
	fflush(stdout);
	for (int i = 0; i < count; i++) {
		int s = accept(ls, NULL, NULL);
		if (s < 0)
			die("accept");
		echo(s);
		close(s);
	}
	close(ls);
	return 0;
}

static int client(unsigned int cid, unsigned int port, const char *msg)
{
	int s = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (s < 0)
		die("socket");
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
	if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect");
	char line[256];
	snprintf(line, sizeof(line), "%s\n", msg);
	if (write_all(s, line, strlen(line)) < 0)
		die("write");
	if (read_line(s, line, sizeof(line)) < 0)
		die("read");
	printf("VSOCK-CLIENT-GOT: %s\n", line);
	fflush(stdout);
	close(s);
	return 0;
}

static int hold(unsigned int cid, unsigned int port)
{
	int s = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (s < 0)
		die("socket");
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
	if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect");
	if (write_all(s, "hold\n", 5) < 0)
		die("write");
	printf("VSOCK-HOLD-CONNECTED\n");
	fflush(stdout);
	char b;
	ssize_t n;
	while ((n = read(s, &b, 1)) > 0 || (n < 0 && errno == EINTR))
		;
	printf("VSOCK-HOLD-END: %s\n", n == 0 ? "EOF" : strerror(errno));
	fflush(stdout);
	close(s);
	return 0;
}

static int console(const char *dev, const char *msg)
{
	int fd = open(dev, O_RDWR | O_NOCTTY);
	if (fd < 0)
		die(dev);
	struct termios t;
	if (tcgetattr(fd, &t) == 0) {
		cfmakeraw(&t); /* no echo of what the host types, no \n -> \r\n */
		tcsetattr(fd, TCSANOW, &t);
	}
	char line[256];
	snprintf(line, sizeof(line), "%s\n", msg);
	if (write_all(fd, line, strlen(line)) < 0)
		die("write");
	if (read_line(fd, line, sizeof(line)) < 0)
		die("read");
	printf("HVC-GOT: %s\n", line);
	fflush(stdout);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if ((argc == 3 || argc == 4) && !strcmp(argv[1], "server"))
		return server((unsigned int)strtoul(argv[2], NULL, 10), argc == 4 ? atoi(argv[3]) : 1);
	if (argc == 4 && !strcmp(argv[1], "hold"))
		return hold((unsigned int)strtoul(argv[2], NULL, 10), (unsigned int)strtoul(argv[3], NULL, 10));
	if (argc == 5 && !strcmp(argv[1], "client"))
		return client((unsigned int)strtoul(argv[2], NULL, 10), (unsigned int)strtoul(argv[3], NULL, 10), argv[4]);
	if (argc == 4 && !strcmp(argv[1], "console"))
		return console(argv[2], argv[3]);
	fprintf(stderr, "usage: vsock_echo server PORT [N] | hold CID PORT | client CID PORT MSG | console DEV MSG\n");
	return 2;
}
