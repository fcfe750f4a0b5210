#include "virtio/virtio_console.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "lib/unix_socket.h"
#include "lib/log.h"
#include "lib/util.h"
#include "virtio/console_file.h"

#define COMP "virtio-console"
#define RXQ 0
#define TXQ 1
#define QUEUE_SIZE 64
#define MAX_SEGMENTS (QUEUE_SIZE + 1024) /* a ring chain, or an indirect table */
#define PCI_CLASS_COMMUNICATION_OTHER 0x078000
#define CONFIG_SIZE 12 /* cols, rows, max_nr_ports, emerg_wr (virtio 1.x 5.3.4) */

#define SAVE_MAGIC 0x434f4e32u /* "CON2" */
#define SAVE_VERSION 1

struct virtio_console {
	struct virtio_device *vdev;
	struct event_loop *loop;
	enum virtio_console_backend backend;
	char *path;
	int listen_fd;          /* socket backend: where clients connect; -1 otherwise */
	int out_fd;             /* socket backend: the client; -1: none */
	struct console_file *file; /* file backend */
	uint32_t watched;       /* events out_fd is registered for in the loop (0: not registered) */
	bool rx_wanted;         /* the guest may have receive buffers: read the client */

	/* A transmit chain written only partly to a slow client; completed when the socket drains. */
	bool tx_pending;
	struct vq_chain tx_chain;
	size_t tx_done;
	bool file_started;      /* file backend: tx_chain was handed to the file's writer */

	/* After a snapshot load: the transmit chain the old process held, to give back. */
	struct event_timer *resume;
	bool resume_push;
	uint16_t resume_head;

	_Atomic uint64_t tx_bytes, rx_bytes, dropped_bytes, errors;
	struct log_ratelimit rl;
	struct iovec tx_iov[MAX_SEGMENTS];
	struct iovec rx_iov[MAX_SEGMENTS];
};

static void on_client(void *opaque, uint32_t events);

/* Registers the client for what the device currently waits for, and nothing else. */
static void watch_client(struct virtio_console *con)
{
	if (con->backend != VIRTIO_CONSOLE_SOCKET || con->out_fd < 0)
		return;
	uint32_t want = (con->rx_wanted ? EPOLLIN : 0) | (con->tx_pending ? EPOLLOUT : 0);
	if (want == con->watched)
		return;
	if (con->watched)
		event_loop_remove_fd(con->loop, con->out_fd);
	con->watched = 0;
	if (want && event_loop_add_fd(con->loop, con->out_fd, want, on_client, con) == 0)
		con->watched = want;
}

static void drop_client(struct virtio_console *con, const char *why)
{
	if (con->backend != VIRTIO_CONSOLE_SOCKET || con->out_fd < 0)
		return;
	log_info(COMP, "console client on %s disconnected (%s)", con->path, why);
	if (con->watched)
		event_loop_remove_fd(con->loop, con->out_fd);
	con->watched = 0;
	close(con->out_fd);
	con->out_fd = -1;
}

static void bad_chain(struct virtio_console *con, const char *why)
{
	atomic_fetch_add(&con->errors, 1);
	virtio_pci_set_needs_reset(con->vdev, why);
}

/*
 * Socket backend: writes what is left of the pending transmit chain. Returns true when it is all
 * out (or discarded), false when the client's socket is full.
 */
