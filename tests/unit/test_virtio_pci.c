/*
 * The virtio PCI transport driven the way a guest driver drives it (through BAR0 on the MMIO
 * bus), with virtio-rng as the device and a fake guest memory: feature negotiation, queue
 * set-up, a request served on the event loop, the rate limit, and a malformed ring.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "virtio/virtio_rng.h"

#define RAM (2u << 20)
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define DATA 0x10000
#define QSZ 8

struct rig {
	struct bus pio, mmio;
	struct pci_bus pci;
	struct event_loop *loop;
	struct guest_mem mem;
	uint8_t *ram;
	struct virtio_rng *rng;
	struct pci_device *fn;
	uint64_t bar0, bar1;
	uint16_t avail_idx;
};

static void rig_setup(struct rig *r)
{
	memset(r, 0, sizeof(*r));
	bus_init(&r->pio, "pio");
	bus_init(&r->mmio, "mmio");
	assert_int_equal(pci_bus_init(&r->pci, &r->pio, &r->mmio, LAYOUT_PCI_MMIO_START, LAYOUT_IOAPIC), 0);
	assert_int_equal(event_loop_create(&r->loop), 0);
	r->ram = calloc(1, RAM);
	r->mem.nregions = 1;
	r->mem.regions[0] = (struct guest_mem_region){ .gpa = 0, .size = RAM, .host = r->ram };
	r->mem.ram_size = RAM;
	r->mem.fd = -1;
	struct virtio_pci_deps deps = { .pci = &r->pci, .loop = r->loop, .mem = &r->mem, .vm_fd = -1 };
	assert_int_equal(virtio_rng_create(&deps, &r->rng), 0);
	assert_int_equal(event_loop_start(r->loop), 0);
	r->fn = r->pci.devices[1];
	assert_non_null(r->fn);
	assert_int_equal(pci_config_read(r->fn, PCI_VENDOR_ID, 2), 0x1af4);
	assert_int_equal(pci_config_read(r->fn, PCI_DEVICE_ID, 2), 0x1040 + VIRTIO_ID_RNG);
	pci_config_write(r->fn, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	r->bar0 = pci_config_read(r->fn, PCI_BAR0, 4);
	r->bar1 = pci_config_read(r->fn, PCI_BAR0 + 4, 4);
}

static void rig_free(struct rig *r)
{
	event_loop_stop(r->loop);
	virtio_rng_destroy(r->rng);
	event_loop_destroy(r->loop);
	pci_bus_destroy(&r->pci);
	bus_destroy(&r->pio);
	bus_destroy(&r->mmio);
	free(r->ram);
}

static uint32_t rd(struct rig *r, uint64_t off, uint32_t len)
{
	uint32_t v = 0;
	assert_true(bus_read(&r->mmio, r->bar0 + off, &v, len));
	return v;
}

static void wr(struct rig *r, uint64_t off, uint32_t v, uint32_t len)
{
	assert_true(bus_write(&r->mmio, r->bar0 + off, &v, len));
}

enum { DFSEL = 0x00, DF = 0x04, GFSEL = 0x08, GF = 0x0c, MSIXCFG = 0x10, NUMQ = 0x12, STATUS = 0x14,
       QSEL = 0x16, QSIZE = 0x18, QMSIX = 0x1a, QENABLE = 0x1c, QDESC = 0x20, QDRIVER = 0x28, QDEVICE = 0x30 };

static uint8_t negotiate(struct rig *r, uint32_t hi_features)
{
	wr(r, STATUS, 0, 1);
	wr(r, STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
	wr(r, GFSEL, 0, 4);
	wr(r, GF, 0, 4);
	wr(r, GFSEL, 1, 4);
	wr(r, GF, hi_features, 4);
	wr(r, STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK, 1);
	return (uint8_t)rd(r, STATUS, 1);
}

static void setup_queue(struct rig *r)
{
	wr(r, QSEL, 0, 2);
	assert_int_equal(rd(r, QSIZE, 2), 64); /* the device's maximum */
	wr(r, QSIZE, QSZ, 2);
	wr(r, QDESC, DESC, 4);
	wr(r, QDESC + 4, 0, 4);
	wr(r, QDRIVER, AVAIL, 4);
	wr(r, QDEVICE, USED, 4);
	wr(r, QMSIX, 1, 2);
	assert_int_equal(rd(r, QMSIX, 2), 1);
	wr(r, QENABLE, 1, 2);
	wr(r, STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
			      VIRTIO_STATUS_DRIVER_OK, 1);
}

