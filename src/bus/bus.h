/*
 * Address-range dispatch for port I/O and MMIO exits: each registered range maps to a device
 * and its ops. Ranges are registered during VM setup; lookups take a read lock only.
 */
#ifndef VMON_BUS_BUS_H
#define VMON_BUS_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/device.h"

struct bus_range {
	uint64_t base;
	uint64_t len;
	const struct device_ops *ops;
	void *dev;
};

struct bus {
	const char *name; /* "pio" or "mmio", for messages */
	struct bus_range *ranges; /* sorted by base, never overlapping */
	int nranges;
	int cap;
	pthread_rwlock_t lock;
};

void bus_init(struct bus *bus, const char *name);
void bus_destroy(struct bus *bus);

/* Returns 0, -EEXIST if the range overlaps a registered one, -EINVAL for len 0 or wrap-around. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, const struct device_ops *ops, void *dev);

/*
 * Removes the range registered at exactly base (e.g. a PCI BAR the guest moved or disabled).
 * Returns 0 or -ENOENT. Waits for accesses in flight on the bus to finish, so it must not be
 * called from a handler of this same bus.
 */
int bus_unregister(struct bus *bus, uint64_t base);

/*
 * Dispatches an access. Returns true if a device claimed addr. Reads from unclaimed addresses
 * return all ones, like an empty bus; writes there are dropped.
 */
bool bus_read(struct bus *bus, uint64_t addr, void *data, uint32_t len);
bool bus_write(struct bus *bus, uint64_t addr, const void *data, uint32_t len);

/* Calls reset on every device registered on the bus. */
void bus_reset_all(struct bus *bus);

#endif
