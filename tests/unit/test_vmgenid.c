/* The VM generation ID device: its buffer in guest memory, its notification, its snapshot state. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "arch/x86/boot_params.h"
#include "arch/x86/layout.h"
#include "devices/vmgenid.h"
#include "lib/util.h"

struct irq_log {
	unsigned int n;
	unsigned int gsi[8];
	int level[8];
};

static void record_irq(void *opaque, unsigned int gsi, int level)
{
	struct irq_log *l = opaque;
	if (l->n < 8) {
		l->gsi[l->n] = gsi;
		l->level[l->n] = level;
	}
	l->n++;
}

static void make(struct vmgenid *g, struct irq_log *log)
{
	memset(log, 0, sizeof(*log));
	vmgenid_init(g, LAYOUT_VMGENID, (struct irq_line){ .set = record_irq, .opaque = log, .gsi = LAYOUT_GED_GSI });
}

static struct guest_mem mem; /* 16 MiB of guest RAM for the tests that write the ID */

static int mem_setup(void **state)
{
	(void)state;
	return guest_mem_init(&mem, 16 * MiB);
}

static int mem_teardown(void **state)
{
	(void)state;
	guest_mem_destroy(&mem);
	return 0;
}

static void test_set_writes_guest_memory(void **state)
{
	(void)state;
	struct vmgenid g;
	struct irq_log log;
	make(&g, &log);
	uint8_t id[VMGENID_LEN], seen[VMGENID_LEN];
	for (int i = 0; i < VMGENID_LEN; i++)
		id[i] = (uint8_t)(0xa0 + i);
	assert_int_equal(vmgenid_set(&g, &mem, id), 0);
	assert_int_equal(guest_mem_read(&mem, LAYOUT_VMGENID, seen, sizeof(seen)), 0);
	assert_memory_equal(seen, id, VMGENID_LEN);
	assert_memory_equal(g.id, id, VMGENID_LEN);
	assert_int_equal(log.n, 0); /* writing is silent; the restore notifies */
}

static void test_set_outside_ram_fails(void **state)
{
	(void)state;
	struct vmgenid g;
	struct irq_log log;
	make(&g, &log);
	g.gpa = 16 * MiB - 8; /* the last 8 bytes of RAM: the ID does not fit */
	uint8_t id[VMGENID_LEN] = { 1 };
	assert_int_equal(vmgenid_set(&g, &mem, id), -EFAULT);
}

static void test_notify_is_one_edge(void **state)
{
	(void)state;
	struct vmgenid g;
	struct irq_log log;
	make(&g, &log);
	vmgenid_notify(&g);
	assert_int_equal(log.n, 2);
	assert_int_equal(log.gsi[0], LAYOUT_GED_GSI);
	assert_int_equal(log.level[0], 1);
	assert_int_equal(log.gsi[1], LAYOUT_GED_GSI);
	assert_int_equal(log.level[1], 0);
}

static void test_absent_device_is_left_alone(void **state)
{
	(void)state;
	struct vmgenid g;
	struct irq_log log;
	make(&g, &log);
	g.present = false; /* a snapshot's guest booted without the device */
	uint8_t id[VMGENID_LEN] = { 7 }, seen[VMGENID_LEN] = { 0xff };
	assert_int_equal(vmgenid_set(&g, &mem, id), -ENODEV);
	vmgenid_notify(&g);
	assert_int_equal(log.n, 0);
	assert_int_equal(guest_mem_read(&mem, LAYOUT_VMGENID, seen, sizeof(seen)), 0);
	uint8_t zero[VMGENID_LEN] = { 0 };
	assert_memory_equal(seen, zero, VMGENID_LEN);
}

static void test_generate_uuid_v4_and_different(void **state)
{
	(void)state;
	uint8_t a[VMGENID_LEN], b[VMGENID_LEN];
	assert_int_equal(vmgenid_generate(a), 0);
	assert_int_equal(vmgenid_generate(b), 0);
	assert_memory_not_equal(a, b, VMGENID_LEN);
	assert_int_equal(a[6] >> 4, 4);
	assert_int_equal(a[8] >> 6, 2);
	char s[VMGENID_STR_LEN];
	const uint8_t fixed[VMGENID_LEN] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0x4c, 0xde,
					     0x8f, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd };
	vmgenid_format(fixed, s);
	assert_string_equal(s, "01234567-89ab-4cde-8f01-23456789abcd");
}

static void test_save_load(void **state)
{
	(void)state;
	struct vmgenid g, h;
	struct irq_log log, log2;
	make(&g, &log);
	make(&h, &log2);
	for (int i = 0; i < VMGENID_LEN; i++)
		g.id[i] = (uint8_t)i;
	uint8_t buf[128];
	long n = vmgenid_save(&g, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(vmgenid_save(&g, buf, 8), -ENOSPC);
	h.present = false;
	assert_int_equal(vmgenid_load(&h, buf, (size_t)n), 0);
	assert_true(h.present);
	assert_memory_equal(h.id, g.id, VMGENID_LEN);
	/* A blob that is short, has another magic, or another buffer address than this vmon's is refused. */
	assert_int_equal(vmgenid_load(&h, buf, (size_t)n - 1), -EINVAL);
	uint8_t bad[128];
	memcpy(bad, buf, (size_t)n);
	bad[0] ^= 1;
	assert_int_equal(vmgenid_load(&h, bad, (size_t)n), -EINVAL);
	memcpy(bad, buf, (size_t)n);
	bad[8] ^= 0x10; /* the gpa */
	assert_int_equal(vmgenid_load(&h, bad, (size_t)n), -EINVAL);
}

/* The guest must never use the buffer as RAM: the e820 map leaves it out of every RAM range. */
static void test_buffer_reserved_in_e820(void **state)
{
	(void)state;
	struct boot_e820_entry e[E820_MAX_ENTRIES_ZEROPAGE];
	int n = e820_build(&mem, e, E820_MAX_ENTRIES_ZEROPAGE);
	assert_true(n > 0);
	bool reserved = false;
	for (int i = 0; i < n; i++) {
		bool overlaps = e[i].addr < LAYOUT_VMGENID + VMGENID_LEN && LAYOUT_VMGENID < e[i].addr + e[i].size;
		if (!overlaps)
			continue;
		assert_int_not_equal(e[i].type, E820_TYPE_RAM);
		reserved = e[i].type == E820_TYPE_RESERVED && e[i].addr <= LAYOUT_VMGENID &&
			   LAYOUT_VMGENID + VMGENID_LEN <= e[i].addr + e[i].size;
	}
	assert_true(reserved);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_set_writes_guest_memory, mem_setup, mem_teardown),
		cmocka_unit_test_setup_teardown(test_set_outside_ram_fails, mem_setup, mem_teardown),
		cmocka_unit_test(test_notify_is_one_edge),
		cmocka_unit_test_setup_teardown(test_absent_device_is_left_alone, mem_setup, mem_teardown),
		cmocka_unit_test(test_generate_uuid_v4_and_different),
		cmocka_unit_test(test_save_load),
		cmocka_unit_test_setup_teardown(test_buffer_reserved_in_e820, mem_setup, mem_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
