/* Port-I/O and MMIO dispatch. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "bus/bus.h"

struct fake_dev {
	uint64_t last_offset;
	uint32_t last_len;
	uint8_t last_written;
	int resets;
};

static void fake_read(void *dev, uint64_t offset, void *data, uint32_t len)
{
	struct fake_dev *d = dev;
	d->last_offset = offset;
	d->last_len = len;
	memset(data, 0x5a, len);
}

static void fake_write(void *dev, uint64_t offset, const void *data, uint32_t len)
{
	struct fake_dev *d = dev;
	d->last_offset = offset;
	d->last_len = len;
	d->last_written = *(const uint8_t *)data;
}

static void fake_reset(void *dev) { ((struct fake_dev *)dev)->resets++; }

static const struct device_ops fake_ops = {
	.name = "fake", .read = fake_read, .write = fake_write, .reset = fake_reset,
};

static void accesses_reach_the_device_with_offsets(void **state)
{
	(void)state;
	struct bus b;
	struct fake_dev a = { 0 }, c = { 0 };
	bus_init(&b, "pio");
	assert_int_equal(bus_register(&b, 0x3f8, 8, &fake_ops, &a), 0);
	assert_int_equal(bus_register(&b, 0x60, 1, &fake_ops, &c), 0);
	uint8_t v = 0x41;
	assert_true(bus_write(&b, 0x3fd, &v, 1));
	assert_int_equal(a.last_offset, 5);
	assert_int_equal(a.last_written, 0x41);
	uint16_t r = 0;
	assert_true(bus_read(&b, 0x60, &r, 2));
	assert_int_equal(r, 0x5a5a);
	assert_int_equal(c.last_len, 2);
	bus_destroy(&b);
}

static void unclaimed_addresses_read_all_ones(void **state)
{
	(void)state;
	struct bus b;
	struct fake_dev a = { 0 };
	bus_init(&b, "mmio");
	assert_int_equal(bus_register(&b, 0x1000, 0x100, &fake_ops, &a), 0);
	uint32_t r = 0;
	assert_false(bus_read(&b, 0x1100, &r, 4));
	assert_int_equal(r, 0xffffffff);
	assert_false(bus_read(&b, 0xfff, &r, 4));
	uint8_t v = 1;
	assert_false(bus_write(&b, 0x2000, &v, 1));
	assert_int_equal(a.last_written, 0);
	bus_destroy(&b);
}

static void overlapping_ranges_are_refused(void **state)
{
	(void)state;
	struct bus b;
	struct fake_dev a = { 0 };
	bus_init(&b, "pio");
	assert_int_equal(bus_register(&b, 0x100, 0x10, &fake_ops, &a), 0);
	assert_int_equal(bus_register(&b, 0x10f, 1, &fake_ops, &a), -EEXIST);
	assert_int_equal(bus_register(&b, 0xf8, 0x10, &fake_ops, &a), -EEXIST);
	assert_int_equal(bus_register(&b, 0x110, 1, &fake_ops, &a), 0);
	assert_int_equal(bus_register(&b, 0xff, 1, &fake_ops, &a), 0);
	assert_int_equal(bus_register(&b, 0x200, 0, &fake_ops, &a), -EINVAL);
	assert_int_equal(bus_register(&b, UINT64_MAX, 2, &fake_ops, &a), -EINVAL);
	bus_destroy(&b);
}

static void many_ranges_stay_sorted(void **state)
{
	(void)state;
	struct bus b;
	struct fake_dev devs[100];
	memset(devs, 0, sizeof(devs));
	bus_init(&b, "pio");
	/* Registered in a scrambled order; each must still be found. */
	for (int i = 0; i < 100; i++) {
		int k = (i * 37) % 100;
		assert_int_equal(bus_register(&b, (uint64_t)k * 16, 8, &fake_ops, &devs[k]), 0);
	}
	for (int k = 0; k < 100; k++) {
		uint8_t v = (uint8_t)k;
		assert_true(bus_write(&b, (uint64_t)k * 16 + 3, &v, 1));
		assert_int_equal(devs[k].last_written, k);
		assert_false(bus_write(&b, (uint64_t)k * 16 + 8, &v, 1));
	}
	bus_reset_all(&b);
	assert_int_equal(devs[42].resets, 1);
	bus_destroy(&b);
}

static void unregistered_ranges_stop_claiming_and_can_be_reused(void **state)
{
	(void)state;
	struct bus b;
	struct fake_dev a = { 0 }, c = { 0 }, d = { 0 };
	bus_init(&b, "mmio");
	assert_int_equal(bus_register(&b, 0x1000, 0x100, &fake_ops, &a), 0);
	assert_int_equal(bus_register(&b, 0x2000, 0x100, &fake_ops, &c), 0);
	assert_int_equal(bus_unregister(&b, 0x1080), -ENOENT); /* only the exact base names a range */
	assert_int_equal(bus_unregister(&b, 0x1000), 0);
	uint8_t v = 0;
	assert_false(bus_read(&b, 0x1010, &v, 1));
	assert_int_equal(v, 0xff);
	assert_true(bus_read(&b, 0x2010, &v, 1)); /* the other range is untouched */
	assert_int_equal(bus_unregister(&b, 0x1000), -ENOENT);
	/* The freed space takes a new, differently sized range (a moved BAR). */
	assert_int_equal(bus_register(&b, 0x1f00, 0x200, &fake_ops, &d), -EEXIST); /* still refuses overlaps */
	assert_int_equal(bus_register(&b, 0x1000, 0x1000, &fake_ops, &d), 0);
	v = 7;
	assert_true(bus_write(&b, 0x1ff0, &v, 1));
	assert_int_equal(d.last_offset, 0xff0);
	assert_int_equal(bus_unregister(&b, 0x2000), 0);
	assert_int_equal(bus_unregister(&b, 0x1000), 0);
	assert_false(bus_read(&b, 0x1000, &v, 1));
	bus_destroy(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(accesses_reach_the_device_with_offsets),
		cmocka_unit_test(unclaimed_addresses_read_all_ones),
		cmocka_unit_test(overlapping_ranges_are_refused),
		cmocka_unit_test(many_ranges_stay_sorted),
		cmocka_unit_test(unregistered_ranges_stop_claiming_and_can_be_reused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
