/*
 * A tiny writer of ACPI Machine Language bytes: just what a static DSDT needs (names,
 * integers, strings, packages, buffers, scopes, devices). It writes into a caller-owned
 * buffer and remembers overflow instead of failing each call, so building code stays linear.
 */
#ifndef VMON_ARCH_X86_ACPI_AML_H
#define VMON_ARCH_X86_ACPI_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aml {
	uint8_t *data;
	size_t len;
	size_t cap;
	bool overflow;  /* some byte did not fit; the contents are unusable */
	bool bad_name;  /* a name string was malformed */
};

void aml_init(struct aml *a, uint8_t *buf, size_t cap);
/* True when everything written so far fit and was well-formed. */
bool aml_ok(const struct aml *a);

void aml_byte(struct aml *a, uint8_t b);
void aml_bytes(struct aml *a, const void *p, size_t n);

/*
 * A NameString: optional leading '\' (root), then one or more 4-character segments separated
 * by '.', e.g. "\\_S5_", "PEVT", "\\_SB_.PEVT". Segments must be exactly 4 characters.
 */
void aml_name_string(struct aml *a, const char *path);
/* The shortest encoding of an integer constant (ZeroOp, OneOp, Byte/Word/DWord/QWordPrefix). */
void aml_integer(struct aml *a, uint64_t v);
void aml_string(struct aml *a, const char *s);

/* Name(path, <value>): the caller writes the value object next. */
void aml_name(struct aml *a, const char *path);

/*
 * Constructs with a PkgLength: *_begin writes the opcode and returns a mark; the caller writes
 * the contents; aml_end(a, mark) inserts the PkgLength in front of them.
 */
size_t aml_scope_begin(struct aml *a, const char *path);
size_t aml_device_begin(struct aml *a, const char *path);
size_t aml_package_begin(struct aml *a, uint8_t nelems);
void aml_end(struct aml *a, size_t mark);

/*
 * Method(name, nargs, NotSerialized) { ... } and If (predicate) { ... }, closed with aml_end();
 * after aml_if_begin() the caller writes the predicate, then the body.
 */
size_t aml_method_begin(struct aml *a, const char *name, uint8_t nargs);
size_t aml_if_begin(struct aml *a);
/* LEqual(x, y), Arg<n>, Return(x): the operands are the objects written next. */
void aml_lequal(struct aml *a);
void aml_arg(struct aml *a, unsigned int n);
void aml_return(struct aml *a);
/* Notify(path, value). */
void aml_notify(struct aml *a, const char *path, uint64_t value);

/* Buffer(n) { bytes }, e.g. a resource template. */
void aml_buffer(struct aml *a, const void *bytes, size_t n);

#endif
