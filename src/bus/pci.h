/*
 * PCI bus 0: a host bridge at 00:00.0 and up to 31 more single-function devices, reached
 * through configuration mechanism #1 (ports 0xCF8 address, 0xCFC-0xCFF data). Devices have
 * 32-bit memory BARs only, allocated from LAYOUT_PCI_MMIO_START up; a BAR is decoded on the
 * MMIO bus only while the guest has memory decoding on in the command register, and moves
 * when the guest rewrites it. No legacy INTx: the interrupt pin reads 0, devices use MSI-X.
 *
 * Locking: all configuration-space accesses are serialised by the bus's lock; the device hooks
 * below run under it, on the vCPU thread that made the access.
 */
#ifndef VMON_BUS_PCI_H
#define VMON_BUS_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus/bus.h"
#include "devices/device.h"

#define PCI_SLOTS 32
#define PCI_NUM_BARS 6
#define PCI_CONFIG_SIZE 256

#define PCI_CONFIG_ADDRESS_PORT 0xcf8
#define PCI_CONFIG_DATA_PORT 0xcfc

/* Standard configuration header offsets and bits (type 0). */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_COMMAND_MEMORY 0x0002
#define PCI_COMMAND_MASTER 0x0004
#define PCI_COMMAND_INTX_DISABLE 0x0400
#define PCI_STATUS 0x06
#define PCI_STATUS_CAP_LIST 0x0010
#define PCI_REVISION_ID 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID 0x2e
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d
#define PCI_CAP_START 0x40 /* first byte after the standard header */

#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_MSIX 0x11

struct pci_bus;

struct pci_bar {
	uint32_t size;                 /* power of two, at least 16; 0 = BAR not implemented */
	uint32_t addr;                 /* base the guest programmed (vmon's allocation until then) */
	const struct device_ops *ops;  /* MMIO handlers; offsets are relative to the BAR's base */
	void *opaque;
	uint64_t mapped_at;            /* where it is registered on the MMIO bus, 0 if nowhere */
};

struct pci_device {
	const char *name;                 /* for messages */
	uint8_t config[PCI_CONFIG_SIZE];  /* the guest-visible configuration space */
	uint8_t wmask[PCI_CONFIG_SIZE];   /* bits the guest may write (BARs are handled apart) */
	struct pci_bar bars[PCI_NUM_BARS];
	uint8_t next_cap;                 /* where the next capability goes */
	uint8_t last_cap;                 /* offset of the last capability added, 0 if none */
	int slot;                         /* -1 until added to a bus */
	struct pci_bus *bus;

	void *owner; /* passed to the hooks */
	/* Called after a BAR started (addr != 0) or stopped (addr == 0) being decoded at addr. */
	void (*bar_mapped)(void *owner, int bar, uint64_t addr);
	/* Called after the guest wrote [off, off+len) of configuration space (after wmask applied). */
	void (*config_written)(void *owner, uint32_t off, uint32_t len);
};

struct pci_bus {
	struct bus *mmio;
	uint32_t config_address; /* the 0xCF8 latch */
	struct pci_device *devices[PCI_SLOTS];
	struct pci_device host_bridge;
	uint64_t mmio_next, mmio_end; /* BAR allocation window */
	pthread_mutex_t lock;
};

/*
 * Sets up bus 0 with its host bridge at 00:00.0 and registers the configuration ports on pio.
 * BARs go to mmio, allocated from [mmio_start, mmio_end). Returns 0 or a negative errno.
 */
int pci_bus_init(struct pci_bus *pb, struct bus *pio, struct bus *mmio, uint64_t mmio_start, uint64_t mmio_end);
/* Unmaps every BAR. The pio ranges stay registered (the buses are torn down with the VM). */
void pci_bus_destroy(struct pci_bus *pb);

/* A fresh type-0 header: IDs, 24-bit class code, subsystem IDs and revision; no BARs, no capabilities. */
void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor, uint16_t device, uint32_t class_code,
		     uint16_t subsys_vendor, uint16_t subsys_id, uint8_t revision);

/* Declares a 32-bit, non-prefetchable memory BAR of size bytes (a power of two >= 16). 0 or -EINVAL. */
int pci_device_set_bar(struct pci_device *d, int bar, uint32_t size, const struct device_ops *ops, void *opaque);

/*
 * Appends a capability: id, then body (len bytes, which become the bytes after the ID and
 * next-pointer fields). Returns its configuration-space offset, or -ENOSPC. The capability is
 * read-only to the guest until the device marks bytes writable with pci_device_set_wmask().
 */
int pci_device_add_capability(struct pci_device *d, uint8_t id, const void *body, uint8_t len);
void pci_device_set_wmask(struct pci_device *d, uint32_t off, const void *mask, uint32_t len);

/* Puts d in the first free slot and allocates its BARs (decoding off until the guest enables it). */
int pci_bus_add_device(struct pci_bus *pb, struct pci_device *d);

/* Unmaps d's BARs and frees its slot (the device is being destroyed). */
void pci_bus_remove_device(struct pci_bus *pb, struct pci_device *d);

/* Configuration-space access as the guest sees it (len 1, 2 or 4, not crossing a dword). */
uint32_t pci_config_read(struct pci_device *d, uint32_t off, uint32_t len);
void pci_config_write(struct pci_device *d, uint32_t off, uint32_t val, uint32_t len);

/* Little-endian helpers for config-space images. */
static inline void pci_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void pci_put32(uint8_t *p, uint32_t v) { pci_put16(p, (uint16_t)v); pci_put16(p + 2, (uint16_t)(v >> 16)); }
static inline uint16_t pci_get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t pci_get32(const uint8_t *p) { return pci_get16(p) | (uint32_t)pci_get16(p + 2) << 16; }

#endif
