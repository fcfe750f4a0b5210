/*
 * pvpanic (ISA variant, QEMU0001): a one-byte port through which a guest kernel reports that
 * it panicked, so the host can react instead of watching a hung VM.
 */
#ifndef VMON_DEVICES_PVPANIC_H
#define VMON_DEVICES_PVPANIC_H

#include <pthread.h>
#include <stdint.h>

#include "devices/device.h"
#include "lib/log.h"

#define PVPANIC_PORT_LEN 1

/* Event bits, as read (supported) and written (happened) by the guest. */
#define PVPANIC_PANICKED     (1u << 0)
#define PVPANIC_CRASH_LOADED (1u << 1)
#define PVPANIC_SUPPORTED    (PVPANIC_PANICKED | PVPANIC_CRASH_LOADED)

struct pvpanic {
	uint8_t events;        /* every supported event the guest has reported since reset */
	pthread_mutex_t lock;  /* vCPUs may access the port concurrently */
	/* Called (without the lock held) when the guest writes PANICKED; events holds the bits written. */
	void (*on_panic)(void *opaque, uint8_t events);
	void *opaque;
	struct log_ratelimit rl; /* the guest decides how often it writes */
};

void pvpanic_init(struct pvpanic *p, void (*on_panic)(void *, uint8_t), void *opaque);

/* Register with bus_register(&vm->pio, PORT_PVPANIC, PVPANIC_PORT_LEN, &pvpanic_ops, p). */
extern const struct device_ops pvpanic_ops;

#endif
