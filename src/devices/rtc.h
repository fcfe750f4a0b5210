/*
 * MC146818 CMOS real-time clock at ports 0x70 (index) and 0x71 (data), showing the host's
 * current time in UTC. Time is not stored in the registers: each read computes it from the
 * host clock plus an offset, and a guest that sets the clock changes only that offset, so
 * its clock keeps advancing from what it set.
 *
 * Not emulated: interrupts on IRQ 8. The update-ended and periodic flags in register C are
 * computed when register C is read (so polling drivers see them), but nothing raises the line,
 * because that would need a host timer; the alarm flag is never set. Linux only needs the
 * interrupt for /dev/rtc alarms and update notifications (`hwclock` falls back to polling).
 */
#ifndef VMON_DEVICES_RTC_H
#define VMON_DEVICES_RTC_H

#include <pthread.h>
#include <stdint.h>

#include "devices/device.h"

#define RTC_INDEX_PORT 0x70
#define RTC_NVRAM_SIZE 128

/* Register numbers (the index written to port 0x70). */
enum {
	RTC_REG_SECONDS = 0x00,
	RTC_REG_SECONDS_ALARM = 0x01,
	RTC_REG_MINUTES = 0x02,
	RTC_REG_MINUTES_ALARM = 0x03,
	RTC_REG_HOURS = 0x04,
	RTC_REG_HOURS_ALARM = 0x05,
	RTC_REG_DAY_OF_WEEK = 0x06,
	RTC_REG_DAY_OF_MONTH = 0x07,
	RTC_REG_MONTH = 0x08,
	RTC_REG_YEAR = 0x09,
	RTC_REG_A = 0x0a,
	RTC_REG_B = 0x0b,
	RTC_REG_C = 0x0c,
	RTC_REG_D = 0x0d,
	RTC_REG_CENTURY = 0x32,
};

struct rtc {
	pthread_mutex_t lock;
	struct irq_line irq;
	/* Host wall-clock time in ns since the epoch; CLOCK_REALTIME unless a test replaces it. */
	int64_t (*host_time_ns)(void);

	/* Guest-visible state; everything below is saved and restored. */
	uint8_t index;
	/* Registers and NVRAM. While register B's SET bit is on, the time and century registers
	 * hold what the guest is writing; otherwise they are computed at read time. */
	uint8_t cmos[RTC_NVRAM_SIZE];
	int64_t offset_ns; /* guest time = host time + offset */
	int64_t flags_checked_ns; /* guest time when register C was last read */
};

void rtc_init(struct rtc *r, struct irq_line irq);
void rtc_destroy(struct rtc *r);

extern const struct device_ops rtc_ops; /* registered at 0x70, len 2 */

#endif
