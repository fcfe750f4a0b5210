/*
 * The virtio PCI transport driven the way a guest driver drives it (through BAR0 on the MMIO
 * bus), with virtio-rng as the device and a fake guest memory: feature negotiation, queue
 * set-up, a request served on the event loop, the rate limit, a malformed ring, and a driver
 * that breaks the device status rules.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "virtio/virtio_rng.h"

#include "virtio_rig.h"

#define RAM (2u << 20)
#define DESC VRIG_DESC(0)
#define USED VRIG_USED(0)
#define DATA 0x10000
#define QSZ 8
#define V1 VIRTIO_F_BIT(VIRTIO_F_VERSION_1)

struct rig {
	struct vrig v;
	struct virtio_rng *rng;
	uint64_t bar1;
};

static const struct vrig_spec spec = {
	.ram = RAM, .device_id = VIRTIO_ID_RNG, .queues = 1, .qsize = QSZ, .max_qsize = 64 /* the device's maximum */
};

static void rig_setup(struct rig *r)
{
	memset(r, 0, sizeof(*r));
	vrig_init(&r->v, &spec);
	assert_int_equal(virtio_rng_create(&r->v.deps, &r->rng), 0);
	vrig_attach(&r->v);
	assert_int_equal(pci_config_read(r->v.fn, PCI_VENDOR_ID, 2), 0x1af4);
	r->bar1 = pci_config_read(r->v.fn, PCI_BAR0 + 4, 4);
}

static void rig_free(struct rig *r)
{
	event_loop_stop(r->v.loop);
	virtio_rng_destroy(r->rng);
	vrig_free(&r->v);
}

static void start_queue(struct rig *r)
{
	setup_queue(&r->v, 0);
	wr(&r->v, QDESC + 4, 0, 4);
	wr(&r->v, QMSIX, 1, 2);
	assert_int_equal(rd(&r->v, QMSIX, 2), 1);
	wr(&r->v, QENABLE, 1, 2);
	wr(&r->v, STATUS, DRIVER_RUNNING, 1);
}

/* The rng keeps its transport private; the PCI function's owner is the transport object. */
static struct virtio_device *transport_of(struct rig *r) { return r->v.fn->owner; }

/* No KVM here: the notification takes the MMIO slow path. */
static void offer_buffer(struct rig *r, uint64_t addr, uint32_t len) { add_buf(&r->v, 0, addr, len, true); }

static void legacy_and_greedy_drivers_are_refused(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	assert_int_equal(rd(&r.v, NUMQ, 2), 1);
	wr(&r.v, DFSEL, 1, 4);
	uint32_t hi = rd(&r.v, DF, 4);
	assert_true(hi & 1); /* VIRTIO_F_VERSION_1 */
	wr(&r.v, DFSEL, 0, 4);
	uint32_t lo = rd(&r.v, DF, 4);
	assert_true(lo & (1u << VIRTIO_RING_F_EVENT_IDX));
	assert_true(lo & (1u << VIRTIO_RING_F_INDIRECT_DESC));
	/* Without VERSION_1 (a legacy driver): FEATURES_OK does not stick. */
	assert_false(negotiate(&r.v, 0) & VIRTIO_STATUS_FEATURES_OK);
	/* A feature the device did not offer: refused too. */
	assert_false(negotiate(&r.v, V1 | VIRTIO_F_BIT(33)) & VIRTIO_STATUS_FEATURES_OK);
	assert_true(negotiate(&r.v, V1) & VIRTIO_STATUS_FEATURES_OK);
	/* Features are frozen after FEATURES_OK. */
	wr(&r.v, GFSEL, 1, 4);
	wr(&r.v, GF, 3, 4);
	assert_int_equal(rd(&r.v, GF, 4), 1);
	wr(&r.v, STATUS, 0, 1);
	assert_int_equal(rd(&r.v, STATUS, 1), 0);
	assert_int_equal(rd(&r.v, GF, 4), 0); /* reset forgets them */
	rig_free(&r);
}

