#include "lib/unix_socket.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/log.h"

#define COMP "unix-socket"

static int fill_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (!*path || strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	return 0;
}

static int remove_stale(const char *path, const struct sockaddr_un *sa, const char *what)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		log_error(COMP, "%s %s exists and is not a socket: choose another path or remove the file", what, path);
		return -EEXIST;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	int e = errno;
	close(fd);
	if (rc == 0) {
		log_error(COMP, "%s %s is in use by another process (another VM?): choose another path", what, path);
		return -EADDRINUSE;
	}
	if (e != ECONNREFUSED) {
		log_error(COMP, "cannot check the existing socket %s (%s): %s", path, what, strerror(e));
		return -e;
	}
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	log_info(COMP, "replaced the stale socket %s (%s)", path, what);
	return 0;
}

/*
 * chmod 0600 without following a symlink. glibc does that through /proc/self/fd; where /proc is
 * not mounted (a jail), fall back to chmod once lstat has seen a socket there.
 */
static int make_private(const char *path)
{
	if (fchmodat(AT_FDCWD, path, 0600, AT_SYMLINK_NOFOLLOW) == 0)
		return 0;
	if (errno == EOPNOTSUPP)
		return -1; /* a symlink */
	struct stat st;
	if (lstat(path, &st) < 0)
		return -1;
	if (!S_ISSOCK(st.st_mode)) {
		errno = EEXIST;
		return -1;
	}
	return chmod(path, 0600);
}

int unix_socket_listen(const char *path, const char *what)
{
	struct sockaddr_un sa;
	int rc = fill_addr(&sa, path);
	if (rc) {
		log_error(COMP, "%s path '%s' must be 1 to %zu bytes long: use a shorter path", what, path,
			  sizeof(sa.sun_path) - 1);
		return rc;
	}
	if ((rc = remove_stale(path, &sa, what)))
		return rc;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/*
	 * Owner only: whoever connects talks to the guest. The mode is set after bind but before
	 * listen, and nobody can connect to a socket that does not listen yet, so there is no moment
	 * of wider access; the process-wide umask is left alone (other threads create files).
	 * AT_SYMLINK_NOFOLLOW: a path swapped for a symlink in between is refused, not followed.
	 */
	if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		log_error(COMP, "cannot create the %s socket %s: %s", what, path, strerror(e));
		close(fd);
		return -e;
	}
	if (make_private(path) < 0) {
		int e = errno;
		log_error(COMP, "cannot make the %s socket %s private to its owner: %s", what, path, strerror(e));
		close(fd);
		unlink(path);
		return -e;
	}
	if (listen(fd, 16) < 0) {
		int e = errno;
		log_error(COMP, "cannot listen on the %s socket %s: %s", what, path, strerror(e));
		close(fd);
		unlink(path);
		return -e;
	}
	return fd;
}

int unix_socket_connect(const char *path)
{
	struct sockaddr_un sa;
	int rc = fill_addr(&sa, path);
	if (rc)
		return rc;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* A Unix stream connect completes at once or fails; EAGAIN means the listener's backlog is full. */
	if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

int unix_socket_accept(int listen_fd)
{
	int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return fd;
}
