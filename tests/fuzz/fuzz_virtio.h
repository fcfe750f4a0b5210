/*
 * What the virtio device fuzz targets share: guest RAM, the buses and an event loop that is
 * never started, so that the device's queue work runs on the fuzzer's own thread (through
 * event_loop_run_ready()) and every input is handled completely and repeatably.
 *
 * An input is a driver's whole world:
 *   bytes 0-15   FV_HDR: [0] log2 of the queue size (mod 5: 1..16), [1..8] the features the
 *                driver accepts (VERSION_1 is always added), [9] the order of the kicks,
 *                [10] how many kick rounds (1..4), the rest spare
 *   bytes 16-    guest RAM from address 0: queue q's descriptor table at FV_DESC(q), available
 *                ring at FV_AVAIL(q), used ring at FV_USED(q), buffers anywhere below FV_RAM
 * The driver resets the device, copies the RAM in, negotiates, sets every queue up at those
 * rings, sets DRIVER_OK and notifies the queues; the device then walks whatever the rings say.
 * tests/fuzz/make-seeds.py writes valid requests in this format.
 */
#ifndef VMON_TESTS_FUZZ_FUZZ_VIRTIO_H
#define VMON_TESTS_FUZZ_FUZZ_VIRTIO_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "backends/event_loop.h"
#include "bus/bus.h"
#include "bus/pci.h"
#include "lib/log.h"
#include "virtio/virtio_pci.h"
#include "fuzz_common.h"

#define FV_RAM 0x10000u
#define FV_HDR 16u
#define FV_QUEUE_BYTES 0x400u /* rings of one queue of up to 16 entries */
#define FV_DESC(q) (FV_QUEUE_BYTES * (q))
#define FV_AVAIL(q) (FV_DESC(q) + 0x100u)
#define FV_USED(q) (FV_DESC(q) + 0x200u)
#define FV_MAX_QUEUES 4

/* The common configuration registers (virtio 1.x section 4.1.4.3). */
enum { FV_DFSEL = 0x00, FV_GFSEL = 0x08, FV_GF = 0x0c, FV_STATUS = 0x14, FV_QSEL = 0x16, FV_QSIZE = 0x18,
       FV_QENABLE = 0x1c, FV_QDESC = 0x20, FV_QDRIVER = 0x28, FV_QDEVICE = 0x30 };

struct fuzz_virtio {
	struct bus pio, mmio;
	struct pci_bus pci;
	struct event_loop *loop;
	struct guest_mem mem;
	struct virtio_pci_deps deps; /* what the target creates its device with */
	uint8_t *ram;
	uint64_t bar0;
	uint16_t queues;
	int settle_ms; /* how long fv_settle() waits for late events: disk completions come from io_uring */
};

static inline void fv_init(struct fuzz_virtio *v, uint16_t queues)
{
	memset(v, 0, sizeof(*v));
	/* A hostile guest makes the devices warn on nearly every input: keep the output to crashes. */
	log_set_level(LOG_ERROR);
	v->queues = queues;
	bus_init(&v->pio, "pio");
	bus_init(&v->mmio, "mmio");
	fuzz_check(pci_bus_init(&v->pci, &v->pio, &v->mmio, LAYOUT_PCI_MMIO_START, LAYOUT_IOAPIC) == 0, "pci bus");
	fuzz_check(event_loop_create(&v->loop) == 0, "event loop");
	v->ram = calloc(1, FV_RAM);
	fuzz_check(v->ram != NULL, "guest RAM");
	v->mem.nregions = 1;
	v->mem.regions[0] = (struct guest_mem_region){ .gpa = 0, .size = FV_RAM, .host = v->ram };
	v->mem.ram_size = FV_RAM;
	v->mem.fd = -1;
	v->deps = (struct virtio_pci_deps){ .pci = &v->pci, .loop = v->loop, .mem = &v->mem, .vm_fd = -1 };
}

/* After the target created its device: map BAR0 as firmware would. */
static inline void fv_attach(struct fuzz_virtio *v)
{
	struct pci_device *fn = v->pci.devices[1];
	fuzz_check(fn != NULL, "no device after the host bridge");
	pci_config_write(fn, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	v->bar0 = pci_config_read(fn, PCI_BAR0, 4) & ~0xfull;
}

static inline void fv_wr(struct fuzz_virtio *v, uint64_t off, uint32_t val, uint32_t len)
{
	fuzz_check(bus_write(&v->mmio, v->bar0 + off, &val, len), "BAR0 write not claimed");
}

/* Runs the device's loop callbacks until nothing more is ready. */
static inline void fv_settle(struct fuzz_virtio *v)
{
	for (int idle = 0; idle < 2;)
		idle = event_loop_run_ready(v->loop, idle ? v->settle_ms : 0) > 0 ? 0 : idle + 1;
}

static inline void fv_run(struct fuzz_virtio *v, const uint8_t *data, size_t size)
{
	if (size < FV_HDR)
		return;
	uint16_t qsize = (uint16_t)(1u << (data[0] % 5));
	uint64_t features = 0;
	memcpy(&features, data + 1, 8);
	features |= VIRTIO_F_BIT(VIRTIO_F_VERSION_1);

	fv_wr(v, FV_STATUS, 0, 1);
	fv_settle(v);
	memset(v->ram, 0, FV_RAM);
	memcpy(v->ram, data + FV_HDR, size - FV_HDR < FV_RAM ? size - FV_HDR : FV_RAM);
	fv_wr(v, FV_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
	fv_wr(v, FV_GFSEL, 0, 4);
	fv_wr(v, FV_GF, (uint32_t)features, 4);
	fv_wr(v, FV_GFSEL, 1, 4);
	fv_wr(v, FV_GF, (uint32_t)(features >> 32), 4);
	fv_wr(v, FV_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK, 1);
	for (uint16_t q = 0; q < v->queues; q++) {
		fv_wr(v, FV_QSEL, q, 2);
		fv_wr(v, FV_QSIZE, qsize, 2);
		fv_wr(v, FV_QDESC, FV_DESC(q), 4);
		fv_wr(v, FV_QDRIVER, FV_AVAIL(q), 4);
		fv_wr(v, FV_QDEVICE, FV_USED(q), 4);
		fv_wr(v, FV_QENABLE, 1, 2);
	}
	fv_wr(v, FV_STATUS,
	      VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK, 1);
	fv_settle(v);
	unsigned int rounds = 1 + data[10] % 4;
	for (unsigned int r = 0; r < rounds; r++) {
		for (uint16_t i = 0; i < v->queues; i++) {
			uint16_t q = (uint16_t)((i + data[9]) % v->queues);
			fv_wr(v, VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULTIPLIER * q, q, 2);
			fv_settle(v);
		}
	}
}

/* The target destroys its device first; the loop was never started. */
static inline void fv_free(struct fuzz_virtio *v)
{
	event_loop_destroy(v->loop);
	pci_bus_destroy(&v->pci);
	bus_destroy(&v->pio);
	bus_destroy(&v->mmio);
	free(v->ram);
}

#endif
