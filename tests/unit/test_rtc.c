/* What a guest's CMOS clock driver observes of the emulated MC146818. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "devices/rtc.h"

#define NS 1000000000LL

static int64_t fake_now;

static int64_t fake_clock(void)
{
	return fake_now;
}

static int setup(void **state)
{
	struct rtc *r = test_calloc(1, sizeof(*r));
	rtc_init(r, (struct irq_line){ 0 });
	*state = r;
	return 0;
}

static int teardown(void **state)
{
	rtc_destroy(*state);
	test_free(*state);
	return 0;
}

static uint8_t cmos_read(struct rtc *r, uint8_t reg)
{
	uint8_t v = 0;
	rtc_ops.write(r, 0, &reg, 1);
	rtc_ops.read(r, 1, &v, 1);
	return v;
}

static void cmos_write(struct rtc *r, uint8_t reg, uint8_t val)
{
	rtc_ops.write(r, 0, &reg, 1);
	rtc_ops.write(r, 1, &val, 1);
}

static int from_bcd(uint8_t v)
{
	return (v >> 4) * 10 + (v & 0xf);
}

struct clock_reading {
	struct tm tm;
	int wday_reg;
};

/* Reads the clock the way Linux's mc146818_get_time does: wait out UIP, retry if a second ticked. */
static struct clock_reading read_clock(struct rtc *r, bool binary)
{
	struct clock_reading c;
	uint8_t sec;

	for (int tries = 0;; tries++) {
		assert_true(tries < 1000);
		sec = cmos_read(r, RTC_REG_SECONDS);
		if (cmos_read(r, RTC_REG_A) & 0x80)
			continue;
		uint8_t regs[10];
		for (uint8_t i = 0; i < 10; i++)
			regs[i] = cmos_read(r, i);
		uint8_t century = cmos_read(r, RTC_REG_CENTURY);
		if ((cmos_read(r, RTC_REG_A) & 0x80) || cmos_read(r, RTC_REG_SECONDS) != sec)
			continue;
		memset(&c, 0, sizeof(c));
#define V(x) (binary ? (int)(x) : from_bcd(x))
		c.tm.tm_sec = V(regs[RTC_REG_SECONDS]);
		c.tm.tm_min = V(regs[RTC_REG_MINUTES]);
		c.tm.tm_hour = V(regs[RTC_REG_HOURS]);
		c.wday_reg = V(regs[RTC_REG_DAY_OF_WEEK]);
		c.tm.tm_mday = V(regs[RTC_REG_DAY_OF_MONTH]);
		c.tm.tm_mon = V(regs[RTC_REG_MONTH]) - 1;
		c.tm.tm_year = V(century) * 100 + V(regs[RTC_REG_YEAR]) - 1900;
#undef V
		return c;
	}
}

static void check_reads_match_host_time(struct rtc *r, bool binary)
{
	time_t before = time(NULL);
	struct clock_reading c = read_clock(r, binary);
	time_t after = time(NULL);
	time_t shown = timegm(&c.tm);

	assert_true(shown >= before && shown <= after);
	struct tm expect;
	gmtime_r(&shown, &expect);
	assert_int_equal(c.wday_reg, expect.tm_wday + 1);
}

static void test_reads_match_host_utc_in_bcd(void **state)
{
	struct rtc *r = *state;

	assert_int_equal(cmos_read(r, RTC_REG_B), 0x02); /* BCD, 24-hour, like a PC BIOS leaves it */
	check_reads_match_host_time(r, false);
}

static void test_reads_match_host_utc_in_binary(void **state)
{
	struct rtc *r = *state;

	cmos_write(r, RTC_REG_B, 0x06);
	check_reads_match_host_time(r, true);
}

