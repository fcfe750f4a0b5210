/*
 * The device model: a device is a struct plus an ops table. Its whole guest-visible state
 * lives in that struct, so snapshots and migration can save and restore any device the
 * same way.
 */
#ifndef VMON_DEVICES_DEVICE_H
#define VMON_DEVICES_DEVICE_H

#include <stddef.h>
#include <stdint.h>

struct device_ops {
	const char *name;
	/* offset is relative to the start of the range the device was registered at; len is 1, 2, 4 or 8. */
	void (*read)(void *dev, uint64_t offset, void *data, uint32_t len);
	void (*write)(void *dev, uint64_t offset, const void *data, uint32_t len);
	void (*reset)(void *dev);
	/* Serialises the device state into buf (at most cap bytes); returns bytes written or -errno. */
	long (*save)(void *dev, void *buf, size_t cap);
	/* Restores state saved by save(); returns 0 or -errno (-EINVAL for a malformed blob). */
	int (*load)(void *dev, const void *buf, size_t len);
};

/* How a device raises or lowers its interrupt line; the VM supplies it (KVM_IRQ_LINE). */
struct irq_line {
	void (*set)(void *opaque, unsigned int gsi, int level);
	void *opaque;
	unsigned int gsi;
};

static inline void irq_line_set(const struct irq_line *irq, int level)
{
	if (irq && irq->set)
		irq->set(irq->opaque, irq->gsi, level);
}

#endif
