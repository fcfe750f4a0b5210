#include "bus/pci.h"

#include <errno.h>
#include <string.h>

#include "lib/log.h"

#define COMP "pci"

/* The host bridge: an Intel ID Linux's conf1 sanity check accepts (it looks for a host bridge). */
#define HOST_BRIDGE_VENDOR 0x8086
#define HOST_BRIDGE_DEVICE 0x0d57
#define PCI_CLASS_HOST_BRIDGE 0x060000

#define CONFIG_ADDRESS_ENABLE 0x80000000u
#define BAR_MEM_FLAGS_MASK 0xfu /* bit 0 memory/IO, bits 2:1 type, bit 3 prefetchable: 0 = 32-bit memory */

void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor, uint16_t device, uint32_t class_code,
		     uint16_t subsys_vendor, uint16_t subsys_id, uint8_t revision)
{
	memset(d, 0, sizeof(*d));
	d->name = name;
	d->slot = -1;
	d->next_cap = PCI_CAP_START;
	pci_put16(d->config + PCI_VENDOR_ID, vendor);
	pci_put16(d->config + PCI_DEVICE_ID, device);
	d->config[PCI_REVISION_ID] = revision;
	d->config[PCI_CLASS_PROG] = (uint8_t)class_code;
	d->config[PCI_CLASS_PROG + 1] = (uint8_t)(class_code >> 8);
	d->config[PCI_CLASS_PROG + 2] = (uint8_t)(class_code >> 16);
	d->config[PCI_HEADER_TYPE] = 0; /* type 0, single function */
	pci_put16(d->config + PCI_SUBSYSTEM_VENDOR_ID, subsys_vendor);
	pci_put16(d->config + PCI_SUBSYSTEM_ID, subsys_id);
	d->config[PCI_INTERRUPT_PIN] = 0; /* no INTx: MSI-X only */
	pci_put16(d->wmask + PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
	d->wmask[0x0c] = 0xff; /* cache line size */
	d->wmask[0x0d] = 0xff; /* latency timer */
	d->wmask[PCI_INTERRUPT_LINE] = 0xff; /* scratch for the OS */
}

int pci_device_set_bar(struct pci_device *d, int bar, uint32_t size, const struct device_ops *ops, void *opaque)
{
	if (bar < 0 || bar >= PCI_NUM_BARS || size < 16 || (size & (size - 1)) || !ops)
		return -EINVAL;
	d->bars[bar] = (struct pci_bar){ .size = size, .ops = ops, .opaque = opaque };
	return 0;
}

int pci_device_add_capability(struct pci_device *d, uint8_t id, const void *body, uint8_t len)
{
	uint32_t off = d->next_cap;
	if (off + 2u + len > PCI_CONFIG_SIZE)
		return -ENOSPC;
	d->config[off] = id;
	d->config[off + 1] = 0; /* end of list */
	memcpy(d->config + off + 2, body, len);
	if (d->last_cap)
		d->config[d->last_cap + 1] = (uint8_t)off;
	else
		d->config[PCI_CAPABILITY_LIST] = (uint8_t)off;
	pci_put16(d->config + PCI_STATUS, pci_get16(d->config + PCI_STATUS) | PCI_STATUS_CAP_LIST);
	d->last_cap = (uint8_t)off;
	d->next_cap = (uint8_t)((off + 2u + len + 3u) & ~3u);
	if (off + 2u + len + 3u >= PCI_CONFIG_SIZE)
		d->next_cap = 0xff; /* full: the next add fails the size check */
	return (int)off;
}

void pci_device_set_wmask(struct pci_device *d, uint32_t off, const void *mask, uint32_t len)
{
	if (off >= PCI_CONFIG_SIZE || len > PCI_CONFIG_SIZE - off)
		return;
	memcpy(d->wmask + off, mask, len);
}

static void bar_unmap(struct pci_device *d, int i)
{
	struct pci_bar *b = &d->bars[i];
	if (!b->mapped_at)
		return;
	bus_unregister(d->bus->mmio, b->mapped_at);
	b->mapped_at = 0;
	if (d->bar_mapped)
		d->bar_mapped(d->owner, i, 0);
}

/* Makes the MMIO bus decode each BAR where the guest put it, if memory decoding is on. */
static void update_mappings(struct pci_device *d)
{
	if (!d->bus)
		return;
	bool decode = pci_get16(d->config + PCI_COMMAND) & PCI_COMMAND_MEMORY;
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &d->bars[i];
		if (!b->size)
			continue;
		/* Address 0 is "unassigned"; the all-ones sizing pattern is not a place either. */
		bool want = decode && b->addr != 0 && b->addr != (uint32_t)~(b->size - 1);
		if (b->mapped_at && (!want || b->mapped_at != b->addr))
			bar_unmap(d, i);
		if (!want || b->mapped_at)
			continue;
		int rc = bus_register(d->bus->mmio, b->addr, b->size, b->ops, b->opaque);
		if (rc) {
			static struct log_ratelimit rl;
			log_warn_ratelimited(&rl, COMP, "%s: BAR%d at 0x%x (%u bytes) overlaps another device; it stays unmapped",
					     d->name, i, b->addr, b->size);
			continue;
		}
		b->mapped_at = b->addr;
		if (d->bar_mapped)
			d->bar_mapped(d->owner, i, b->mapped_at);
	}
}

