/*
 * libFuzzer target: the CMOS RTC's index and data ports (see fuzz_ops.h). The host clock comes
 * from the input's first 8 bytes (any time from 1970 to 2116), so a run repeats.
 * Build and run: make fuzz && build/fuzz/fuzz_rtc tests/fuzz/corpus_rtc
 */
#include "devices/rtc.h"
#include "fuzz_ops.h"
#include "lib/log.h"

static struct bus pio;
static struct rtc rtc;
static int64_t host_now;

static int64_t fixed_time(void) { return host_now; }

/* The clock moves on between accesses, as it does while a guest reads the registers. */
static void time_passes(void *dev, const struct fuzz_op *op)
{
	(void)dev;
	host_now += (int64_t)(op->val & 0xffffffffffull); /* < 20 min a step: no overflow */
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	log_set_level(LOG_ERROR);
	bus_init(&pio, "pio");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 8)
		return 0;
	uint64_t t;
	memcpy(&t, data, 8);
	host_now = (int64_t)(t % (1ull << 62));
	rtc_init(&rtc, (struct irq_line){ 0 });
	rtc.host_time_ns = fixed_time;
	fuzz_check(bus_register(&pio, RTC_INDEX_PORT, 2, &rtc_ops, &rtc) == 0, "bus_register");
	fuzz_port_device(&pio, &rtc_ops, &rtc, RTC_INDEX_PORT, 2, data + 8, size - 8, time_passes);
	bus_unregister(&pio, RTC_INDEX_PORT);
	rtc_destroy(&rtc);
	return 0;
}
