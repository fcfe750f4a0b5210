/*
 * MC146818 RTC: time registers derived from the host clock, 128 bytes of CMOS RAM.
 * Register layout and bits follow the Motorola MC146818A data sheet.
 */
#include "devices/rtc.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"

#define NS_PER_SEC 1000000000LL

/* Register A */
#define A_UIP 0x80
#define A_RATE 0x0f
#define A_DEFAULT 0x26 /* 32.768 kHz time base, 1.024 kHz periodic rate */

/* Register B */
#define B_SET 0x80
#define B_PIE 0x40
#define B_AIE 0x20
#define B_UIE 0x10
#define B_SQWE 0x08
#define B_BINARY 0x04
#define B_24H 0x02
#define B_DEFAULT B_24H /* BCD, 24-hour: what PC firmware leaves */

/* Register C */
#define C_IRQF 0x80
#define C_PF 0x40
#define C_AF 0x20
#define C_UF 0x10

/* Register D */
#define D_VRT 0x80 /* the battery is fine, RAM and time are valid */

/*
 * UIP rises this long before each update and the time registers change at the update.
 * A reader that sees UIP clear therefore has at least this long to read a consistent time,
 * and UIP always clears again, so Linux's mc146818_get_time() never spins for long.
 */
#define UIP_LEAD_NS 244000LL

static struct log_ratelimit bad_time_rl;

static int64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

static int64_t guest_ns(const struct rtc *r)
{
	int64_t g;

	/* The offset can come from a snapshot file: saturate rather than overflow. */
	if (__builtin_add_overflow(r->host_time_ns(), r->offset_ns, &g))
		return r->offset_ns > 0 ? INT64_MAX : INT64_MIN;
	return g;
}

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* The registers that show the running clock (not the alarm registers between them). */
static bool is_clock_reg(unsigned int reg)
{
	switch (reg) {
	case RTC_REG_SECONDS:
	case RTC_REG_MINUTES:
	case RTC_REG_HOURS:
	case RTC_REG_DAY_OF_WEEK:
	case RTC_REG_DAY_OF_MONTH:
	case RTC_REG_MONTH:
	case RTC_REG_YEAR:
	case RTC_REG_CENTURY:
		return true;
	default:
		return false;
	}
}

static uint8_t encode(const struct rtc *r, unsigned int v)
{
	if (r->cmos[RTC_REG_B] & B_BINARY)
		return (uint8_t)v;
	return (uint8_t)(((v / 10) % 10) << 4 | (v % 10));
}

/* Returns -1 for a byte that is not a valid BCD number. */
static int decode(const struct rtc *r, uint8_t v)
{
	if (r->cmos[RTC_REG_B] & B_BINARY)
		return v;
	if ((v >> 4) > 9 || (v & 0xf) > 9)
		return -1;
	return (v >> 4) * 10 + (v & 0xf);
}

static uint8_t encode_hour(const struct rtc *r, int hour)
{
	if (r->cmos[RTC_REG_B] & B_24H)
		return encode(r, (unsigned int)hour);
	int h12 = hour % 12 == 0 ? 12 : hour % 12;
	return encode(r, (unsigned int)h12) | (hour >= 12 ? 0x80 : 0);
}

static int decode_hour(const struct rtc *r, uint8_t v)
{
	if (r->cmos[RTC_REG_B] & B_24H)
		return decode(r, v);
	int h12 = decode(r, v & 0x7f);
	if (h12 < 1 || h12 > 12)
		return -1;
	return h12 % 12 + ((v & 0x80) ? 12 : 0);
}

/* Writes the current guest time into the time registers, in the format register B selects. */
static void stage_time(struct rtc *r)
{
	time_t secs = (time_t)floor_div(guest_ns(r), NS_PER_SEC);
	struct tm tm;

	if (!gmtime_r(&secs, &tm))
		return;
	r->cmos[RTC_REG_SECONDS] = encode(r, (unsigned int)tm.tm_sec);
	r->cmos[RTC_REG_MINUTES] = encode(r, (unsigned int)tm.tm_min);
	r->cmos[RTC_REG_HOURS] = encode_hour(r, tm.tm_hour);
	r->cmos[RTC_REG_DAY_OF_WEEK] = encode(r, (unsigned int)tm.tm_wday + 1);
	r->cmos[RTC_REG_DAY_OF_MONTH] = encode(r, (unsigned int)tm.tm_mday);
	r->cmos[RTC_REG_MONTH] = encode(r, (unsigned int)tm.tm_mon + 1);
	unsigned int year = (unsigned int)tm.tm_year + 1900;
	r->cmos[RTC_REG_YEAR] = encode(r, year % 100);
	r->cmos[RTC_REG_CENTURY] = encode(r, year / 100);
}

