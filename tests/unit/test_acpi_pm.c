#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/acpi_pm.h"
#include "devices/pvpanic.h"
#include "lib/log.h"

/* ---- acpi_pm ---- */

struct events {
	int poweroff, reset;
	enum acpi_pm_event order[8];
	int n;
};

static void on_event(void *opaque, enum acpi_pm_event ev)
{
	struct events *e = opaque;
	if (ev == ACPI_PM_POWEROFF)
		e->poweroff++;
	else if (ev == ACPI_PM_RESET)
		e->reset++;
	if (e->n < 8)
		e->order[e->n++] = ev;
}

static void wr(struct acpi_pm *pm, uint64_t off, uint32_t v, uint32_t len)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
	acpi_pm_ops.write(pm, off, b, len);
}

static uint32_t rd(struct acpi_pm *pm, uint64_t off, uint32_t len)
{
	uint8_t b[4] = { 0 };
	acpi_pm_ops.read(pm, off, b, len);
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint16_t slp(unsigned int typ, int en)
{
	return (uint16_t)((typ << ACPI_PM1_CNT_SLP_TYP_SHIFT) | (en ? ACPI_PM1_CNT_SLP_EN : 0));
}

static void test_sci_en_always_set(void **state)
{
	(void)state;
	struct events e = { 0 };
	struct acpi_pm pm;
	acpi_pm_init(&pm, on_event, &e);
	assert_int_equal(rd(&pm, ACPI_PM1_CNT_OFF, 2) & ACPI_PM1_CNT_SCI_EN, ACPI_PM1_CNT_SCI_EN);
	wr(&pm, ACPI_PM1_CNT_OFF, 0, 2);
	assert_int_equal(rd(&pm, ACPI_PM1_CNT_OFF, 2), ACPI_PM1_CNT_SCI_EN);
	assert_int_equal(rd(&pm, ACPI_PM1_CNT_OFF, 1), ACPI_PM1_CNT_SCI_EN);
}

static void test_poweroff_needs_slp_en_and_s5(void **state)
{
	(void)state;
	struct events e = { 0 };
	struct acpi_pm pm;
	acpi_pm_init(&pm, on_event, &e);

	/* ACPICA writes SLP_TYP first, then SLP_TYP|SLP_EN. */
	wr(&pm, ACPI_PM1_CNT_OFF, slp(5, 0), 2);
	assert_int_equal(e.poweroff, 0);
	/* SLP_TYP reads back; SLP_EN is write-only. */
	assert_int_equal(rd(&pm, ACPI_PM1_CNT_OFF, 2), slp(5, 0) | ACPI_PM1_CNT_SCI_EN);

	for (unsigned int typ = 0; typ < 8; typ++) {
		if (typ == 5)
			continue;
		wr(&pm, ACPI_PM1_CNT_OFF, slp(typ, 1), 2);
	}
	assert_int_equal(e.poweroff, 0);
	assert_int_equal(e.reset, 0);

	wr(&pm, ACPI_PM1_CNT_OFF, slp(5, 1), 2);
	assert_int_equal(e.poweroff, 1);
	assert_int_equal(e.reset, 0);
	assert_int_equal(rd(&pm, ACPI_PM1_CNT_OFF, 2) & ACPI_PM1_CNT_SLP_EN, 0);
}

static void test_poweroff_by_byte_and_dword_writes(void **state)
{
	(void)state;
	struct events e = { 0 };
	struct acpi_pm pm;
	acpi_pm_init(&pm, on_event, &e);

	/* Only the high byte: SLP_TYP and SLP_EN both live there. */
	wr(&pm, ACPI_PM1_CNT_OFF + 1, slp(5, 1) >> 8, 1);
	assert_int_equal(e.poweroff, 1);

	/* Low byte alone cannot carry SLP_EN. */
	wr(&pm, ACPI_PM1_CNT_OFF, 0xff, 1);
	assert_int_equal(e.poweroff, 1);

	/* A 4-byte write at offset 2 covers PM1_EN and PM1_CNT. */
	wr(&pm, ACPI_PM1_EN_OFF, (uint32_t)slp(5, 1) << 16, 4);
	assert_int_equal(e.poweroff, 2);

	/* SLP_TYP shares the high byte with SLP_EN: a write of SLP_EN alone means type 0, not S5. */
	acpi_pm_ops.reset(&pm);
	wr(&pm, ACPI_PM1_CNT_OFF, slp(5, 0), 2);
	wr(&pm, ACPI_PM1_CNT_OFF + 1, slp(0, 1) >> 8, 1);
	assert_int_equal(e.poweroff, 2);
	/* A low-byte write (SCI_EN, BM_RLD) leaves a latched S5 in place for the next SLP_EN. */
	wr(&pm, ACPI_PM1_CNT_OFF, slp(5, 0), 2);
	wr(&pm, ACPI_PM1_CNT_OFF, ACPI_PM1_CNT_BM_RLD, 1);
	assert_int_equal(rd(&pm, ACPI_PM1_CNT_OFF, 2), slp(5, 0) | ACPI_PM1_CNT_BM_RLD | ACPI_PM1_CNT_SCI_EN);
	wr(&pm, ACPI_PM1_CNT_OFF, slp(5, 1), 2);
	assert_int_equal(e.poweroff, 3);
	assert_int_equal(e.reset, 0);
}

static void test_reset_register(void **state)
{
	(void)state;
	struct events e = { 0 };
	struct acpi_pm pm;
	acpi_pm_init(&pm, on_event, &e);

	wr(&pm, ACPI_PM_RESET_OFF, ACPI_PM_RESET_VALUE ^ 1, 1);
	wr(&pm, ACPI_PM_RESET_OFF + 1, ACPI_PM_RESET_VALUE, 1); /* the reserved byte next to it */
	assert_int_equal(e.reset, 0);
	wr(&pm, ACPI_PM_RESET_OFF, ACPI_PM_RESET_VALUE, 1);
	assert_int_equal(e.reset, 1);
	assert_int_equal(e.poweroff, 0);
	assert_int_equal(rd(&pm, ACPI_PM_RESET_OFF, 1), 0); /* write-only */

	/* A dword write at offset 4: PM1_CNT with S5 + SLP_EN and the reset value: both fire. */
	e = (struct events){ 0 };
	wr(&pm, ACPI_PM1_CNT_OFF, (uint32_t)ACPI_PM_RESET_VALUE << 16 | slp(5, 1), 4);
	assert_int_equal(e.poweroff, 1);
	assert_int_equal(e.reset, 1);
}

static void test_status_write_one_to_clear(void **state)
{
	(void)state;
	struct acpi_pm pm;
	acpi_pm_init(&pm, NULL, NULL);

	/* Nothing in vmon sets status bits yet, so put some there through a saved state. */
	uint8_t blob[64];
	struct acpi_pm other;
	acpi_pm_init(&other, NULL, NULL);
	other.pm1_sts = 0x8101; /* WAK_STS, PWRBTN_STS, TMR_STS */
	long n = acpi_pm_ops.save(&other, blob, sizeof(blob));
	assert_true(n > 0);
	assert_int_equal(acpi_pm_ops.load(&pm, blob, (size_t)n), 0);
	assert_int_equal(rd(&pm, ACPI_PM1_STS_OFF, 2), 0x8101);

	wr(&pm, ACPI_PM1_STS_OFF, 0x0100, 2); /* clear PWRBTN_STS only */
	assert_int_equal(rd(&pm, ACPI_PM1_STS_OFF, 2), 0x8001);
	wr(&pm, ACPI_PM1_STS_OFF, 0x0000, 2); /* writing zeros changes nothing */
	assert_int_equal(rd(&pm, ACPI_PM1_STS_OFF, 2), 0x8001);
	wr(&pm, ACPI_PM1_STS_OFF + 1, 0x80, 1); /* clear WAK_STS through the high byte */
	assert_int_equal(rd(&pm, ACPI_PM1_STS_OFF, 2), 0x0001);
}

static void test_enable_register(void **state)
{
	(void)state;
	struct acpi_pm pm;
	acpi_pm_init(&pm, NULL, NULL);
	wr(&pm, ACPI_PM1_EN_OFF, 0x0120, 2); /* GBL_EN, PWRBTN_EN */
	assert_int_equal(rd(&pm, ACPI_PM1_EN_OFF, 2), 0x0120);
	wr(&pm, ACPI_PM1_EN_OFF, 0xffff, 2); /* reserved bits stay zero */
	assert_int_equal(rd(&pm, ACPI_PM1_EN_OFF, 2) & ~0x4721u, 0);
	wr(&pm, ACPI_PM1_EN_OFF + 1, 0x00, 1); /* byte write leaves the low byte */
	assert_int_equal(rd(&pm, ACPI_PM1_EN_OFF, 2), 0x0021);
	/* A 4-byte read at 0 returns status in the low half and enable in the high half. */
	assert_int_equal(rd(&pm, ACPI_PM1_STS_OFF, 4), 0x0021u << 16);
}

static void test_out_of_range_access(void **state)
{
	(void)state;
	struct events e = { 0 };
	struct acpi_pm pm;
	acpi_pm_init(&pm, on_event, &e);
	assert_int_equal(rd(&pm, ACPI_PM_PORT_LEN - 2, 4), 0xffff0000u);
	assert_int_equal(rd(&pm, 100, 2), 0xffff);
	wr(&pm, 100, 0xffffffff, 4);
	wr(&pm, ACPI_PM_PORT_LEN - 1, 0xffffffff, 4);
	assert_int_equal(e.poweroff + e.reset, 0);
}

static void test_save_load_reset(void **state)
{
	(void)state;
	struct acpi_pm a, b;
	acpi_pm_init(&a, NULL, NULL);
	acpi_pm_init(&b, NULL, NULL);
	wr(&a, ACPI_PM1_EN_OFF, 0x0100, 2);
	wr(&a, ACPI_PM1_CNT_OFF, slp(3, 0) | ACPI_PM1_CNT_BM_RLD, 2);

	uint8_t blob[64];
	assert_int_equal(acpi_pm_ops.save(&a, blob, 4), -ENOSPC);
	long n = acpi_pm_ops.save(&a, blob, sizeof(blob));
	assert_true(n > 0);
	assert_int_equal(acpi_pm_ops.load(&b, blob, (size_t)n), 0);
	assert_int_equal(rd(&b, 0, 4), rd(&a, 0, 4));
	assert_int_equal(rd(&b, 4, 2), rd(&a, 4, 2));

	/* Malformed blobs are refused and leave the device as it was. */
	assert_int_equal(acpi_pm_ops.load(&b, blob, (size_t)n - 1), -EINVAL);
	uint8_t bad[64];
	memcpy(bad, blob, sizeof(bad));
	bad[0] ^= 0xff;
	assert_int_equal(acpi_pm_ops.load(&b, bad, (size_t)n), -EINVAL);
	memcpy(bad, blob, sizeof(bad));
	memset(bad + 4, 0xff, (size_t)n - 4);
	assert_int_equal(acpi_pm_ops.load(&b, bad, (size_t)n), -EINVAL);
	assert_int_equal(rd(&b, ACPI_PM1_EN_OFF, 2), 0x0100);

	acpi_pm_ops.reset(&b);
	assert_int_equal(rd(&b, 0, 4), 0);
	assert_int_equal(rd(&b, ACPI_PM1_CNT_OFF, 2), ACPI_PM1_CNT_SCI_EN);
}

/* ---- pvpanic ---- */

struct panics {
	int calls;
	uint8_t last;
};

static void on_panic(void *opaque, uint8_t events)
{
	struct panics *p = opaque;
	p->calls++;
	p->last = events;
}

static void test_pvpanic_reads_supported_events(void **state)
{
	(void)state;
	struct pvpanic p;
	pvpanic_init(&p, NULL, NULL);
	uint8_t v = 0;
	pvpanic_ops.read(&p, 0, &v, 1);
	assert_int_equal(v, 3);
}

static void test_pvpanic_write(void **state)
{
	(void)state;
	struct panics seen = { 0 };
	struct pvpanic p;
	pvpanic_init(&p, on_panic, &seen);
	uint8_t v = 0;
	pvpanic_ops.write(&p, 0, &v, 1);
	v = PVPANIC_CRASH_LOADED; /* reported, but not a panic */
	pvpanic_ops.write(&p, 0, &v, 1);
	assert_int_equal(seen.calls, 0);
	v = PVPANIC_PANICKED;
	pvpanic_ops.write(&p, 0, &v, 1);
	assert_int_equal(seen.calls, 1);
	assert_int_equal(seen.last, PVPANIC_PANICKED);
	v = 0xff; /* unsupported bits are dropped */
	pvpanic_ops.write(&p, 0, &v, 1);
	assert_int_equal(seen.calls, 2);
	assert_int_equal(seen.last, PVPANIC_PANICKED | PVPANIC_CRASH_LOADED);
}

static void test_pvpanic_save_load_reset(void **state)
{
	(void)state;
	struct panics seen = { 0 };
	struct pvpanic a, b;
	pvpanic_init(&a, on_panic, &seen);
	pvpanic_init(&b, NULL, NULL);
	uint8_t v = PVPANIC_PANICKED;
	pvpanic_ops.write(&a, 0, &v, 1);

	uint8_t blob[16];
	long n = pvpanic_ops.save(&a, blob, sizeof(blob));
	assert_true(n > 0);
	assert_int_equal(pvpanic_ops.load(&b, blob, (size_t)n), 0);
	assert_int_equal(b.events, PVPANIC_PANICKED);
	assert_int_equal(pvpanic_ops.load(&b, blob, (size_t)n + 1), -EINVAL);
	blob[1] = 0x80;
	assert_int_equal(pvpanic_ops.load(&b, blob, (size_t)n), -EINVAL);
	pvpanic_ops.reset(&b);
	assert_int_equal(b.events, 0);
	/* The port still reads the supported events after reset. */
	pvpanic_ops.read(&b, 0, &v, 1);
	assert_int_equal(v, 3);
}

/* Lines the log file at path holds from component comp. */
static int log_lines_from(const char *path, const char *comp)
{
	char want[64];
	snprintf(want, sizeof(want), "\"component\":\"%s\"", comp);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char line[2048];
	int n = 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, want) != NULL;
	fclose(f);
	return n;
}

