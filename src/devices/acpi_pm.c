#include "devices/acpi_pm.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "lib/log.h"

#define COMP "acpi_pm"

/* Bits the guest can set; reserved bits read as zero. */
#define PM1_STS_VALID 0xc731 /* TMR, BM, GBL, PWRBTN, SLPBTN, RTC, PCIEXP_WAKE, WAK */
#define PM1_EN_VALID  0x4721 /* TMR, GBL, PWRBTN, SLPBTN, RTC, PCIEXP_WAKE_DIS */
#define PM1_CNT_STORED (ACPI_PM1_CNT_BM_RLD | ACPI_PM1_CNT_SLP_TYP_MASK)

#define SAVE_VERSION 1
#define SAVE_LEN 10

void acpi_pm_init(struct acpi_pm *pm, void (*on_event)(void *, enum acpi_pm_event), void *opaque)
{
	memset(pm, 0, sizeof(*pm));
	pthread_mutex_init(&pm->lock, NULL);
	pm->on_event = on_event;
	pm->opaque = opaque;
}

static uint8_t read_byte(const struct acpi_pm *pm, unsigned int off)
{
	uint16_t cnt = pm->pm1_cnt | ACPI_PM1_CNT_SCI_EN; /* ACPI mode is always on: there is no SMI_CMD */
	switch (off) {
	case ACPI_PM1_STS_OFF: return pm->pm1_sts & 0xff;
	case ACPI_PM1_STS_OFF + 1: return pm->pm1_sts >> 8;
	case ACPI_PM1_EN_OFF: return pm->pm1_en & 0xff;
	case ACPI_PM1_EN_OFF + 1: return pm->pm1_en >> 8;
	case ACPI_PM1_CNT_OFF: return cnt & 0xff;
	case ACPI_PM1_CNT_OFF + 1: return cnt >> 8;
	default: return 0; /* the reset register is write-only; the last byte is reserved */
	}
}

static void pm_read(void *dev, uint64_t offset, void *data, uint32_t len)
{
	struct acpi_pm *pm = dev;
	uint8_t *out = data;
	pthread_mutex_lock(&pm->lock);
	for (uint32_t i = 0; i < len; i++) {
		uint64_t off = offset + i;
		out[i] = off < ACPI_PM_PORT_LEN ? read_byte(pm, (unsigned int)off) : 0xff;
	}
	pthread_mutex_unlock(&pm->lock);
}

/* The 16-bit register at off as touched by this access: the bytes written and which ones. */
static void reg16(const uint8_t *val, const uint8_t *written, unsigned int off, uint16_t *v, uint16_t *mask)
{
	*v = (uint16_t)(val[off] | val[off + 1] << 8);
	*mask = (uint16_t)((written[off] ? 0x00ff : 0) | (written[off + 1] ? 0xff00 : 0));
}