static void offer_buffer(struct rig *r, uint64_t addr, uint32_t len)
{
	struct virtq_desc d = { .addr = addr, .len = len, .flags = VIRTQ_DESC_F_WRITE };
	memcpy(r->ram + DESC, &d, sizeof(d));
	uint16_t *avail = (uint16_t *)(r->ram + AVAIL);
	avail[2 + r->avail_idx % QSZ] = 0;
	r->avail_idx++;
	__atomic_store_n(&avail[1], r->avail_idx, __ATOMIC_RELEASE);
	wr(r, VIRTIO_PCI_NOTIFY_OFF, 0, 2); /* no KVM here: the MMIO slow path */
}

static uint16_t used_idx(struct rig *r) { return __atomic_load_n((uint16_t *)(r->ram + USED + 2), __ATOMIC_ACQUIRE); }

static bool wait_used(struct rig *r, uint16_t want)
{
	for (int i = 0; i < 2000 && used_idx(r) != want; i++)
		usleep(1000);
	return used_idx(r) == want;
}

static void legacy_and_greedy_drivers_are_refused(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	assert_int_equal(rd(&r, NUMQ, 2), 1);
	wr(&r, DFSEL, 1, 4);
	uint32_t hi = rd(&r, DF, 4);
	assert_true(hi & 1); /* VIRTIO_F_VERSION_1 */
	wr(&r, DFSEL, 0, 4);
	uint32_t lo = rd(&r, DF, 4);
	assert_true(lo & (1u << VIRTIO_RING_F_EVENT_IDX));
	assert_true(lo & (1u << VIRTIO_RING_F_INDIRECT_DESC));
	/* Without VERSION_1 (a legacy driver): FEATURES_OK does not stick. */
	assert_false(negotiate(&r, 0) & VIRTIO_STATUS_FEATURES_OK);
	/* A feature the device did not offer: refused too. */
	assert_false(negotiate(&r, 1 | 2) & VIRTIO_STATUS_FEATURES_OK);
	assert_true(negotiate(&r, 1) & VIRTIO_STATUS_FEATURES_OK);
	/* Features are frozen after FEATURES_OK. */
	wr(&r, GFSEL, 1, 4);
	wr(&r, GF, 3, 4);
	assert_int_equal(rd(&r, GF, 4), 1);
	wr(&r, STATUS, 0, 1);
	assert_int_equal(rd(&r, STATUS, 1), 0);
	assert_int_equal(rd(&r, GF, 4), 0); /* reset forgets them */
	rig_free(&r);
}

static void queue_registers_follow_the_spec(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	wr(&r, QSEL, 5, 2);
	assert_int_equal(rd(&r, QSIZE, 2), 0); /* no such queue */
	wr(&r, QSEL, 0, 2);
	wr(&r, QMSIX, 7, 2); /* beyond the 2-entry MSI-X table */
	assert_int_equal(rd(&r, QMSIX, 2), VIRTIO_MSI_NO_VECTOR);
	wr(&r, MSIXCFG, 0, 2);
	assert_int_equal(rd(&r, MSIXCFG, 2), 0);
	wr(&r, QDESC, DESC, 4);
	wr(&r, QENABLE, 1, 2);
	wr(&r, QDESC, 0x5000, 4); /* ignored once enabled */
	assert_int_equal(rd(&r, QDESC, 4), DESC);
	assert_int_equal(rd(&r, QENABLE, 2), 1);
	wr(&r, STATUS, 0, 1);
	assert_int_equal(rd(&r, QENABLE, 2), 0);
	assert_int_equal(rd(&r, QDESC, 4), 0);
	rig_free(&r);
}

static void rng_fills_buffers_and_interrupts(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	assert_true(negotiate(&r, 1) & VIRTIO_STATUS_FEATURES_OK);
	setup_queue(&r);
	offer_buffer(&r, DATA, 64);
	assert_true(wait_used(&r, 1));
	uint32_t id, len;
	memcpy(&id, r.ram + USED + 4, 4);
	memcpy(&len, r.ram + USED + 8, 4);
	assert_int_equal(id, 0);
	assert_int_equal(len, 64);
	static const uint8_t zero[64];
	assert_memory_not_equal(r.ram + DATA, zero, 64);
	assert_int_equal(virtio_rng_bytes_served(r.rng), 64);
	/* ISR: the queue bit, cleared by the read. */
	assert_int_equal(rd(&r, VIRTIO_PCI_ISR_OFF, 1), 1);
	assert_int_equal(rd(&r, VIRTIO_PCI_ISR_OFF, 1), 0);
	/* MSI-X is still disabled, so queue vector 1 waits in the PBA. */
	uint32_t pba = 0;
	assert_true(bus_read(&r.mmio, r.bar1 + MSIX_PBA_OFFSET, &pba, 4));
	assert_int_equal(pba, 1u << 1);
	rig_free(&r);
}