static void test_pvpanic_guest_cannot_flood_the_log(void **state)
{
	(void)state;
	char path[] = "/tmp/vmon-pvpanic-log.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(log_open_json_file(path), 0);
	log_set_level(LOG_DEBUG);
	struct panics seen = { 0 };
	struct pvpanic p;
	pvpanic_init(&p, on_panic, &seen);
	for (int i = 0; i < 10000; i++) {
		uint8_t v = i % 2 ? PVPANIC_CRASH_LOADED : PVPANIC_PANICKED;
		pvpanic_ops.write(&p, 0, &v, 1);
	}
	log_set_level(LOG_INFO);
	log_close_json_file();
	/* Every panic still reaches the VM; the log gets a handful of lines, not 10,000. */
	assert_int_equal(seen.calls, 5000);
	assert_int_equal(log_lines_from(path, "pvpanic"), LOG_RATELIMIT_BURST);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sci_en_always_set),
		cmocka_unit_test(test_poweroff_needs_slp_en_and_s5),
		cmocka_unit_test(test_poweroff_by_byte_and_dword_writes),
		cmocka_unit_test(test_reset_register),
		cmocka_unit_test(test_status_write_one_to_clear),
		cmocka_unit_test(test_enable_register),
		cmocka_unit_test(test_out_of_range_access),
		cmocka_unit_test(test_save_load_reset),
		cmocka_unit_test(test_pvpanic_reads_supported_events),
		cmocka_unit_test(test_pvpanic_write),
		cmocka_unit_test(test_pvpanic_save_load_reset),
		cmocka_unit_test(test_pvpanic_guest_cannot_flood_the_log),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
