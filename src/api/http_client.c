#include "api/http_client.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/util.h"

static int remaining_ms(uint64_t deadline)
{
	uint64_t now = monotonic_ns();
	return now >= deadline ? 0 : (int)((deadline - now) / 1000000) + 1;
}

static int wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		int ms = remaining_ms(deadline);
		if (ms == 0)
			return -ETIMEDOUT;
		int n = poll(&p, 1, ms);
		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static int send_all(int fd, const char *buf, size_t len, uint64_t deadline)
{
	while (len) {
		int rc = wait_fd(fd, POLLOUT, deadline);
		if (rc)
			return rc;
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Finds the end of the header block; returns the body offset or 0. */
static size_t header_end(const char *buf, size_t len)
{
	for (size_t i = 0; i + 3 < len; i++)
		if (!memcmp(buf + i, "\r\n\r\n", 4))
			return i + 4;
	return 0;
}

/* Returns Content-Length, or -1 if absent; -2 for chunked (which this client does not take). */
static long long parse_headers(const char *buf, size_t hdr_len)
{
	long long clen = -1;
	const char *p = memchr(buf, '\n', hdr_len);
	while (p && (size_t)(p - buf) < hdr_len) {
		p++;
		const char *eol = memchr(p, '\n', hdr_len - (size_t)(p - buf));
		if (!eol)
			break;
		if (!strncasecmp(p, "Content-Length:", 15))
			clen = strtoll(p + 15, NULL, 10);
		else if (!strncasecmp(p, "Transfer-Encoding:", 18) && strstr(p, "chunked") && strstr(p, "chunked") < eol)
			return -2;
		p = eol;
	}
	return clen;
}

int http_unix_request(const char *sock, const char *method, const char *path, const char *body, int timeout_ms,
		      struct http_response *resp)
{
	memset(resp, 0, sizeof(*resp));
	uint64_t deadline = monotonic_ns() + (uint64_t)timeout_ms * 1000000ULL;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(sock) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, sock);

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A Unix-socket connect does not block for long; the backlog being full gives EAGAIN. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	size_t blen = body ? strlen(body) : 0;
	char head[512];
	int hn = snprintf(head, sizeof(head),
			  "%s %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: vmon\r\nAccept: */*\r\n"
			  "Connection: close\r\n%sContent-Length: %zu\r\n\r\n",
			  method, path, blen ? "Content-Type: application/json\r\n" : "", blen);
	int rc = hn < 0 || (size_t)hn >= sizeof(head) ? -EINVAL : send_all(fd, head, (size_t)hn, deadline);
	if (rc == 0 && blen)
		rc = send_all(fd, body, blen, deadline);

	char *buf = NULL;
	size_t len = 0, cap = 0;
	size_t body_off = 0;
	long long clen = -1;
	while (rc == 0) {
		if (body_off && clen >= 0 && len - body_off >= (size_t)clen)
			break;
		if (len + 4096 + 1 > cap) {
			size_t ncap = cap ? cap * 2 : 8192;
			if (ncap > HTTP_CLIENT_MAX_RESPONSE + 8192) {
				rc = -EFBIG;
				break;
			}
			char *nb = realloc(buf, ncap);
			if (!nb) {
				rc = -ENOMEM;
				break;
			}
			buf = nb;
			cap = ncap;
		}
		if ((rc = wait_fd(fd, POLLIN, deadline)))
			break;
		ssize_t n = recv(fd, buf + len, cap - len - 1, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			rc = -errno;
			break;
		}
		if (n == 0)
			break; /* closed: the body ends here */
		len += (size_t)n;
		if (!body_off && (body_off = header_end(buf, len))) {
			clen = parse_headers(buf, body_off);
			if (clen == -2)
				rc = -EPROTO;
		}
	}
	close(fd);
	if (rc == 0 && (!body_off || len < 12 || memcmp(buf, "HTTP/1.", 7)))
		rc = -EPROTO;
	if (rc == 0 && clen >= 0 && len - body_off < (size_t)clen)
		rc = -EPROTO; /* the server closed mid-body */
	if (rc) {
		free(buf);
		return rc;
	}
	resp->status = atoi(buf + 9);
	resp->len = clen >= 0 ? (size_t)clen : len - body_off;
	memmove(buf, buf + body_off, resp->len);
	buf[resp->len] = 0;
	resp->body = buf;
	return 0;
}