static void test_twelve_hour_mode(void **state)
{
	struct rtc *r = *state;

	r->host_time_ns = fake_clock;
	fake_now = (int64_t)1700000000 * NS; /* 2023-11-14 22:13:20 UTC */
	assert_int_equal(cmos_read(r, RTC_REG_HOURS), 0x22);
	cmos_write(r, RTC_REG_B, 0x00); /* BCD, 12-hour */
	assert_int_equal(cmos_read(r, RTC_REG_HOURS), 0x80 | 0x10); /* 10 PM */
	fake_now -= 22 * 3600LL * NS; /* 00:13:20 */
	assert_int_equal(cmos_read(r, RTC_REG_HOURS), 0x12); /* 12 AM */
	cmos_write(r, RTC_REG_B, 0x04); /* binary, 12-hour */
	fake_now += 13 * 3600LL * NS; /* 13:13:20 */
	assert_int_equal(cmos_read(r, RTC_REG_HOURS), 0x80 | 1);
}

static void test_set_time_then_clock_advances(void **state)
{
	struct rtc *r = *state;

	r->host_time_ns = fake_clock;
	fake_now = (int64_t)1700000000 * NS + NS / 3;

	/* How Linux's mc146818_set_time writes the clock. */
	cmos_write(r, RTC_REG_B, cmos_read(r, RTC_REG_B) | 0x80);
	cmos_write(r, RTC_REG_SECONDS, 0x06);
	cmos_write(r, RTC_REG_MINUTES, 0x05);
	cmos_write(r, RTC_REG_HOURS, 0x04);
	cmos_write(r, RTC_REG_DAY_OF_MONTH, 0x03);
	cmos_write(r, RTC_REG_MONTH, 0x02);
	cmos_write(r, RTC_REG_YEAR, 0x01);
	cmos_write(r, RTC_REG_CENTURY, 0x20);
	fake_now += 5 * NS;
	assert_int_equal(cmos_read(r, RTC_REG_SECONDS), 0x06); /* frozen while SET */
	assert_int_equal(cmos_read(r, RTC_REG_A) & 0x80, 0);   /* no updates while SET */
	cmos_write(r, RTC_REG_B, cmos_read(r, RTC_REG_B) & ~0x80);

	struct clock_reading c = read_clock(r, false);
	assert_int_equal(c.tm.tm_year + 1900, 2001);
	assert_int_equal(c.tm.tm_mon + 1, 2);
	assert_int_equal(c.tm.tm_mday, 3);
	assert_int_equal(c.tm.tm_hour, 4);
	assert_int_equal(c.tm.tm_min, 5);
	assert_int_equal(c.tm.tm_sec, 6);
	assert_int_equal(c.wday_reg, 7); /* 2001-02-03 was a Saturday */

	fake_now += 61 * NS + NS / 2;
	c = read_clock(r, false);
	assert_int_equal(c.tm.tm_min, 6);
	assert_int_equal(c.tm.tm_sec, 7);
	assert_int_equal(c.tm.tm_mday, 3);
}

static void test_single_field_write_while_running(void **state)
{
	struct rtc *r = *state;

	r->host_time_ns = fake_clock;
	fake_now = (int64_t)1700000000 * NS; /* 22:13:20 */
	cmos_write(r, RTC_REG_MINUTES, 0x45);
	assert_int_equal(cmos_read(r, RTC_REG_MINUTES), 0x45);
	assert_int_equal(cmos_read(r, RTC_REG_HOURS), 0x22);
	fake_now += 10 * NS;
	assert_int_equal(cmos_read(r, RTC_REG_SECONDS), 0x30);

	/* Garbage is refused: the clock keeps running from where it was. */
	cmos_write(r, RTC_REG_MONTH, 0x13);
	assert_int_equal(cmos_read(r, RTC_REG_MONTH), 0x11);
	assert_int_equal(cmos_read(r, RTC_REG_MINUTES), 0x45);
}