static void the_rate_limit_caps_a_burst(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	negotiate(&r, 1);
	setup_queue(&r);
	offer_buffer(&r, DATA, 1u << 20);
	assert_true(wait_used(&r, 1));
	uint32_t len;
	memcpy(&len, r.ram + USED + 8, 4);
	/* The bucket holds VIRTIO_RNG_BURST; a few hundred microseconds add a little more at most. */
	assert_true(len >= VIRTIO_RNG_BURST && len < VIRTIO_RNG_BURST + VIRTIO_RNG_RATE / 10);
	rig_free(&r);
}

static void a_malformed_ring_needs_reset_and_recovers(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	negotiate(&r, 1);
	setup_queue(&r);
	offer_buffer(&r, RAM - 8, 64); /* runs off the end of guest RAM */
	for (int i = 0; i < 2000 && !(rd(&r, STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET); i++)
		usleep(1000);
	assert_true(rd(&r, STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(used_idx(&r), 0);
	assert_int_equal(virtio_rng_bytes_served(r.rng), 0);
	/* The driver cannot clear NEEDS_RESET except by resetting. */
	wr(&r, STATUS, 0x0f, 1);
	assert_true(rd(&r, STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
	memset(r.ram + AVAIL, 0, 0x100);
	memset(r.ram + USED, 0, 0x100);
	r.avail_idx = 0;
	assert_true(negotiate(&r, 1) & VIRTIO_STATUS_FEATURES_OK); /* writes 0 first */
	setup_queue(&r);
	offer_buffer(&r, DATA, 16);
	assert_true(wait_used(&r, 1));
	rig_free(&r);
}

/* The rng keeps its transport private; the PCI function's owner is the transport object. */
static struct virtio_device *transport_of(struct rig *r) { return r->fn->owner; }

static void state_survives_save_and_load(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	negotiate(&r, 1);
	setup_queue(&r);
	offer_buffer(&r, DATA, 16);
	assert_true(wait_used(&r, 1));
	/* The device state of this VM goes into a blob ... */
	struct virtio_device *vdev = transport_of(&r);
	static uint8_t blob[1 << 16];
	long n = virtio_pci_save(vdev, blob, sizeof(blob));
	assert_true(n > 0);
	assert_int_equal(virtio_pci_save(vdev, blob, 16), -ENOSPC);
	/* ... which a fresh VM's device takes back: same registers, same ring progress. */
	struct rig r2;
	rig_setup(&r2);
	memcpy(r2.ram, r.ram, RAM);
	r2.avail_idx = r.avail_idx;
	struct virtio_device *vdev2 = transport_of(&r2);
	assert_int_equal(virtio_pci_load(vdev2, blob, 8), -EINVAL); /* truncated */
	blob[0] ^= 0xff;
	assert_int_equal(virtio_pci_load(vdev2, blob, (size_t)n), -EINVAL); /* bad magic */
	blob[0] ^= 0xff;
	assert_int_equal(virtio_pci_load(vdev2, blob, (size_t)n), 0);
	assert_int_equal(rd(&r2, STATUS, 1), rd(&r, STATUS, 1));
	wr(&r2, QSEL, 0, 2);
	assert_int_equal(rd(&r2, QSIZE, 2), QSZ);
	assert_int_equal(rd(&r2, QDESC, 4), DESC);
	assert_int_equal(rd(&r2, QMSIX, 2), 1);
	assert_int_equal(rd(&r2, QENABLE, 2), 1);
	offer_buffer(&r2, DATA + 0x100, 16);
	assert_true(wait_used(&r2, 2));
	rig_free(&r2);
	rig_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(legacy_and_greedy_drivers_are_refused),
		cmocka_unit_test(queue_registers_follow_the_spec),
		cmocka_unit_test(rng_fills_buffers_and_interrupts),
		cmocka_unit_test(the_rate_limit_caps_a_burst),
		cmocka_unit_test(a_malformed_ring_needs_reset_and_recovers),
		cmocka_unit_test(state_survives_save_and_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
