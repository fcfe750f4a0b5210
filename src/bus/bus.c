#include "bus/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void bus_init(struct bus *bus, const char *name)
{
	memset(bus, 0, sizeof(*bus));
	bus->name = name;
	pthread_rwlock_init(&bus->lock, NULL);
}

void bus_destroy(struct bus *bus)
{
	free(bus->ranges);
	pthread_rwlock_destroy(&bus->lock);
	bus->ranges = NULL;
	bus->nranges = bus->cap = 0;
}

int bus_register(struct bus *bus, uint64_t base, uint64_t len, const struct device_ops *ops, void *dev)
{
	if (len == 0 || base + len < base)
		return -EINVAL;
	pthread_rwlock_wrlock(&bus->lock);
	int pos = 0;
	while (pos < bus->nranges && bus->ranges[pos].base < base)
		pos++;
	bool overlaps = (pos > 0 && bus->ranges[pos - 1].base + bus->ranges[pos - 1].len > base) ||
			(pos < bus->nranges && base + len > bus->ranges[pos].base);
	if (overlaps) {
		pthread_rwlock_unlock(&bus->lock);
		return -EEXIST;
	}
	if (bus->nranges == bus->cap) {
		int ncap = bus->cap ? bus->cap * 2 : 16;
		struct bus_range *n = realloc(bus->ranges, (size_t)ncap * sizeof(*n));
		if (!n) {
			pthread_rwlock_unlock(&bus->lock);
			return -ENOMEM;
		}
		bus->ranges = n;
		bus->cap = ncap;
	}
	memmove(&bus->ranges[pos + 1], &bus->ranges[pos], (size_t)(bus->nranges - pos) * sizeof(bus->ranges[0]));
	bus->ranges[pos] = (struct bus_range){ .base = base, .len = len, .ops = ops, .dev = dev };
	bus->nranges++;
	pthread_rwlock_unlock(&bus->lock);
	return 0;
}

int bus_unregister(struct bus *bus, uint64_t base)
{
	pthread_rwlock_wrlock(&bus->lock);
	int pos = 0;
	while (pos < bus->nranges && bus->ranges[pos].base != base)
		pos++;
	if (pos == bus->nranges) {
		pthread_rwlock_unlock(&bus->lock);
		return -ENOENT;
	}
	memmove(&bus->ranges[pos], &bus->ranges[pos + 1], (size_t)(bus->nranges - pos - 1) * sizeof(bus->ranges[0]));
	bus->nranges--;
	pthread_rwlock_unlock(&bus->lock);
	return 0;
}

/* Caller holds the read lock. Binary search over the sorted, disjoint ranges. */
static const struct bus_range *find(const struct bus *bus, uint64_t addr)
{
	int lo = 0, hi = bus->nranges - 1;
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		const struct bus_range *r = &bus->ranges[mid];
		if (addr < r->base)
			hi = mid - 1;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

bool bus_read(struct bus *bus, uint64_t addr, void *data, uint32_t len)
{
	pthread_rwlock_rdlock(&bus->lock);
	const struct bus_range *r = find(bus, addr);
	if (r && r->ops->read)
		r->ops->read(r->dev, addr - r->base, data, len);
	else
		memset(data, 0xff, len);
	pthread_rwlock_unlock(&bus->lock);
	return r != NULL;
}

bool bus_write(struct bus *bus, uint64_t addr, const void *data, uint32_t len)
{
	pthread_rwlock_rdlock(&bus->lock);
	const struct bus_range *r = find(bus, addr);
	if (r && r->ops->write)
		r->ops->write(r->dev, addr - r->base, data, len);
	pthread_rwlock_unlock(&bus->lock);
	return r != NULL;
}

void bus_reset_all(struct bus *bus)
{
	pthread_rwlock_rdlock(&bus->lock);
	for (int i = 0; i < bus->nranges; i++)
		if (bus->ranges[i].ops->reset)
			bus->ranges[i].ops->reset(bus->ranges[i].dev);
	pthread_rwlock_unlock(&bus->lock);
}
