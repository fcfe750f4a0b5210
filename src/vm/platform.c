#include "vm/platform.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "lib/log.h"
#include "virtio/virtio_pci.h"
#include "virtio/virtio_rng.h"
#include "vm/vm.h"

static void on_i8042_reset(void *opaque)
{
	vm_request_stop(opaque, VM_STOP_REBOOT, "guest asked to reboot (keyboard controller reset); vmon stopped the VM");
}

static void on_acpi_event(void *opaque, enum acpi_pm_event ev)
{
	if (ev == ACPI_PM_POWEROFF)
		vm_request_stop(opaque, VM_STOP_POWEROFF, "guest powered off");
	else
		vm_request_stop(opaque, VM_STOP_REBOOT, "guest asked to reboot (ACPI reset); vmon stopped the VM");
}

static void on_panic(void *opaque, uint8_t events)
{
	vm_request_stop(opaque, VM_STOP_PANIC, "guest kernel panicked (pvpanic event 0x%x); its console shows why",
			events);
}

static struct irq_line irq(struct vm *vm, unsigned int gsi)
{
	return (struct irq_line){ .set = vm_irq_set, .opaque = vm, .gsi = gsi };
}

int platform_create(struct vm *vm, void (*console_out)(void *opaque, const uint8_t *buf, size_t len),
		    void *console_opaque)
{
	struct platform *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	vm->platform = p;

	serial_init(&p->com1, irq(vm, PLATFORM_COM1_IRQ), console_out, console_opaque);
	i8042_init(&p->i8042, irq(vm, PLATFORM_KBD_IRQ), on_i8042_reset, vm);
	rtc_init(&p->rtc, irq(vm, PLATFORM_RTC_IRQ));
	acpi_pm_init(&p->acpi_pm, on_acpi_event, vm);
	pvpanic_init(&p->pvpanic, on_panic, vm);

	struct {
		uint64_t port, len;
		const struct device_ops *ops;
		void *dev;
	} ranges[] = {
		{ PLATFORM_COM1_PORT, 8, &serial_ops, &p->com1 },
		{ 0x60, 1, &i8042_ops, &p->i8042 },
		{ 0x64, 1, &i8042_cmd_ops, &p->i8042 },
		{ 0x70, 2, &rtc_ops, &p->rtc },
		{ PORT_ACPI_PM_BASE, ACPI_PM_PORT_LEN, &acpi_pm_ops, &p->acpi_pm },
		{ PORT_PVPANIC, 1, &pvpanic_ops, &p->pvpanic },
	};
	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
		int rc = bus_register(&vm->pio, ranges[i].port, ranges[i].len, ranges[i].ops, ranges[i].dev);
		if (rc) {
			log_error("platform", "cannot register %s at port 0x%llx: %s", ranges[i].ops->name,
				  (unsigned long long)ranges[i].port, strerror(-rc));
			return rc;
		}
	}

	int rc = irq_routing_init(&p->irq_routing, vm->vm_fd);
	if (!rc)
		rc = event_loop_create(&p->loop);
	if (!rc)
		rc = pci_bus_init(&p->pci, &vm->pio, &vm->mmio, LAYOUT_PCI_MMIO_START, LAYOUT_IOAPIC);
	return rc;
}

void platform_virtio_deps(struct vm *vm, struct virtio_pci_deps *deps)
{
	struct platform *p = vm->platform;
	*deps = (struct virtio_pci_deps){
		.pci = &p->pci, .routing = &p->irq_routing, .loop = p->loop, .mem = &vm->mem, .vm_fd = vm->vm_fd,
	};
}

int platform_add_rng(struct vm *vm)
{
	struct platform *p = vm->platform;
	struct virtio_pci_deps deps;
	platform_virtio_deps(vm, &deps);
	return virtio_rng_create(&deps, &p->rng);
}

static void pause_io(struct vm *vm)
{
	struct platform *p = vm->platform;
	if (p && p->loop)
		event_loop_pause(p->loop);
}

static void resume_io(struct vm *vm)
{
	struct platform *p = vm->platform;
	if (p && p->loop)
		event_loop_resume(p->loop);
}

int platform_start_io(struct vm *vm)
{
	struct platform *p = vm->platform;
	if (!p || !p->loop)
		return -EINVAL;
	vm->io_pause = pause_io;
	vm->io_resume = resume_io;
	return event_loop_start(p->loop);
}

void platform_stop_io(struct vm *vm)
{
	struct platform *p = vm->platform;
	if (p && p->loop)
		event_loop_stop(p->loop);
}

void platform_destroy(struct vm *vm)
{
	struct platform *p = vm->platform;
	if (!p)
		return;
	platform_stop_io(vm);
	virtio_rng_destroy(p->rng);
	if (p->pci.mmio)
		pci_bus_destroy(&p->pci);
	event_loop_destroy(p->loop);
	irq_routing_destroy(&p->irq_routing);
	serial_destroy(&p->com1);
	i8042_destroy(&p->i8042);
	rtc_destroy(&p->rtc);
	free(p);
	vm->platform = NULL;
}
