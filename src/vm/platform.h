/* The PC platform devices every vmon guest gets, wired to the buses and the in-kernel irqchip. */
#ifndef VMON_VM_PLATFORM_H
#define VMON_VM_PLATFORM_H

#include "devices/acpi_pm.h"
#include "devices/i8042.h"
#include "devices/pvpanic.h"
#include "devices/rtc.h"
#include "devices/serial.h"

struct vm;

struct platform {
	struct serial com1;
	struct i8042 i8042;
	struct rtc rtc;
	struct acpi_pm acpi_pm;
	struct pvpanic pvpanic;
};

#define PLATFORM_COM1_PORT 0x3f8
#define PLATFORM_COM1_IRQ 4
#define PLATFORM_KBD_IRQ 1
#define PLATFORM_RTC_IRQ 8

/* Creates the devices, registers them on vm->pio and stores them in vm->platform. */
int platform_create(struct vm *vm, void (*console_out)(void *opaque, const uint8_t *buf, size_t len),
		    void *console_opaque);
void platform_destroy(struct vm *vm);

#endif
