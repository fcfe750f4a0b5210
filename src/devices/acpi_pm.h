/*
 * The ACPI fixed-hardware power-management registers the FADT points at: the PM1a event
 * block (status, enable), the PM1a control block (sleep/power-off) and the reset register.
 * A guest powers off by writing SLP_TYP=5 with SLP_EN, and reboots by writing the reset value.
 */
#ifndef VMON_DEVICES_ACPI_PM_H
#define VMON_DEVICES_ACPI_PM_H

#include <pthread.h>
#include <stdint.h>

#include "devices/device.h"

/* Register offsets from PORT_ACPI_PM_BASE; the FADT is built from these. */
#define ACPI_PM1_STS_OFF    0  /* 16-bit, write 1 to clear */
#define ACPI_PM1_EN_OFF     2  /* 16-bit */
#define ACPI_PM1_CNT_OFF    4  /* 16-bit */
#define ACPI_PM_RESET_OFF   6  /* 8-bit, write-only */
#define ACPI_PM_PORT_LEN    8
#define ACPI_PM1_EVT_LEN    4  /* PM1_EVT_LEN in the FADT: status + enable */
#define ACPI_PM1_CNT_LEN    2

#define ACPI_PM_RESET_VALUE 0x0f
#define ACPI_PM_SLP_TYP_S5  5   /* the SLP_TYP the DSDT's \_S5_ package announces */

/* PM1 control bits. */
#define ACPI_PM1_CNT_SCI_EN      (1u << 0)
#define ACPI_PM1_CNT_BM_RLD      (1u << 1)
#define ACPI_PM1_CNT_GBL_RLS     (1u << 2)
#define ACPI_PM1_CNT_SLP_TYP_SHIFT 10
#define ACPI_PM1_CNT_SLP_TYP_MASK  (7u << ACPI_PM1_CNT_SLP_TYP_SHIFT)
#define ACPI_PM1_CNT_SLP_EN      (1u << 13)

enum acpi_pm_event { ACPI_PM_POWEROFF, ACPI_PM_RESET };

struct acpi_pm {
	uint16_t pm1_sts;
	uint16_t pm1_en;
	uint16_t pm1_cnt;      /* without the write-only bits; SCI_EN is forced on reads */
	pthread_mutex_t lock;  /* vCPUs may access the ports concurrently */
	/* Called (without the lock held) from the vCPU thread that wrote the register. */
	void (*on_event)(void *opaque, enum acpi_pm_event ev);
	void *opaque;
};

void acpi_pm_init(struct acpi_pm *pm, void (*on_event)(void *, enum acpi_pm_event), void *opaque);

/* Register with bus_register(&vm->pio, PORT_ACPI_PM_BASE, ACPI_PM_PORT_LEN, &acpi_pm_ops, pm). */
extern const struct device_ops acpi_pm_ops;

#endif
