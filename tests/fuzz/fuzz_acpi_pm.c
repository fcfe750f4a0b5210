/*
 * libFuzzer target: the ACPI PM1 event, control and reset registers (see fuzz_ops.h).
 * Build and run: make fuzz && build/fuzz/fuzz_acpi_pm tests/fuzz/corpus_acpi_pm
 */
#include "devices/acpi_pm.h"
#include "fuzz_ops.h"
#include "lib/log.h"

#define BASE 0x600

static struct bus pio;
static struct acpi_pm pm;

static void on_event(void *opaque, enum acpi_pm_event ev)
{
	(void)opaque;
	fuzz_check(ev == ACPI_PM_POWEROFF || ev == ACPI_PM_RESET, "unknown ACPI event");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	log_set_level(LOG_ERROR);
	bus_init(&pio, "pio");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	acpi_pm_init(&pm, on_event, NULL);
	fuzz_check(bus_register(&pio, BASE, ACPI_PM_PORT_LEN, &acpi_pm_ops, &pm) == 0, "bus_register");
	/* One port beyond the block, so accesses that straddle its end are tried too. */
	fuzz_port_device(&pio, &acpi_pm_ops, &pm, BASE, ACPI_PM_PORT_LEN + 1, data, size, NULL);
	bus_unregister(&pio, BASE);
	pthread_mutex_destroy(&pm.lock);
	return 0;
}
