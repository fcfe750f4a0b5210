#include "api/http_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct reply {
	char *buf;
	size_t len, cap;
	bool too_big;
};

/* Collects the body; refusing a byte past the limit makes curl stop with CURLE_WRITE_ERROR. */
static size_t on_body(char *data, size_t size, size_t n, void *opaque)
{
	struct reply *r = opaque;
	size_t add = size * n;
	if (add > HTTP_CLIENT_MAX_RESPONSE - r->len) {
		r->too_big = true;
		return 0;
	}
	if (r->len + add + 1 > r->cap) {
		size_t cap = r->cap ? r->cap : 8192;
		while (cap < r->len + add + 1)
			cap *= 2;
		char *more = realloc(r->buf, cap);
		if (!more)
			return 0;
		r->buf = more;
		r->cap = cap;
	}
	memcpy(r->buf + r->len, data, add);
	r->len += add;
	r->buf[r->len] = 0;
	return add;
}

static void init_curl(void)
{
	curl_global_init(CURL_GLOBAL_NOTHING); /* no TLS: only plain HTTP on a Unix socket */
}

static int to_errno(CURLcode c, CURL *h, const struct reply *r)
{
	long os_errno = 0;
	switch (c) {
	case CURLE_OK: return 0;
	case CURLE_COULDNT_CONNECT:
		curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
		return os_errno > 0 ? -(int)os_errno : -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT: return -ETIMEDOUT;
	case CURLE_FILESIZE_EXCEEDED: return -EFBIG;
	case CURLE_WRITE_ERROR: return r->too_big ? -EFBIG : -ENOMEM;
	case CURLE_OUT_OF_MEMORY: return -ENOMEM;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
		curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
		return os_errno > 0 ? -(int)os_errno : -EPROTO;
	default: return -EPROTO; /* not HTTP, a bad header, a body cut short, nothing at all */
	}
}

int http_unix_request(const char *sock, const char *method, const char *path, const char *body, int timeout_ms,
		      struct http_response *resp)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	memset(resp, 0, sizeof(*resp));
	pthread_once(&once, init_curl);
	char url[1024];
	if (snprintf(url, sizeof(url), "http://localhost%s", path) >= (int)sizeof(url))
		return -ENAMETOOLONG;
	CURL *h = curl_easy_init();
	if (!h)
		return -ENOMEM;
	struct reply r = { 0 };
	/* No Expect: 100-continue round trip; the body is JSON. */
	struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");
	struct curl_slist *more = hdrs ? curl_slist_append(hdrs, "Content-Type: application/json") : NULL;
	if (!more) {
		curl_slist_free_all(hdrs);
		curl_easy_cleanup(h);
		return -ENOMEM;
	}
	hdrs = more;
	bool ok = curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, sock) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_URL, url) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http") == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_NOPROXY, "*") == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)HTTP_CLIENT_MAX_RESPONSE) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_USERAGENT, "vmon") == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_WRITEDATA, &r) == CURLE_OK;
	if (ok && strcmp(method, "GET")) {
		/* Always a body, empty if none, so the server sees a Content-Length. */
		ok = curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "") == CURLE_OK &&
		     curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method) == CURLE_OK;
	}
	int rc = ok ? to_errno(curl_easy_perform(h), h, &r) : -EINVAL;
	long status = 0;
	if (rc == 0)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (rc == 0 && status < 100)
		rc = -EPROTO;
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	if (rc == 0 && !r.buf && !(r.buf = calloc(1, 1)))
		rc = -ENOMEM;
	if (rc) {
		free(r.buf);
		return rc;
	}
	resp->status = (int)status;
	resp->body = r.buf;
	resp->len = r.len;
	return 0;
}

/* Length of the valid UTF-8 sequence at s that is not a C1 control, or 0. */
static size_t utf8_printable(const unsigned char *s, size_t len)
{
	size_t n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
	if (n == 0 || n > len)
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if (n == 2 && s[0] == 0xc2 && s[1] < 0xa0)
		return 0; /* U+0080..U+009F: C1 controls, e.g. CSI */
	return n;
}

void http_write_escaped(FILE *f, const char *s, size_t len, int keep_lines)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < len;) {
		unsigned char c = p[i];
		if ((c >= 0x20 && c < 0x7f) || (keep_lines && (c == '\n' || c == '\t'))) {
			fputc(c, f);
			i++;
			continue;
		}
		size_t n = c >= 0x80 ? utf8_printable(p + i, len - i) : 0;
		if (n) {
			fwrite(p + i, 1, n, f);
			i += n;
		} else {
			fprintf(f, "\\x%02x", c);
			i++;
		}
	}
}

json_t *http_unix_get_json(const char *sock, const char *path, int timeout_ms)
{
	struct http_response r;
	if (http_unix_request(sock, "GET", path, NULL, timeout_ms, &r))
		return NULL;
	json_error_t jerr;
	json_t *o = r.status == 200 ? json_loadb(r.body, r.len, 0, &jerr) : NULL;
	free(r.body);
	return o;
}
