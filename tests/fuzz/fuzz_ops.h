/*
 * A fuzzed sequence of register accesses, for the targets that drive a device through its
 * ports or MMIO registers. Each access takes FUZZ_OP_BYTES of the input:
 *   [0]    bit 7: write (else read); bits 0-1: log2 of the size (1, 2, 4 or 8 bytes);
 *          bits 4-6: left to the target (another kind of event)
 *   [1..2] offset, little-endian (the target reduces it to its range)
 *   [3..6] value written, little-endian
 */
#ifndef VMON_TESTS_FUZZ_FUZZ_OPS_H
#define VMON_TESTS_FUZZ_FUZZ_OPS_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "bus/bus.h"
#include "devices/device.h"
#include "fuzz_common.h"

#define FUZZ_OP_BYTES 7

struct fuzz_op {
	bool write;
	uint8_t extra; /* bits 4-6 of the first byte */
	uint32_t len;
	uint32_t off;
	uint64_t val;
};

/* Takes the next access off the input; false when too little is left. */
static inline bool fuzz_next_op(const uint8_t **data, size_t *size, struct fuzz_op *op)
{
	if (*size < FUZZ_OP_BYTES)
		return false;
	const uint8_t *p = *data;
	op->write = p[0] & 0x80;
	op->extra = (p[0] >> 4) & 7;
	op->len = 1u << (p[0] & 3);
	op->off = (uint32_t)(p[1] | p[2] << 8);
	uint32_t v;
	memcpy(&v, p + 3, 4);
	op->val = v | (uint64_t)v << 32;
	*data += FUZZ_OP_BYTES;
	*size -= FUZZ_OP_BYTES;
	return true;
}

/* Performs op on bus at addr; whether any device claims it does not matter. */
static inline void fuzz_bus_access(struct bus *bus, uint64_t addr, const struct fuzz_op *op)
{
	uint64_t val = op->val;
	if (op->write)
		(void)bus_write(bus, addr, &val, op->len);
	else
		(void)bus_read(bus, addr, &val, op->len);
}

/*
 * Drives one port device registered at base (span ports decoded) with the whole input, then
 * checks that its saved state loads back and saves the same again, as a snapshot relies on.
 */
static inline void fuzz_port_device(struct bus *pio, const struct device_ops *ops, void *dev, uint64_t base,
				    uint32_t span, const uint8_t *data, size_t size,
				    void (*other)(void *dev, const struct fuzz_op *op))
{
	struct fuzz_op op;
	while (fuzz_next_op(&data, &size, &op)) {
		if (op.extra && other)
			other(dev, &op);
		else
			fuzz_bus_access(pio, base + op.off % span, &op);
	}
	if (!ops->save || !ops->load)
		return;
	static uint8_t a[4096], b[4096];
	long n = ops->save(dev, a, sizeof(a));
	fuzz_check(n >= 0, "device save failed");
	fuzz_check(ops->load(dev, a, (size_t)n) == 0, "device load of its own save failed");
	fuzz_check(ops->save(dev, b, sizeof(b)) == n && !memcmp(a, b, (size_t)n), "save/load/save differs");
}

#endif