static uint32_t config_read(struct pci_device *d, uint32_t off, uint32_t len)
{
	if (len == 0 || len > 4 || (off & 3) + len > 4 || off >= PCI_CONFIG_SIZE)
		return 0xffffffffu;
	uint32_t v = 0;
	for (uint32_t i = 0; i < len; i++) {
		uint32_t o = off + i;
		uint8_t byte = d->config[o];
		if (o >= PCI_BAR0 && o < PCI_BAR0 + 4 * PCI_NUM_BARS) {
			const struct pci_bar *b = &d->bars[(o - PCI_BAR0) / 4];
			uint32_t reg = b->size ? b->addr : 0; /* flags 0: 32-bit non-prefetchable memory */
			byte = (uint8_t)(reg >> (8 * (o & 3)));
		}
		v |= (uint32_t)byte << (8 * i);
	}
	return v;
}

static void write_bar_byte(struct pci_device *d, uint32_t o, uint8_t byte)
{
	struct pci_bar *b = &d->bars[(o - PCI_BAR0) / 4];
	if (!b->size)
		return;
	unsigned int shift = 8 * (o & 3);
	uint32_t reg = (b->addr & ~(0xffu << shift)) | ((uint32_t)byte << shift);
	/* The low bits below the size read back as zero: that is how the guest learns the size. */
	b->addr = reg & ~(b->size - 1) & ~BAR_MEM_FLAGS_MASK;
}

static void config_write(struct pci_device *d, uint32_t off, uint32_t val, uint32_t len)
{
	if (len == 0 || len > 4 || (off & 3) + len > 4 || off >= PCI_CONFIG_SIZE)
		return;
	bool bars_touched = false, command_touched = false;
	for (uint32_t i = 0; i < len; i++) {
		uint32_t o = off + i;
		uint8_t byte = (uint8_t)(val >> (8 * i));
		if (o >= PCI_BAR0 && o < PCI_BAR0 + 4 * PCI_NUM_BARS) {
			write_bar_byte(d, o, byte);
			bars_touched = true;
			continue;
		}
		uint8_t m = d->wmask[o];
		d->config[o] = (uint8_t)((d->config[o] & ~m) | (byte & m));
		if (o == PCI_COMMAND || o == PCI_COMMAND + 1)
			command_touched = true;
	}
	if (bars_touched || command_touched)
		update_mappings(d);
	if (d->config_written)
		d->config_written(d->owner, off, len);
}

uint32_t pci_config_read(struct pci_device *d, uint32_t off, uint32_t len)
{
	if (d->bus)
		pthread_mutex_lock(&d->bus->lock);
	uint32_t v = config_read(d, off, len);
	if (d->bus)
		pthread_mutex_unlock(&d->bus->lock);
	return v;
}

void pci_config_write(struct pci_device *d, uint32_t off, uint32_t val, uint32_t len)
{
	if (d->bus)
		pthread_mutex_lock(&d->bus->lock);
	config_write(d, off, val, len);
	if (d->bus)
		pthread_mutex_unlock(&d->bus->lock);
}

/* Port 0xCF8: the configuration address latch; only dword accesses reach it, as on a PC chipset. */
static void address_read(void *dev, uint64_t offset, void *data, uint32_t len)
{
	struct pci_bus *pb = dev;
	if (offset != 0 || len != 4) {
		memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&pb->lock);
	uint32_t v = pb->config_address;
	pthread_mutex_unlock(&pb->lock);
	memcpy(data, &v, 4);
}

static void address_write(void *dev, uint64_t offset, const void *data, uint32_t len)
{
	struct pci_bus *pb = dev;
	if (offset != 0 || len != 4)
		return; /* byte writes at 0xCF9/0xCFB are chipset registers vmon does not have */
	uint32_t v;
	memcpy(&v, data, 4);
	pthread_mutex_lock(&pb->lock);
	pb->config_address = v & 0x80fffffcu; /* reserved bits 30:24 and 1:0 read as zero */
	pthread_mutex_unlock(&pb->lock);
}

/* Caller holds the lock. The device the latch selects, and the register offset, or NULL. */
static struct pci_device *selected(struct pci_bus *pb, uint64_t port_off, uint32_t len, uint32_t *reg)
{
	uint32_t a = pb->config_address;
	if (!(a & CONFIG_ADDRESS_ENABLE) || port_off + len > 4)
		return NULL;
	unsigned int bus = (a >> 16) & 0xff, slot = (a >> 11) & 0x1f, fn = (a >> 8) & 7;
	if (bus != 0 || fn != 0)
		return NULL;
	*reg = (a & 0xfc) + (uint32_t)port_off;
	return pb->devices[slot];
}

