#include "backends/vsock_unix.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/unix_socket.h"
#include "lib/log.h"
#include "lib/util.h"

#define COMP "vsock"

struct pending_client {
	int fd;             /* -1: free slot */
	uint64_t since;     /* accept order, to drop the oldest */
	size_t len;         /* bytes of the request line received so far */
	char line[VSOCK_UNIX_LINE_MAX];
};

struct vsock_unix {
	struct event_loop *loop;
	char *path;
	int listen_fd;
	vsock_unix_connect_fn fn;
	void *opaque;
	uint64_t accepted;
	struct pending_client pending[VSOCK_UNIX_MAX_PENDING];
};

int vsock_unix_parse_connect(const char *line, size_t len, uint32_t *port)
{
	static const char verb[] = "CONNECT ";
	size_t vlen = sizeof(verb) - 1;
	if (len <= vlen || len > vlen + 10 || memcmp(line, verb, vlen))
		return -EINVAL;
	uint64_t v = 0;
	for (size_t i = vlen; i < len; i++) {
		if (line[i] < '0' || line[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(line[i] - '0');
	}
	if (v > UINT32_MAX)
		return -EINVAL;
	*port = (uint32_t)v;
	return 0;
}

static void drop_pending(struct vsock_unix *u, struct pending_client *p, const char *reply)
{
	if (reply)
		(void)!send(p->fd, reply, strlen(reply), MSG_NOSIGNAL | MSG_DONTWAIT);
	event_loop_remove_fd(u->loop, p->fd);
	close(p->fd);
	p->fd = -1;
}

static void on_pending(void *opaque, uint32_t events);

static struct pending_client *find_pending(struct vsock_unix *u, int fd)
{
	for (int i = 0; i < VSOCK_UNIX_MAX_PENDING; i++)
		if (u->pending[i].fd == fd)
			return &u->pending[i];
	return NULL;
}

/*
 * Reads the request line, never a byte past it: what follows belongs to the guest. Bytes
 * before the newline are consumed as they come, so a slow client does not keep the fd readable.
 */
static void read_request(struct vsock_unix *u, struct pending_client *p)
{
	char peek[VSOCK_UNIX_LINE_MAX];
	size_t room = sizeof(p->line) - p->len;
	ssize_t n = recv(p->fd, peek, room, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		drop_pending(u, p, NULL);
		return;
	}
	char *nl = memchr(peek, '\n', (size_t)n);
	size_t take = nl ? (size_t)(nl - peek) + 1 : (size_t)n;
	if (recv(p->fd, p->line + p->len, take, MSG_DONTWAIT) != (ssize_t)take) {
		drop_pending(u, p, NULL);
		return;
	}
	p->len += take;
	if (!nl) {
		if (p->len == sizeof(p->line))
			drop_pending(u, p, "ERR expected \"CONNECT <port>\\n\"\n");
		return; /* the rest of the line is still coming */
	}
	uint32_t port;
	if (vsock_unix_parse_connect(p->line, p->len - 1, &port)) {
		drop_pending(u, p, "ERR expected \"CONNECT <port>\\n\"\n");
		return;
	}
	int fd = p->fd;
	event_loop_remove_fd(u->loop, fd);
	p->fd = -1;
	u->fn(u->opaque, fd, port);
}

static void on_pending(void *opaque, uint32_t events)
{
	(void)events;
	struct vsock_unix *u = opaque;
	/* The loop gives us u, not the client: find which ones are readable without blocking. */
	for (int i = 0; i < VSOCK_UNIX_MAX_PENDING; i++)
		if (u->pending[i].fd >= 0)
			read_request(u, &u->pending[i]);
}

static void on_accept(void *opaque, uint32_t events)
{
	(void)events;
	struct vsock_unix *u = opaque;
	int fd = unix_socket_accept(u->listen_fd);
	if (fd < 0)
		return;
	struct pending_client *slot = find_pending(u, -1);
	if (!slot) {
		slot = &u->pending[0];
		for (int i = 1; i < VSOCK_UNIX_MAX_PENDING; i++)
			if (u->pending[i].since < slot->since)
				slot = &u->pending[i];
		drop_pending(u, slot, "ERR too many connections waiting for their CONNECT line\n");
	}
	slot->fd = fd;
	slot->since = ++u->accepted;
	slot->len = 0;
	if (event_loop_add_fd(u->loop, fd, EPOLLIN, on_pending, u)) {
		close(fd);
		slot->fd = -1;
	}
}

int vsock_unix_create(struct event_loop *loop, const char *uds_path, vsock_unix_connect_fn fn, void *opaque,
		      struct vsock_unix **out)
{
	/* "_<port>" must fit too, or the guest could not reach any host port. */
	if (strlen(uds_path) + 11 >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		log_error(COMP, "--vsock uds=%s is too long: with \"_<port>\" appended it must fit in %zu bytes; use "
				"a shorter path", uds_path, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		return -ENAMETOOLONG;
	}
	struct vsock_unix *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	*u = (struct vsock_unix){ .loop = loop, .fn = fn, .opaque = opaque, .listen_fd = -1 };
	for (int i = 0; i < VSOCK_UNIX_MAX_PENDING; i++)
		u->pending[i].fd = -1;
	u->path = strdup(uds_path);
	int rc = u->path ? 0 : -ENOMEM;
	if (!rc) {
		u->listen_fd = unix_socket_listen(uds_path, "--vsock uds");
		rc = u->listen_fd < 0 ? u->listen_fd : 0;
	}
	if (!rc && (rc = event_loop_add_fd(loop, u->listen_fd, EPOLLIN, on_accept, u)))
		log_error(COMP, "cannot watch the vsock socket %s: %s", uds_path, strerror(-rc));
	if (rc) {
		vsock_unix_destroy(u);
		return rc;
	}
	*out = u;
	return 0;
}

void vsock_unix_destroy(struct vsock_unix *u)
{
	if (!u)
		return;
	for (int i = 0; i < VSOCK_UNIX_MAX_PENDING; i++)
		if (u->pending[i].fd >= 0)
			drop_pending(u, &u->pending[i], NULL);
	if (u->listen_fd >= 0) {
		event_loop_remove_fd(u->loop, u->listen_fd);
		close(u->listen_fd);
		unlink(u->path);
	}
	free(u->path);
	free(u);
}

int vsock_unix_dial(const struct vsock_unix *u, uint32_t port)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	if (snprintf(path, sizeof(path), "%s_%u", u->path, port) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	return unix_socket_connect(path);
}