/*
 * Makes the time registers the guest's current time by moving the offset. keep_phase keeps
 * the position within the current second (a single register write does not restart the
 * divider chain); otherwise the new second starts now, as when SET is released.
 */
static void commit_time(struct rtc *r, bool keep_phase)
{
	int sec = decode(r, r->cmos[RTC_REG_SECONDS]);
	int min = decode(r, r->cmos[RTC_REG_MINUTES]);
	int hour = decode_hour(r, r->cmos[RTC_REG_HOURS]);
	int mday = decode(r, r->cmos[RTC_REG_DAY_OF_MONTH]);
	int mon = decode(r, r->cmos[RTC_REG_MONTH]);
	int year = decode(r, r->cmos[RTC_REG_YEAR]);
	int century = decode(r, r->cmos[RTC_REG_CENTURY]);

	if (sec < 0 || sec > 59 || min < 0 || min > 59 || hour < 0 || hour > 23 || mday < 1 ||
	    mday > 31 || mon < 1 || mon > 12 || year < 0 || year > 99 || century < 0 || century > 99) {
		log_warn_ratelimited(&bad_time_rl, "rtc",
				     "guest set an invalid date/time; the clock keeps its previous time");
		return;
	}
	struct tm tm = {
		.tm_sec = sec,
		.tm_min = min,
		.tm_hour = hour,
		.tm_mday = mday,
		.tm_mon = mon - 1,
		.tm_year = century * 100 + year - 1900,
	};
	int64_t secs = (int64_t)timegm(&tm);
	int64_t g = guest_ns(r);
	int64_t phase = keep_phase ? g - floor_div(g, NS_PER_SEC) * NS_PER_SEC : 0;
	int64_t target, offset;

	if (__builtin_mul_overflow(secs, NS_PER_SEC, &target) ||
	    __builtin_add_overflow(target, phase, &target) ||
	    __builtin_sub_overflow(target, r->host_time_ns(), &offset)) {
		log_warn_ratelimited(&bad_time_rl, "rtc",
				     "guest set a date too far from today; the clock keeps its previous time");
		return;
	}
	r->offset_ns = offset;
}

static bool time_frozen(const struct rtc *r)
{
	return r->cmos[RTC_REG_B] & B_SET;
}

static uint8_t read_reg_a(const struct rtc *r)
{
	uint8_t a = r->cmos[RTC_REG_A] & ~A_UIP;

	if (!time_frozen(r)) {
		int64_t g = guest_ns(r);
		int64_t into_second = g - floor_div(g, NS_PER_SEC) * NS_PER_SEC;
		if (into_second >= NS_PER_SEC - UIP_LEAD_NS)
			a |= A_UIP;
	}
	return a;
}

static int64_t periodic_ns(const struct rtc *r)
{
	unsigned int rate = r->cmos[RTC_REG_A] & A_RATE;

	if (rate == 0)
		return 0;
	if (rate <= 2) /* rates 1 and 2 alias 256 Hz and 128 Hz on the 32 kHz time base */
		rate += 7;
	return NS_PER_SEC / (32768 >> (rate - 1));
}

/* Register C: flags for the events since it was last read; reading clears them. */
static uint8_t read_reg_c(struct rtc *r)
{
	int64_t now = guest_ns(r);
	int64_t then = r->flags_checked_ns;
	uint8_t c = 0;

	if (!time_frozen(r) && floor_div(now, NS_PER_SEC) != floor_div(then, NS_PER_SEC))
		c |= C_UF;
	int64_t period = periodic_ns(r);
	if (period && floor_div(now, period) != floor_div(then, period))
		c |= C_PF;
	if (((c & C_UF) && (r->cmos[RTC_REG_B] & B_UIE)) || ((c & C_PF) && (r->cmos[RTC_REG_B] & B_PIE)))
		c |= C_IRQF;
	r->flags_checked_ns = now;
	return c;
}

static uint8_t read_data(struct rtc *r)
{
	unsigned int reg = r->index;

	if (is_clock_reg(reg) && !time_frozen(r))
		stage_time(r);
	switch (reg) {
	case RTC_REG_A:
		return read_reg_a(r);
	case RTC_REG_C:
		return read_reg_c(r);
	case RTC_REG_D:
		return D_VRT;
	default:
		return r->cmos[reg];
	}
}

