/*
 * Opening files a user named (kernel, initrd, config file, snapshot memory file) without ever
 * blocking on them: a FIFO or a device node would otherwise hang open() or read() with no
 * message.
 */
#ifndef VMON_LIB_USER_FILE_H
#define VMON_LIB_USER_FILE_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Opens path with flags (plus O_CLOEXEC) and returns the descriptor if it is a regular file.
 * The open itself cannot block (O_NONBLOCK, cleared again once the type is known). Otherwise
 * returns -errno (-EISDIR for a directory, -EINVAL for anything else that is not a regular
 * file) and, if err is not NULL, says why in err, naming the file as "WHAT PATH" (e.g.
 * "kernel /tmp/f is not a regular file (a FIFO)").
 */
int open_regular_file(const char *path, const char *what, int flags, char *err, size_t errlen);

/*
 * For a caller that was refused a path (-EINVAL from open_regular_file or read_file): writes
 * "WHAT PATH is not a regular file (a FIFO)" into err, and returns -EINVAL.
 */
int not_regular_file_error(const char *path, const char *what, char *err, size_t errlen);

/* "a FIFO", "a directory", "a character device", ... for a st_mode. */
const char *file_type_phrase(mode_t mode);

#endif
