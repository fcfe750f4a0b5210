#include "arch/x86/acpi_aml.h"

#include <string.h>

/* Opcodes from ACPI 6.x section 20 (AML specification). */
#define AML_ZERO_OP     0x00
#define AML_ONE_OP      0x01
#define AML_NAME_OP     0x08
#define AML_BYTE_PREFIX 0x0a
#define AML_WORD_PREFIX 0x0b
#define AML_DWORD_PREFIX 0x0c
#define AML_STRING_PREFIX 0x0d
#define AML_QWORD_PREFIX 0x0e
#define AML_SCOPE_OP    0x10
#define AML_BUFFER_OP   0x11
#define AML_PACKAGE_OP  0x12
#define AML_DUAL_NAME_PREFIX  0x2e
#define AML_MULTI_NAME_PREFIX 0x2f
#define AML_EXT_OP_PREFIX 0x5b
#define AML_DEVICE_OP   0x82 /* after AML_EXT_OP_PREFIX */
#define AML_ROOT_CHAR   0x5c
#define AML_METHOD_OP   0x14
#define AML_ARG0_OP     0x68
#define AML_NOTIFY_OP   0x86
#define AML_LEQUAL_OP   0x93
#define AML_IF_OP       0xa0
#define AML_RETURN_OP   0xa4

#define PKGLEN_MAX 0x0fffffff

void aml_init(struct aml *a, uint8_t *buf, size_t cap)
{
	memset(a, 0, sizeof(*a));
	a->data = buf;
	a->cap = cap;
}

bool aml_ok(const struct aml *a) { return !a->overflow && !a->bad_name; }

void aml_byte(struct aml *a, uint8_t b) { aml_bytes(a, &b, 1); }

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (a->overflow || n > a->cap - a->len) {
		a->overflow = true;
		return;
	}
	memcpy(a->data + a->len, p, n);
	a->len += n;
}

static bool name_char_ok(char c, bool first)
{
	if (c == '_' || (c >= 'A' && c <= 'Z'))
		return true;
	return !first && c >= '0' && c <= '9';
}

void aml_name_string(struct aml *a, const char *path)
{
	if (*path == '\\') {
		aml_byte(a, AML_ROOT_CHAR);
		path++;
	}
	size_t len = strlen(path);
	size_t nseg = (len + 1) / 5;
	if (len == 0 || nseg > 255 || nseg * 5 - 1 != len) {
		a->bad_name = true;
		return;
	}
	for (size_t s = 0; s < nseg; s++) {
		const char *seg = path + s * 5;
		for (int i = 0; i < 4; i++)
			if (!name_char_ok(seg[i], i == 0))
				a->bad_name = true;
		if (s + 1 < nseg && seg[4] != '.')
			a->bad_name = true;
	}
	if (nseg == 2) {
		aml_byte(a, AML_DUAL_NAME_PREFIX);
	} else if (nseg > 2) {
		aml_byte(a, AML_MULTI_NAME_PREFIX);
		aml_byte(a, (uint8_t)nseg);
	}
	for (size_t s = 0; s < nseg; s++)
		aml_bytes(a, path + s * 5, 4);
}

void aml_integer(struct aml *a, uint64_t v)
{
	uint8_t le[8];
	for (int i = 0; i < 8; i++)
		le[i] = (uint8_t)(v >> (8 * i));
	if (v == 0) {
		aml_byte(a, AML_ZERO_OP);
	} else if (v == 1) {
		aml_byte(a, AML_ONE_OP);
	} else if (v <= 0xff) {
		aml_byte(a, AML_BYTE_PREFIX);
		aml_bytes(a, le, 1);
	} else if (v <= 0xffff) {
		aml_byte(a, AML_WORD_PREFIX);
		aml_bytes(a, le, 2);
	} else if (v <= 0xffffffff) {
		aml_byte(a, AML_DWORD_PREFIX);
		aml_bytes(a, le, 4);
	} else {
		aml_byte(a, AML_QWORD_PREFIX);
		aml_bytes(a, le, 8);
	}
}

void aml_string(struct aml *a, const char *s)
{
	aml_byte(a, AML_STRING_PREFIX);
	aml_bytes(a, s, strlen(s) + 1);
}

void aml_name(struct aml *a, const char *path)
{
	aml_byte(a, AML_NAME_OP);
	aml_name_string(a, path);
}

static size_t mark(const struct aml *a) { return a->len; }

size_t aml_scope_begin(struct aml *a, const char *path)
{
	aml_byte(a, AML_SCOPE_OP);
	size_t m = mark(a);
	aml_name_string(a, path);
	return m;
}

size_t aml_device_begin(struct aml *a, const char *path)
{
	aml_byte(a, AML_EXT_OP_PREFIX);
	aml_byte(a, AML_DEVICE_OP);
	size_t m = mark(a);
	aml_name_string(a, path);
	return m;
}

size_t aml_package_begin(struct aml *a, uint8_t nelems)
{
	aml_byte(a, AML_PACKAGE_OP);
	size_t m = mark(a);
	aml_byte(a, nelems);
	return m;
}

/*
 * PkgLength counts its own bytes too. One byte holds up to 63; longer forms put the number
 * of extra bytes in bits 7:6 of the first byte, the low nibble in bits 3:0, then 8 bits per byte.
 */
void aml_end(struct aml *a, size_t m)
{
	if (a->overflow || m > a->len)
		return;
	size_t body = a->len - m;
	size_t n = body + 1 <= 0x3f ? 1 : body + 2 <= 0xfff ? 2 : body + 3 <= 0xfffff ? 3 : 4;
	size_t total = body + n;
	if (total > PKGLEN_MAX || n > a->cap - a->len) {
		a->overflow = true;
		return;
	}
	memmove(a->data + m + n, a->data + m, body);
	uint8_t *p = a->data + m;
	if (n == 1) {
		p[0] = (uint8_t)total;
	} else {
		p[0] = (uint8_t)(((n - 1) << 6) | (total & 0x0f));
		for (size_t i = 1; i < n; i++)
			p[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	}
	a->len += n;
}

void aml_buffer(struct aml *a, const void *bytes, size_t n)
{
	aml_byte(a, AML_BUFFER_OP);
	size_t m = mark(a);
	aml_integer(a, n);
	aml_bytes(a, bytes, n);
	aml_end(a, m);
}

size_t aml_method_begin(struct aml *a, const char *name, uint8_t nargs)
{
	aml_byte(a, AML_METHOD_OP);
	size_t m = mark(a);
	aml_name_string(a, name);
	if (nargs > 7)
		a->bad_name = true;
	aml_byte(a, nargs & 7); /* MethodFlags: argument count, not serialized, sync level 0 */
	return m;
}

size_t aml_if_begin(struct aml *a)
{
	aml_byte(a, AML_IF_OP);
	return mark(a);
}

void aml_lequal(struct aml *a) { aml_byte(a, AML_LEQUAL_OP); }

void aml_arg(struct aml *a, unsigned int n)
{
	if (n > 6)
		a->bad_name = true;
	aml_byte(a, (uint8_t)(AML_ARG0_OP + (n & 7)));
}

void aml_return(struct aml *a) { aml_byte(a, AML_RETURN_OP); }

void aml_notify(struct aml *a, const char *path, uint64_t value)
{
	aml_byte(a, AML_NOTIFY_OP);
	aml_name_string(a, path);
	aml_integer(a, value);
}