static void test_update_in_progress_is_brief(void **state)
{
	struct rtc *r = *state;

	r->host_time_ns = fake_clock;
	fake_now = (int64_t)1700000000 * NS + NS - 100000; /* 100 us before the tick */
	assert_int_equal(cmos_read(r, RTC_REG_A), 0x80 | 0x26);
	fake_now += 200000; /* the update is done */
	assert_int_equal(cmos_read(r, RTC_REG_A), 0x26);
	fake_now += NS / 2;
	assert_int_equal(cmos_read(r, RTC_REG_A), 0x26);

	/* With the real clock, polling for UIP clear succeeds quickly. */
	struct rtc real;
	rtc_init(&real, (struct irq_line){ 0 });
	int polls = 0;
	while (cmos_read(&real, RTC_REG_A) & 0x80)
		assert_true(++polls < 1000000);
	rtc_destroy(&real);
}

static void test_status_registers(void **state)
{
	struct rtc *r = *state;

	r->host_time_ns = fake_clock;
	fake_now = (int64_t)1700000000 * NS;
	cmos_read(r, RTC_REG_C);
	assert_int_equal(cmos_read(r, 0x80 | RTC_REG_D), 0x80); /* NMI-disable bit is not index */
	assert_int_equal(cmos_read(r, RTC_REG_C), 0x00);
	fake_now += NS;
	assert_int_equal(cmos_read(r, RTC_REG_C) & 0x10, 0x10); /* an update ended since */
	assert_int_equal(cmos_read(r, RTC_REG_C), 0x00);         /* read clears */

	cmos_write(r, RTC_REG_C, 0xff);
	cmos_write(r, RTC_REG_D, 0x00);
	assert_int_equal(cmos_read(r, RTC_REG_D), 0x80);
	cmos_write(r, RTC_REG_A, 0xa6); /* UIP is read-only */
	assert_int_equal(cmos_read(r, RTC_REG_A), 0x26);

	/* The rest is battery-backed RAM. */
	cmos_write(r, 0x40, 0x12);
	cmos_write(r, 0x7f, 0x34);
	assert_int_equal(cmos_read(r, 0x40), 0x12);
	assert_int_equal(cmos_read(r, 0x7f), 0x34);
	cmos_write(r, RTC_REG_HOURS_ALARM, 0xc0);
	assert_int_equal(cmos_read(r, RTC_REG_HOURS_ALARM), 0xc0);
}

static void test_save_load(void **state)
{
	struct rtc *r = *state;
	uint8_t blob[512];

	r->host_time_ns = fake_clock;
	fake_now = (int64_t)1700000000 * NS;
	cmos_write(r, RTC_REG_YEAR, 0x30); /* the guest moves its clock to 2030 */
	cmos_write(r, 0x50, 0xab);
	long n = rtc_ops.save(r, blob, sizeof(blob));
	assert_true(n > 0);
	assert_int_equal(rtc_ops.save(r, blob, 10), -ENOSPC);

	struct rtc g;
	rtc_init(&g, (struct irq_line){ 0 });
	g.host_time_ns = fake_clock;
	assert_int_equal(rtc_ops.load(&g, blob, (size_t)n), 0);
	assert_int_equal(cmos_read(&g, RTC_REG_YEAR), 0x30);
	assert_int_equal(cmos_read(&g, 0x50), 0xab);
	assert_int_equal(rtc_ops.load(&g, blob, (size_t)n - 1), -EINVAL);
	blob[0] = 2;
	assert_int_equal(rtc_ops.load(&g, blob, (size_t)n), -EINVAL);

	/* A hostile offset must not break the arithmetic. */
	blob[0] = 1;
	memset(blob + n - 8, 0xff, 7);
	blob[n - 1] = 0x7f;
	assert_int_equal(rtc_ops.load(&g, blob, (size_t)n), 0);
	cmos_read(&g, RTC_REG_YEAR);
	cmos_read(&g, RTC_REG_A);
	cmos_read(&g, RTC_REG_C);
	cmos_write(&g, RTC_REG_MINUTES, 0x10);
	rtc_destroy(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_reads_match_host_utc_in_bcd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reads_match_host_utc_in_binary, setup, teardown),
		cmocka_unit_test_setup_teardown(test_twelve_hour_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_time_then_clock_advances, setup, teardown),
		cmocka_unit_test_setup_teardown(test_single_field_write_while_running, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_in_progress_is_brief, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