static void data_read(void *dev, uint64_t offset, void *data, uint32_t len)
{
	struct pci_bus *pb = dev;
	uint32_t reg, v = 0xffffffffu;
	pthread_mutex_lock(&pb->lock);
	struct pci_device *d = selected(pb, offset, len, &reg);
	if (d)
		v = config_read(d, reg, len);
	pthread_mutex_unlock(&pb->lock);
	memcpy(data, &v, len > 4 ? 4 : len);
}

static void data_write(void *dev, uint64_t offset, const void *data, uint32_t len)
{
	struct pci_bus *pb = dev;
	if (len > 4)
		return;
	uint32_t reg, v = 0;
	memcpy(&v, data, len);
	pthread_mutex_lock(&pb->lock);
	struct pci_device *d = selected(pb, offset, len, &reg);
	if (d)
		config_write(d, reg, v, len);
	pthread_mutex_unlock(&pb->lock);
}

static const struct device_ops address_ops = { .name = "pci-config-address", .read = address_read, .write = address_write };
static const struct device_ops data_ops = { .name = "pci-config-data", .read = data_read, .write = data_write };

int pci_bus_init(struct pci_bus *pb, struct bus *pio, struct bus *mmio, uint64_t mmio_start, uint64_t mmio_end)
{
	memset(pb, 0, sizeof(*pb));
	pb->mmio = mmio;
	pb->mmio_next = mmio_start;
	pb->mmio_end = mmio_end;
	pthread_mutex_init(&pb->lock, NULL);
	pci_device_init(&pb->host_bridge, "host-bridge", HOST_BRIDGE_VENDOR, HOST_BRIDGE_DEVICE, PCI_CLASS_HOST_BRIDGE,
			0, 0, 0);
	int rc = pci_bus_add_device(pb, &pb->host_bridge);
	if (!rc)
		rc = bus_register(pio, PCI_CONFIG_ADDRESS_PORT, 4, &address_ops, pb);
	if (!rc)
		rc = bus_register(pio, PCI_CONFIG_DATA_PORT, 4, &data_ops, pb);
	if (rc)
		log_error(COMP, "cannot register the PCI configuration ports 0xcf8-0xcff: %s", strerror(-rc));
	return rc;
}

void pci_bus_destroy(struct pci_bus *pb)
{
	pthread_mutex_lock(&pb->lock);
	for (int s = 0; s < PCI_SLOTS; s++) {
		struct pci_device *d = pb->devices[s];
		if (!d)
			continue;
		for (int i = 0; i < PCI_NUM_BARS; i++)
			bar_unmap(d, i);
		d->bus = NULL;
		pb->devices[s] = NULL;
	}
	pthread_mutex_unlock(&pb->lock);
	pthread_mutex_destroy(&pb->lock);
}

int pci_bus_add_device(struct pci_bus *pb, struct pci_device *d)
{
	pthread_mutex_lock(&pb->lock);
	int slot = 0;
	while (slot < PCI_SLOTS && pb->devices[slot])
		slot++;
	if (slot == PCI_SLOTS) {
		pthread_mutex_unlock(&pb->lock);
		log_error(COMP, "no free PCI slot for %s: bus 0 holds at most %d devices", d->name, PCI_SLOTS);
		return -ENOSPC;
	}
	/* Allocate every BAR first so a failure leaves the bus untouched. */
	uint64_t next = pb->mmio_next;
	uint32_t addr[PCI_NUM_BARS] = { 0 };
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		if (!d->bars[i].size)
			continue;
		uint64_t a = (next + d->bars[i].size - 1) & ~((uint64_t)d->bars[i].size - 1);
		if (a + d->bars[i].size > pb->mmio_end) {
			pthread_mutex_unlock(&pb->lock);
			log_error(COMP, "no room for %s's BAR%d (%u bytes) in the PCI MMIO window", d->name, i,
				  d->bars[i].size);
			return -ENOSPC;
		}
		addr[i] = (uint32_t)a;
		next = a + d->bars[i].size;
	}
	for (int i = 0; i < PCI_NUM_BARS; i++)
		d->bars[i].addr = addr[i];
	pb->mmio_next = next;
	d->slot = slot;
	d->bus = pb;
	pb->devices[slot] = d;
	pthread_mutex_unlock(&pb->lock);
	return 0;
}

void pci_bus_remove_device(struct pci_bus *pb, struct pci_device *d)
{
	pthread_mutex_lock(&pb->lock);
	if (d->bus == pb && d->slot >= 0 && pb->devices[d->slot] == d) {
		for (int i = 0; i < PCI_NUM_BARS; i++)
			bar_unmap(d, i);
		pb->devices[d->slot] = NULL;
		d->bus = NULL;
		d->slot = -1;
	}
	pthread_mutex_unlock(&pb->lock);
}
