/* The PC platform devices every vmon guest gets, wired to the buses and the in-kernel irqchip. */
#ifndef VMON_VM_PLATFORM_H
#define VMON_VM_PLATFORM_H

#include "backends/event_loop.h"
#include "bus/pci.h"
#include "devices/acpi_pm.h"
#include "devices/i8042.h"
#include "devices/pvpanic.h"
#include "devices/rtc.h"
#include "devices/serial.h"
#include "devices/vmgenid.h"
#include "vm/irq_routing.h"

struct vm;
struct virtio_rng;
struct virtio_console;
struct virtio_vsock;
struct virtio_net;
struct virtio_blk;
struct virtio_balloon;
struct balloon_config;
struct disk_config;

struct platform {
	struct serial com1;
	struct i8042 i8042;
	struct rtc rtc;
	struct acpi_pm acpi_pm;
	struct pvpanic pvpanic;
	struct vmgenid vmgenid;

	/* Paravirtual I/O: PCI bus 0, MSI routes, the device event loop, virtio devices. */
	struct irq_routing irq_routing;
	struct pci_bus pci;
	struct event_loop *loop;
	struct virtio_rng *rng;
	struct virtio_console *console2; /* --console2 */
	struct virtio_vsock *vsock;       /* --vsock */
	struct virtio_net *net[4]; /* CONFIG_MAX_NICS */
	unsigned int nnets;
	struct virtio_blk *blk[16]; /* CONFIG_MAX_DISKS */
	unsigned int nblks;
	struct virtio_balloon *balloon; /* --balloon */
};

#define PLATFORM_COM1_PORT 0x3f8
#define PLATFORM_COM1_IRQ 4
#define PLATFORM_KBD_IRQ 1
#define PLATFORM_RTC_IRQ 8

/* Creates the devices, registers them on vm->pio and stores them in vm->platform. */
int platform_create(struct vm *vm, void (*console_out)(void *opaque, const uint8_t *buf, size_t len),
		    void *console_opaque);
void platform_destroy(struct vm *vm);

/* Adds the virtio entropy device (virtio-rng on PCI). Call after platform_create(). */
int platform_add_rng(struct vm *vm);

/*
 * Adds the second console (virtio-console, the guest's hvc0) for a --console2 value, or the
 * virtio-vsock device for a --vsock value (see config/config_sockets.h). Returns 0 or a
 * negative errno (logged).
 */
int platform_add_console2(struct vm *vm, const char *spec);
int platform_add_vsock(struct vm *vm, const char *spec);

/*
 * Adds a virtio network card for one --net value (see config/config_net.h), with its backend.
 * Cards get PCI slots in the order they are added. Returns 0 or a negative errno (logged).
 */
int platform_add_net(struct vm *vm, const char *spec);

/*
 * Adds a virtio-blk disk for one --disk (see config/config_disk.h): opens and locks the image.
 * Disks get PCI slots in the order they are added. Returns 0 or a negative errno (logged).
 */
int platform_add_blk(struct vm *vm, const struct disk_config *disk);

/* Adds the virtio memory balloon (--balloon). Returns 0 or a negative errno (logged). */
int platform_add_balloon(struct vm *vm, const struct balloon_config *cfg);

/* Starts the device event loop; call before the vCPUs start. Stopped by platform_destroy(). */
int platform_start_io(struct vm *vm);
/* Stops the device event loop (idempotent); call after the vCPUs stopped. */
void platform_stop_io(struct vm *vm);

/* What device code needs from the VM (PCI bus, routing, loop, guest memory, vm fd). */
struct virtio_pci_deps;
void platform_virtio_deps(struct vm *vm, struct virtio_pci_deps *deps);

#endif
