#include "lib/user_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *file_type_phrase(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return "a regular file";
	case S_IFDIR: return "a directory";
	case S_IFIFO: return "a FIFO";
	case S_IFCHR: return "a character device";
	case S_IFBLK: return "a block device";
	case S_IFSOCK: return "a socket";
	case S_IFLNK: return "a symbolic link";
	}
	return "not a file";
}

int not_regular_file_error(const char *path, const char *what, char *err, size_t errlen)
{
	struct stat st;
	if (stat(path, &st) == 0) /* stat never opens, so it cannot block */
		snprintf(err, errlen, "%s %s is not a regular file (%s)", what, path, file_type_phrase(st.st_mode));
	else
		snprintf(err, errlen, "%s %s is not a regular file", what, path);
	return -EINVAL;
}

int open_regular_file(const char *path, const char *what, int flags, char *err, size_t errlen)
{
	const char *sep = what && *what ? " " : "";
	what = what ? what : "";

	/* Opening a FIFO for reading waits for a writer unless O_NONBLOCK is given. */
	int fd = open(path, flags | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		int rc = -errno;
		if (err)
			snprintf(err, errlen, "cannot open %s%s%s: %s", what, sep, path, strerror(-rc));
		return rc;
	}
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		if (err)
			snprintf(err, errlen, "cannot read %s%s%s: %s", what, sep, path, strerror(-rc));
	} else if (!S_ISREG(st.st_mode)) {
		rc = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		if (err)
			snprintf(err, errlen, "%s%s%s is not a regular file (%s)", what, sep, path,
				 file_type_phrase(st.st_mode));
	} else if (!(flags & O_NONBLOCK)) {
		int fl = fcntl(fd, F_GETFL);
		if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
			rc = -errno;
			if (err)
				snprintf(err, errlen, "cannot read %s%s%s: %s", what, sep, path, strerror(-rc));
		}
	}
	if (rc) {
		close(fd);
		return rc;
	}
	return fd;
}