static void queue_registers_follow_the_spec(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	wr(&r.v, QSEL, 5, 2);
	assert_int_equal(rd(&r.v, QSIZE, 2), 0); /* no such queue */
	wr(&r.v, QSEL, 0, 2);
	wr(&r.v, QMSIX, 7, 2); /* beyond the 2-entry MSI-X table */
	assert_int_equal(rd(&r.v, QMSIX, 2), VIRTIO_MSI_NO_VECTOR);
	wr(&r.v, MSIXCFG, 0, 2);
	assert_int_equal(rd(&r.v, MSIXCFG, 2), 0);
	wr(&r.v, QDESC, DESC, 4);
	wr(&r.v, QENABLE, 1, 2);
	wr(&r.v, QDESC, 0x5000, 4); /* ignored once enabled */
	assert_int_equal(rd(&r.v, QDESC, 4), DESC);
	assert_int_equal(rd(&r.v, QENABLE, 2), 1);
	wr(&r.v, STATUS, 0, 1);
	assert_int_equal(rd(&r.v, QENABLE, 2), 0);
	assert_int_equal(rd(&r.v, QDESC, 4), 0);
	rig_free(&r);
}

static void rng_fills_buffers_and_interrupts(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	assert_true(negotiate(&r.v, V1) & VIRTIO_STATUS_FEATURES_OK);
	start_queue(&r);
	offer_buffer(&r, DATA, 64);
	assert_true(wait_used(&r.v, 0, 1));
	uint32_t id, len;
	memcpy(&id, r.v.ram + USED + 4, 4);
	memcpy(&len, r.v.ram + USED + 8, 4);
	assert_int_equal(id, 0);
	assert_int_equal(len, 64);
	static const uint8_t zero[64];
	assert_memory_not_equal(r.v.ram + DATA, zero, 64);
	assert_int_equal(virtio_rng_bytes_served(r.rng), 64);
	/* ISR: the queue bit, cleared by the read. */
	assert_int_equal(rd(&r.v, VIRTIO_PCI_ISR_OFF, 1), 1);
	assert_int_equal(rd(&r.v, VIRTIO_PCI_ISR_OFF, 1), 0);
	/* MSI-X is still disabled, so queue vector 1 waits in the PBA. */
	uint32_t pba = 0;
	assert_true(bus_read(&r.v.mmio, r.bar1 + MSIX_PBA_OFFSET, &pba, 4));
	assert_int_equal(pba, 1u << 1);
	rig_free(&r);
}

static void the_rate_limit_caps_a_burst(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	negotiate(&r.v, V1);
	start_queue(&r);
	offer_buffer(&r, DATA, 1u << 20);
	assert_true(wait_used(&r.v, 0, 1));
	uint32_t len;
	memcpy(&len, r.v.ram + USED + 8, 4);
	/* The bucket holds VIRTIO_RNG_BURST; a few hundred microseconds add a little more at most. */
	assert_true(len >= VIRTIO_RNG_BURST && len < VIRTIO_RNG_BURST + VIRTIO_RNG_RATE / 10);
	rig_free(&r);
}