static bool tx_write(struct virtio_console *con)
{
	const struct vq_chain *c = &con->tx_chain;
	size_t skip = con->tx_done;
	for (unsigned int i = 0; i < c->n_out; i++) {
		size_t seg = c->iov[i].iov_len;
		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		while (skip < seg) {
			if (con->out_fd < 0) {
				atomic_fetch_add(&con->dropped_bytes, c->out_len - con->tx_done);
				return true;
			}
			const uint8_t *p = (const uint8_t *)c->iov[i].iov_base + skip;
			ssize_t n = send(con->out_fd, p, seg - skip, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return false;
			if (n <= 0) {
				drop_client(con, n < 0 ? strerror(errno) : "closed");
				continue; /* out_fd is now -1: the rest is dropped above */
			}
			skip += (size_t)n;
			con->tx_done += (size_t)n;
			atomic_fetch_add(&con->tx_bytes, (uint64_t)n);
		}
		skip = 0;
	}
	return true;
}

/* File backend: the writer thread still reads a chain's segments from tx_iov. */
static bool file_busy(const struct virtio_console *con) { return con->file && console_file_busy(con->file); }

/* Returns true when the pending transmit chain is all out (or discarded), false to wait. */
static bool tx_flush(struct virtio_console *con)
{
	if (con->backend == VIRTIO_CONSOLE_SOCKET)
		return tx_write(con);
	if (file_busy(con))
		return false;
	if (!con->file_started) {
		/* Written off the loop thread; on_file_written() comes back here. */
		console_file_write(con->file, con->tx_chain.iov, con->tx_chain.n_out);
		con->file_started = true;
		return false;
	}
	return true;
}

static void tx_run(struct virtio_console *con)
{
	bool pushed = false;
	for (;;) {
		if (con->tx_pending) {
			if (!tx_flush(con))
				break;
			con->tx_pending = false;
			virtio_pci_push(con->vdev, TXQ, con->tx_chain.head, 0);
			pushed = true;
		}
		if (file_busy(con))
			break; /* a chain the device dropped at a reset is still being written from tx_iov */
		struct vq_chain c = { .iov = con->tx_iov, .iov_cap = MAX_SEGMENTS };
		if (virtio_pci_pop(con->vdev, TXQ, &c) <= 0)
			break;
		if (c.n_in) {
			bad_chain(con, "a transmit buffer has device-writable parts");
			break;
		}
		con->tx_chain = c;
		con->tx_done = 0;
		con->file_started = false;
		con->tx_pending = true;
	}
	if (pushed)
		virtio_pci_notify(con->vdev, TXQ);
	watch_client(con);
}

static void on_file_written(void *opaque)
{
	struct virtio_console *con = opaque;
	struct console_file_result r = console_file_result(con->file);
	atomic_fetch_add(&con->tx_bytes, r.written);
	atomic_fetch_add(&con->dropped_bytes, r.dropped);
	if (r.error)
		atomic_fetch_add(&con->errors, 1);
	if (virtio_pci_running(con->vdev))
		tx_run(con);
}

/*
 * readv() takes at most IOV_MAX segments, fewer than a legal chain can have (a ring chain
 * ending in an indirect table): reads in batches until a batch comes back short.
 */
static ssize_t read_chain(int fd, const struct iovec *iov, unsigned int n)
{
	ssize_t total = 0;
	while (n) {
		unsigned int batch = MIN(n, (unsigned int)IOV_MAX);
		size_t want = 0;
		for (unsigned int i = 0; i < batch; i++)
			want += iov[i].iov_len;
		ssize_t got = readv(fd, iov, (int)batch);
		if (got < 0)
			return total ? total : got; /* the error comes back on the next read */
		total += got;
		if ((size_t)got < want)
			break;
		iov += batch;
		n -= batch;
	}
	return total;
}

static void rx_run(struct virtio_console *con)
{
	bool pushed = false;
	while (con->rx_wanted && con->out_fd >= 0 && con->backend == VIRTIO_CONSOLE_SOCKET) {
		struct vq_chain c = { .iov = con->rx_iov, .iov_cap = MAX_SEGMENTS };
		int rc = virtio_pci_pop(con->vdev, RXQ, &c);
		if (rc <= 0) {
			/* Out of buffers (or broken): stop reading until the guest adds some. */
			con->rx_wanted = false;
			break;
		}
		if (c.n_out || !c.in_len) {
			bad_chain(con, "a receive buffer is not device-writable");
			con->rx_wanted = false;
			break;
		}
		ssize_t n = read_chain(con->out_fd, &c.iov[c.n_out], c.n_in);
		if (n > 0) {
			vq_chain_wrote(&c, (size_t)n);
			virtio_pci_push(con->vdev, RXQ, c.head, (uint32_t)n);
			atomic_fetch_add(&con->rx_bytes, (uint64_t)n);
			pushed = true;
			continue;
		}
		vq_unpop(virtio_pci_queue(con->vdev, RXQ), 1);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			break;
		drop_client(con, n < 0 ? strerror(errno) : "closed");
	}
	if (pushed)
		virtio_pci_notify(con->vdev, RXQ);
	watch_client(con);
}

static void on_client(void *opaque, uint32_t events)
{
	struct virtio_console *con = opaque;
	if (!virtio_pci_running(con->vdev)) {
		/* Nothing to move data to: stop watching until the driver is back (activate). */
		if (events & (EPOLLHUP | EPOLLERR))
			drop_client(con, "hung up");
		con->rx_wanted = false;
		con->tx_pending = false;
		watch_client(con);
		return;
	}
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		tx_run(con);
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		rx_run(con);
}

/* True if the held client has gone away (EOF pending), which we only notice when reading. */
static bool client_gone(int fd)
{
	char b;
	ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void on_accept(void *opaque, uint32_t events)
{
	(void)events;
	struct virtio_console *con = opaque;
	int fd = unix_socket_accept(con->listen_fd);
	if (fd < 0)
		return;
	if (con->out_fd >= 0 && client_gone(con->out_fd))
		drop_client(con, "closed");
	if (con->out_fd >= 0) {
		static const char busy[] = "vmon: this console already has a client\n";
		(void)!send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		close(fd);
		log_info(COMP, "refused a second client on %s: one client at a time", con->path);
		return;
	}
	con->out_fd = fd;
	con->watched = 0;
	log_info(COMP, "console client connected on %s", con->path);
	if (virtio_pci_running(con->vdev)) {
		con->rx_wanted = true;
		rx_run(con);
	}
}

static void con_queue_notify(void *dev, uint16_t q)
{
	struct virtio_console *con = dev;
	if (q == TXQ) {
		tx_run(con);
	} else if (q == RXQ) {
		con->rx_wanted = true;
		rx_run(con);
	}
}

static int con_activate(void *dev)
{
	struct virtio_console *con = dev;
	con->rx_wanted = true;
	rx_run(con);
	return 0;
}

static void con_reset(void *dev)
{
	struct virtio_console *con = dev;
	/* The chain belongs to the old rings: the transport resets them; the rest of its output is lost. */
	if (con->tx_pending && !con->file_started)
		atomic_fetch_add(&con->dropped_bytes, con->tx_chain.out_len - con->tx_done);
	con->tx_pending = false; /* a chain the file's writer has is counted when it finishes */
	con->file_started = false;
	con->rx_wanted = false;
	con->resume_push = false;
	watch_client(con);
}

static void con_config_read(void *dev, uint32_t off, void *data, uint32_t len)
{
	(void)dev;
	/* cols, rows (no VIRTIO_CONSOLE_F_SIZE), max_nr_ports 1 (no MULTIPORT), emerg_wr */
	uint8_t cfg[CONFIG_SIZE] = { 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 };
	memcpy(data, cfg + off, len);
}

struct saved_console {
	uint32_t magic, version;
	uint8_t tx_pending;
	uint8_t pad;
	uint16_t tx_head;
};

static long con_save(void *dev, void *buf, size_t cap)
{
	struct virtio_console *con = dev;
	struct saved_console s = { .magic = SAVE_MAGIC, .version = SAVE_VERSION, .tx_pending = con->tx_pending,
				   .tx_head = con->tx_chain.head };
	if (cap < sizeof(s))
		return -ENOSPC;
	memcpy(buf, &s, sizeof(s));
	return (long)sizeof(s);
}

static void on_resume(void *opaque)
{
	struct virtio_console *con = opaque;
	if (!con->resume_push)
		return;
	con->resume_push = false;
	struct virtqueue *vq = virtio_pci_queue(con->vdev, TXQ);
	if (virtio_pci_running(con->vdev) && vq && con->resume_head < vq->size) {
		virtio_pci_push(con->vdev, TXQ, con->resume_head, 0);
		virtio_pci_notify(con->vdev, TXQ);
	}
}

static int con_load(void *dev, const void *buf, size_t len)
{
	struct virtio_console *con = dev;
	struct saved_console s;
	if (len != sizeof(s))
		return -EINVAL;
	memcpy(&s, buf, sizeof(s));
	if (s.magic != SAVE_MAGIC || s.version != SAVE_VERSION || s.tx_pending > 1)
		return -EINVAL;
	con->tx_pending = false;
	/*
	 * The saved VM's process held a transmit chain for a slow client: its output went to a
	 * client that is gone, but the guest waits for the buffer back. Return it once the loop runs.
	 */
	con->resume_push = s.tx_pending;
	con->resume_head = s.tx_head;
	if (s.tx_pending)
		event_timer_set(con->resume, 1000, 0);
	return 0;
}

static const struct virtio_device_ops console_ops = {
	.name = "console",
	.device_id = VIRTIO_ID_CONSOLE,
	.pci_class = PCI_CLASS_COMMUNICATION_OTHER,
	.num_queues = 2,
	.queue_max_size = QUEUE_SIZE,
	.features = 0,
	.config_size = CONFIG_SIZE,
	.config_read = con_config_read,
	.queue_notify = con_queue_notify,
	.activate = con_activate,
	.reset = con_reset,
	.save = con_save,
	.load = con_load,
};

static int open_backend(struct virtio_console *con, uint64_t max_size)
{
	if (con->backend == VIRTIO_CONSOLE_FILE)
		return console_file_open(con->path, max_size, con->loop, on_file_written, con, &con->file);
	con->listen_fd = unix_socket_listen(con->path, "--console2 socket");
	if (con->listen_fd < 0)
		return con->listen_fd;
	int rc = event_loop_add_fd(con->loop, con->listen_fd, EPOLLIN, on_accept, con);
	if (rc) {
		log_error(COMP, "cannot watch the console socket %s: %s", con->path, strerror(-rc));
		return rc;
	}
	return 0;
}

int virtio_console_create(const struct virtio_pci_deps *deps, enum virtio_console_backend backend, const char *path,
			  uint64_t max_size, struct virtio_console **out)
{
	struct virtio_console *con = calloc(1, sizeof(*con));
	if (!con)
		return -ENOMEM;
	con->backend = backend;
	con->loop = deps->loop;
	con->listen_fd = -1;
	con->out_fd = -1;
	con->path = strdup(path);
	int rc = con->path ? 0 : -ENOMEM;
	if (!rc)
		rc = event_loop_add_timer(deps->loop, 0, 0, on_resume, con, &con->resume);
	if (!rc)
		rc = open_backend(con, max_size);
	if (!rc)
		rc = virtio_pci_create(deps, &console_ops, con, &con->vdev);
	if (rc) {
		virtio_console_destroy(con);
		return rc;
	}
	*out = con;
	return 0;
}

void virtio_console_destroy(struct virtio_console *con)
{
	if (!con)
		return;
	if (con->vdev)
		virtio_pci_destroy(con->vdev);
	console_file_close(con->file);
	if (con->out_fd >= 0) {
		if (con->watched)
			event_loop_remove_fd(con->loop, con->out_fd);
		close(con->out_fd);
	}
	if (con->listen_fd >= 0) {
		event_loop_remove_fd(con->loop, con->listen_fd);
		close(con->listen_fd);
		unlink(con->path);
	}
	if (con->resume)
		event_timer_free(con->resume);
	free(con->path);
	free(con);
}

void virtio_console_get_stats(const struct virtio_console *con, struct virtio_console_stats *st)
{
	st->tx_bytes = atomic_load(&con->tx_bytes);
	st->rx_bytes = atomic_load(&con->rx_bytes);
	st->dropped_bytes = atomic_load(&con->dropped_bytes);
	st->errors = atomic_load(&con->errors);
}
