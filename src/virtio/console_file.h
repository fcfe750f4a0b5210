/*
 * The file side of --console2 file=PATH[,max_size=SIZE]: appends guest output to PATH without
 * blocking the event loop, and never lets the file grow past max_size.
 *
 * A write to a regular file can block for as long as the disk (or NFS server) likes, and
 * O_NONBLOCK does not apply to files: so the write runs on a thread of this object's own, straight
 * from the guest's buffer, one buffer at a time. The device holds that buffer until done() runs
 * on the loop thread, which is its flow control: the guest waits, nothing is copied or queued.
 * Bytes beyond max_size (counting what the file held when opened) are dropped, counted, and
 * reported once with a warning.
 */
#ifndef VMON_VIRTIO_CONSOLE_FILE_H
#define VMON_VIRTIO_CONSOLE_FILE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "backends/event_loop.h"

struct console_file;

/* What the last write did, for the device's counters. */
struct console_file_result {
	uint64_t written; /* bytes now in the file */
	uint64_t dropped; /* bytes over max_size, or lost to a write error */
	int error;        /* 0, or the errno of a failed write (already logged) */
};

/*
 * Opens (creates 0600, appends to) path; done(opaque) runs on the loop thread after each write.
 * Returns 0, or a negative errno after one error line naming --console2.
 */
int console_file_open(const char *path, uint64_t max_size, struct event_loop *loop, void (*done)(void *opaque),
		      void *opaque, struct console_file **out);
/* Stops the writer thread (after the write in progress) and closes the file. Loop stopped. */
void console_file_close(struct console_file *cf);

/* True while a write is in progress; a new one may start only when it is false. */
bool console_file_busy(const struct console_file *cf);

/*
 * Loop thread: starts appending the n segments. iov and the memory it points to (guest RAM)
 * must stay valid until done() runs. Not while busy.
 */
void console_file_write(struct console_file *cf, const struct iovec *iov, unsigned int n);

/* Loop thread, in or after done(): what the last write did. */
struct console_file_result console_file_result(const struct console_file *cf);

#endif