static void pm_write(void *dev, uint64_t offset, const void *data, uint32_t len)
{
	static struct log_ratelimit rl;
	struct acpi_pm *pm = dev;
	const uint8_t *in = data;
	uint8_t val[ACPI_PM_PORT_LEN] = { 0 };
	uint8_t written[ACPI_PM_PORT_LEN] = { 0 };
	bool any = false;

	/* Gather the access byte by byte so any width at any offset lands on the right registers. */
	for (uint32_t i = 0; i < len; i++) {
		uint64_t off = offset + i;
		if (off >= ACPI_PM_PORT_LEN)
			continue;
		val[off] = in[i];
		written[off] = 1;
		any = true;
	}
	if (!any) {
		log_warn_ratelimited(&rl, COMP, "guest wrote %u bytes at offset %llu, outside the registers; ignored",
				     len, (unsigned long long)offset);
		return;
	}

	bool poweroff = false, reset = false;
	unsigned int ignored_slp_typ = 0;
	bool ignored_sleep = false;
	uint16_t v, m;

	pthread_mutex_lock(&pm->lock);
	reg16(val, written, ACPI_PM1_STS_OFF, &v, &m);
	pm->pm1_sts &= (uint16_t)~(v & m);

	reg16(val, written, ACPI_PM1_EN_OFF, &v, &m);
	pm->pm1_en = (uint16_t)(((pm->pm1_en & ~m) | (v & m)) & PM1_EN_VALID);

	reg16(val, written, ACPI_PM1_CNT_OFF, &v, &m);
	if (m) {
		uint16_t cnt = (uint16_t)((pm->pm1_cnt & ~m) | (v & m));
		pm->pm1_cnt = cnt & PM1_CNT_STORED;
		if (v & m & ACPI_PM1_CNT_SLP_EN) {
			unsigned int typ = (cnt & ACPI_PM1_CNT_SLP_TYP_MASK) >> ACPI_PM1_CNT_SLP_TYP_SHIFT;
			if (typ == ACPI_PM_SLP_TYP_S5) {
				poweroff = true;
			} else {
				ignored_sleep = true;
				ignored_slp_typ = typ;
			}
		}
	}

	if (written[ACPI_PM_RESET_OFF] && val[ACPI_PM_RESET_OFF] == ACPI_PM_RESET_VALUE)
		reset = true;
	pthread_mutex_unlock(&pm->lock);

	/* The guest can write these registers in a loop before the VM stops: every line is rate-limited. */
	static struct log_ratelimit sleep_rl, poweroff_rl, reset_rl;
	if (ignored_sleep)
		log_debug_ratelimited(&sleep_rl, COMP, "guest asked for sleep type %u; only %u (soft-off) is supported, ignored",
				      ignored_slp_typ, ACPI_PM_SLP_TYP_S5);
	if (poweroff) {
		log_debug_ratelimited(&poweroff_rl, COMP, "guest wrote SLP_TYP %u with SLP_EN: power off", ACPI_PM_SLP_TYP_S5);
		if (pm->on_event)
			pm->on_event(pm->opaque, ACPI_PM_POWEROFF);
	}
	if (reset) {
		log_debug_ratelimited(&reset_rl, COMP, "guest wrote the reset value to the reset register");
		if (pm->on_event)
			pm->on_event(pm->opaque, ACPI_PM_RESET);
	}
}

static void pm_reset(void *dev)
{
	struct acpi_pm *pm = dev;
	pthread_mutex_lock(&pm->lock);
	pm->pm1_sts = 0;
	pm->pm1_en = 0;
	pm->pm1_cnt = 0;
	pthread_mutex_unlock(&pm->lock);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static long pm_save(void *dev, void *buf, size_t cap)
{
	struct acpi_pm *pm = dev;
	uint8_t *b = buf;
	if (cap < SAVE_LEN)
		return -ENOSPC;
	pthread_mutex_lock(&pm->lock);
	b[0] = SAVE_VERSION;
	b[1] = b[2] = b[3] = 0;
	put16(b + 4, pm->pm1_sts);
	put16(b + 6, pm->pm1_en);
	put16(b + 8, pm->pm1_cnt);
	pthread_mutex_unlock(&pm->lock);
	return SAVE_LEN;
}

static int pm_load(void *dev, const void *buf, size_t len)
{
	struct acpi_pm *pm = dev;
	const uint8_t *b = buf;
	if (len != SAVE_LEN || b[0] != SAVE_VERSION || b[1] || b[2] || b[3])
		return -EINVAL;
	uint16_t sts = get16(b + 4), en = get16(b + 6), cnt = get16(b + 8);
	if ((sts & ~PM1_STS_VALID) || (en & ~PM1_EN_VALID) || (cnt & ~PM1_CNT_STORED))
		return -EINVAL;
	pthread_mutex_lock(&pm->lock);
	pm->pm1_sts = sts;
	pm->pm1_en = en;
	pm->pm1_cnt = cnt;
	pthread_mutex_unlock(&pm->lock);
	return 0;
}

const struct device_ops acpi_pm_ops = {
	.name = "acpi_pm",
	.read = pm_read,
	.write = pm_write,
	.reset = pm_reset,
	.save = pm_save,
	.load = pm_load,
};