static void a_malformed_ring_needs_reset_and_recovers(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	negotiate(&r.v, V1);
	start_queue(&r);
	offer_buffer(&r, RAM - 8, 64); /* runs off the end of guest RAM */
	assert_true(wait_needs_reset(&r.v));
	assert_int_equal(used_idx(&r.v, 0), 0);
	assert_int_equal(virtio_rng_bytes_served(r.rng), 0);
	/* The driver cannot clear NEEDS_RESET except by resetting. */
	wr(&r.v, STATUS, 0x0f, 1);
	assert_true(rd(&r.v, STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(negotiate(&r.v, V1) & VIRTIO_STATUS_FEATURES_OK); /* writes 0 first, and starts on clean rings */
	start_queue(&r);
	offer_buffer(&r, DATA, 16);
	assert_true(wait_used(&r.v, 0, 1));
	rig_free(&r);
}

static void state_survives_save_and_load(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	negotiate(&r.v, V1);
	start_queue(&r);
	offer_buffer(&r, DATA, 16);
	assert_true(wait_used(&r.v, 0, 1));
	/* The device state of this VM goes into a blob ... */
	struct virtio_device *vdev = transport_of(&r);
	static uint8_t blob[1 << 16];
	long n = virtio_pci_save(vdev, blob, sizeof(blob));
	assert_true(n > 0);
	assert_int_equal(virtio_pci_save(vdev, blob, 16), -ENOSPC);
	/* ... which a fresh VM's device takes back: same registers, same ring progress. */
	struct rig r2;
	rig_setup(&r2);
	memcpy(r2.v.ram, r.v.ram, RAM);
	r2.v.q[0] = r.v.q[0];
	struct virtio_device *vdev2 = transport_of(&r2);
	assert_int_equal(virtio_pci_load(vdev2, blob, 8), -EINVAL); /* truncated */
	blob[0] ^= 0xff;
	assert_int_equal(virtio_pci_load(vdev2, blob, (size_t)n), -EINVAL); /* bad magic */
	blob[0] ^= 0xff;
	assert_int_equal(virtio_pci_load(vdev2, blob, (size_t)n), 0);
	assert_int_equal(rd(&r2.v, STATUS, 1), rd(&r.v, STATUS, 1));
	wr(&r2.v, QSEL, 0, 2);
	assert_int_equal(rd(&r2.v, QSIZE, 2), QSZ);
	assert_int_equal(rd(&r2.v, QDESC, 4), DESC);
	assert_int_equal(rd(&r2.v, QMSIX, 2), 1);
	assert_int_equal(rd(&r2.v, QENABLE, 2), 1);
	offer_buffer(&r2, DATA + 0x100, 16);
	assert_true(wait_used(&r2.v, 0, 2));
	rig_free(&r2);
	rig_free(&r);
}

/* Reads the used length of q's i-th used element. */
static uint32_t used_len(struct rig *r, uint16_t i)
{
	uint32_t id, len;
	used_elem(&r->v, 0, i, &id, &len);
	return len;
}

static void clearing_status_bits_needs_a_reset_and_never_reactivates(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	negotiate(&r.v, V1 | VIRTIO_F_BIT(VIRTIO_RING_F_EVENT_IDX));
	start_queue(&r);
	offer_buffer(&r, DATA, 16);
	assert_true(wait_used(&r.v, 0, 1));
	assert_int_equal(rd(&r.v, VIRTIO_PCI_ISR_OFF, 1), 1);
	/* The driver drops DRIVER_OK and FEATURES_OK to renegotiate a live device: refused. */
	wr(&r.v, STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
	assert_int_equal(rd(&r.v, STATUS, 1), DRIVER_RUNNING | VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(rd(&r.v, VIRTIO_PCI_ISR_OFF, 1), 2); /* told through a configuration change */
	wr(&r.v, GFSEL, 0, 4);
	wr(&r.v, GF, 0, 4); /* features stay what they were */
	assert_int_equal(rd(&r.v, GF, 4), 1u << VIRTIO_RING_F_EVENT_IDX);
	wr(&r.v, STATUS, DRIVER_RUNNING, 1);
	/* Nothing restarts the old rings: the device serves nothing until the driver resets it. */
	offer_buffer(&r, DATA + 0x100, 16);
	usleep(50 * 1000);
	assert_int_equal(used_idx(&r.v, 0), 1);
	assert_int_equal(virtio_rng_bytes_served(r.rng), 16);
	/* A reset clears everything, and a proper start works again. */
	assert_true(negotiate(&r.v, V1) & VIRTIO_STATUS_FEATURES_OK);
	assert_false(virtio_pci_has_feature(transport_of(&r), VIRTIO_RING_F_EVENT_IDX));
	start_queue(&r);
	assert_int_equal(rd(&r.v, STATUS, 1), DRIVER_RUNNING);
	offer_buffer(&r, DATA, 16);
	assert_true(wait_used(&r.v, 0, 1));
	rig_free(&r);
}

static void driver_ok_needs_features_ok(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	wr(&r.v, STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
	setup_queue(&r.v, 0);
	wr(&r.v, QENABLE, 1, 2);
	wr(&r.v, STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK, 1);
	assert_int_equal(rd(&r.v, STATUS, 1), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_NEEDS_RESET);
	offer_buffer(&r, DATA, 16);
	usleep(50 * 1000);
	assert_int_equal(used_idx(&r.v, 0), 0);
	/* Nor FEATURES_OK and DRIVER_OK at once with features the device does not offer. */
	wr(&r.v, STATUS, 0, 1);
	wr(&r.v, STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
	wr(&r.v, GFSEL, 1, 4);
	wr(&r.v, GF, 1 | 2, 4);
	wr(&r.v, STATUS, DRIVER_RUNNING, 1);
	assert_true(rd(&r.v, STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
	assert_false(rd(&r.v, STATUS, 1) & VIRTIO_STATUS_DRIVER_OK);
	rig_free(&r);
}

static void features_are_fixed_at_activation(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	struct virtio_device *vdev = transport_of(&r);
	assert_true(negotiate(&r.v, V1 | VIRTIO_F_BIT(VIRTIO_RING_F_EVENT_IDX)) & VIRTIO_STATUS_FEATURES_OK);
	/* What the device works with is taken at DRIVER_OK, not read while the driver writes. */
	assert_int_equal(virtio_pci_driver_features(vdev), 0);
	start_queue(&r);
	assert_int_equal(virtio_pci_driver_features(vdev), V1 | VIRTIO_F_BIT(VIRTIO_RING_F_EVENT_IDX));
	assert_true(virtio_pci_has_feature(vdev, VIRTIO_RING_F_EVENT_IDX));
	wr(&r.v, STATUS, 0, 1);
	assert_int_equal(virtio_pci_driver_features(vdev), 0);
	rig_free(&r);
}

static void queues_are_fixed_at_driver_ok(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	negotiate(&r.v, V1);
	setup_queue(&r.v, 0); /* configured, not enabled */
	wr(&r.v, STATUS, DRIVER_RUNNING, 1);
	wr(&r.v, QSIZE, 4, 2);
	wr(&r.v, QDESC, 0x5000, 4);
	wr(&r.v, QENABLE, 1, 2);
	assert_int_equal(rd(&r.v, QSIZE, 2), QSZ);
	assert_int_equal(rd(&r.v, QDESC, 4), DESC);
	assert_int_equal(rd(&r.v, QENABLE, 2), 0);
	rig_free(&r);
}

static void a_reset_does_not_refill_the_rate_limit(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r);
	negotiate(&r.v, V1);
	start_queue(&r);
	offer_buffer(&r, DATA, 1u << 20);
	assert_true(wait_used(&r.v, 0, 1));
	assert_true(used_len(&r, 0) >= VIRTIO_RNG_BURST);
	/* Reset and start again at once: the bucket is as empty as before. */
	negotiate(&r.v, V1);
	start_queue(&r);
	offer_buffer(&r, DATA, 1u << 20);
	assert_true(wait_used(&r.v, 0, 1));
	assert_true(used_len(&r, 0) < VIRTIO_RNG_BURST / 4);
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
		cmocka_unit_test(clearing_status_bits_needs_a_reset_and_never_reactivates),
		cmocka_unit_test(driver_ok_needs_features_ok),
		cmocka_unit_test(features_are_fixed_at_activation),
		cmocka_unit_test(queues_are_fixed_at_driver_ok),
		cmocka_unit_test(a_reset_does_not_refill_the_rate_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
