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
#include "vm/irq_routing.h"

struct vm;
struct virtio_rng;

struct platform {
	struct serial com1;
	struct i8042 i8042;
	struct rtc rtc;
	struct acpi_pm acpi_pm;
	struct pvpanic pvpanic;

	/* Paravirtual I/O: PCI bus 0, MSI routes, the device event loop, virtio devices. */
	struct irq_routing irq_routing;
	struct pci_bus pci;
	struct event_loop *loop;
	struct virtio_rng *rng;
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

/* Starts the device event loop; call before the vCPUs start. Stopped by platform_destroy(). */
int platform_start_io(struct vm *vm);
/* Stops the device event loop (idempotent); call after the vCPUs stopped. */
void platform_stop_io(struct vm *vm);

/* What device code needs from the VM (PCI bus, routing, loop, guest memory, vm fd). */
struct virtio_pci_deps;
void platform_virtio_deps(struct vm *vm, struct virtio_pci_deps *deps);

#endif