static void write_data(struct rtc *r, uint8_t val)
{
	unsigned int reg = r->index;

	if (is_clock_reg(reg)) {
		if (time_frozen(r)) {
			r->cmos[reg] = val;
		} else {
			/* A running clock takes the new field and carries on from there. */
			stage_time(r);
			r->cmos[reg] = val;
			commit_time(r, true);
		}
		return;
	}
	switch (reg) {
	case RTC_REG_A:
		r->cmos[RTC_REG_A] = val & ~A_UIP;
		break;
	case RTC_REG_B: {
		bool was_set = r->cmos[RTC_REG_B] & B_SET;
		if (!was_set && (val & B_SET))
			stage_time(r); /* freeze what the guest sees so it can edit it */
		if (val & B_SET)
			val &= ~B_UIE; /* setting SET clears UIE, per the data sheet */
		if (was_set && !(val & B_SET)) {
			/* Decode the staged time in the format it was written in, then switch. */
			commit_time(r, false);
		}
		r->cmos[RTC_REG_B] = val;
		break;
	}
	case RTC_REG_C:
	case RTC_REG_D:
		break; /* read-only */
	default:
		r->cmos[reg] = val;
		break;
	}
}

static void rtc_read(void *dev, uint64_t offset, void *data, uint32_t len)
{
	struct rtc *r = dev;
	uint8_t val = 0xff; /* the index port is write-only */

	if (offset == 1) {
		pthread_mutex_lock(&r->lock);
		val = read_data(r);
		pthread_mutex_unlock(&r->lock);
	}
	memset(data, 0xff, len);
	*(uint8_t *)data = val;
}

static void rtc_write(void *dev, uint64_t offset, const void *data, uint32_t len)
{
	struct rtc *r = dev;
	uint8_t val = *(const uint8_t *)data;
	(void)len;

	pthread_mutex_lock(&r->lock);
	if (offset == 0)
		r->index = val & 0x7f; /* bit 7 gates NMI on PCs; not part of the index */
	else if (offset == 1)
		write_data(r, val);
	pthread_mutex_unlock(&r->lock);
}

/* The RESET pin clears the interrupt enables and flags; time, format and RAM survive. */
static void rtc_reset(void *dev)
{
	struct rtc *r = dev;

	pthread_mutex_lock(&r->lock);
	r->cmos[RTC_REG_B] &= ~(B_PIE | B_AIE | B_UIE | B_SQWE);
	r->flags_checked_ns = guest_ns(r);
	pthread_mutex_unlock(&r->lock);
}

void rtc_init(struct rtc *r, struct irq_line irq)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	r->irq = irq;
	r->host_time_ns = realtime_ns;
	r->cmos[RTC_REG_A] = A_DEFAULT;
	r->cmos[RTC_REG_B] = B_DEFAULT;
	r->cmos[RTC_REG_D] = D_VRT;
	r->flags_checked_ns = guest_ns(r);
}

void rtc_destroy(struct rtc *r)
{
	pthread_mutex_destroy(&r->lock);
}

/* Snapshot layout, version 1: version, index, the 128 CMOS bytes, then the offset as
 * 8 little-endian bytes. Offsets are from host wall-clock time, so a restored guest's
 * clock shows the real time it was showing relative to the world, not the save time. */
#define RTC_SAVED_VERSION 1
#define RTC_SAVED_SIZE (2 + RTC_NVRAM_SIZE + 8)

static long rtc_save(void *dev, void *buf, size_t cap)
{
	struct rtc *r = dev;
	uint8_t *p = buf;

	if (cap < RTC_SAVED_SIZE)
		return -ENOSPC;
	pthread_mutex_lock(&r->lock);
	p[0] = RTC_SAVED_VERSION;
	p[1] = r->index;
	memcpy(p + 2, r->cmos, RTC_NVRAM_SIZE);
	uint64_t off = (uint64_t)r->offset_ns;
	for (int i = 0; i < 8; i++)
		p[2 + RTC_NVRAM_SIZE + i] = (uint8_t)(off >> (8 * i));
	pthread_mutex_unlock(&r->lock);
	return RTC_SAVED_SIZE;
}

static int rtc_load(void *dev, const void *buf, size_t len)
{
	struct rtc *r = dev;
	const uint8_t *p = buf;

	if (len != RTC_SAVED_SIZE || p[0] != RTC_SAVED_VERSION || p[1] >= RTC_NVRAM_SIZE)
		return -EINVAL;
	uint64_t off = 0;
	for (int i = 0; i < 8; i++)
		off |= (uint64_t)p[2 + RTC_NVRAM_SIZE + i] << (8 * i);

	pthread_mutex_lock(&r->lock);
	r->index = p[1];
	memcpy(r->cmos, p + 2, RTC_NVRAM_SIZE);
	r->cmos[RTC_REG_A] &= ~A_UIP;
	r->offset_ns = (int64_t)off;
	r->flags_checked_ns = guest_ns(r);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

const struct device_ops rtc_ops = {
	.name = "rtc",
	.read = rtc_read,
	.write = rtc_write,
	.reset = rtc_reset,
	.save = rtc_save,
	.load = rtc_load,
};
