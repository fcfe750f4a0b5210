#include "devices/pvpanic.h"

#include <errno.h>
#include <string.h>

#include "lib/log.h"

#define COMP "pvpanic"
#define SAVE_VERSION 1
#define SAVE_LEN 2

void pvpanic_init(struct pvpanic *p, void (*on_panic)(void *, uint8_t), void *opaque)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	p->on_panic = on_panic;
	p->opaque = opaque;
}

static void pvpanic_read(void *dev, uint64_t offset, void *data, uint32_t len)
{
	(void)dev;
	uint8_t *out = data;
	/* Reading tells the guest driver which events it may report. */
	for (uint32_t i = 0; i < len; i++)
		out[i] = offset + i < PVPANIC_PORT_LEN ? PVPANIC_SUPPORTED : 0xff;
}

static void pvpanic_write(void *dev, uint64_t offset, const void *data, uint32_t len)
{
	struct pvpanic *p = dev;
	if (offset != 0 || len == 0)
		return;
	uint8_t events = *(const uint8_t *)data & PVPANIC_SUPPORTED;
	if (!events)
		return;

	pthread_mutex_lock(&p->lock);
	p->events |= events;
	pthread_mutex_unlock(&p->lock);

	if (events & PVPANIC_PANICKED) {
		log_debug_ratelimited(&p->rl, COMP, "guest reported events 0x%x", events);
		if (p->on_panic)
			p->on_panic(p->opaque, events);
	} else {
		log_info_ratelimited(&p->rl, COMP, "the guest loaded a crash kernel");
	}
}

static void pvpanic_reset(void *dev)
{
	struct pvpanic *p = dev;
	pthread_mutex_lock(&p->lock);
	p->events = 0;
	pthread_mutex_unlock(&p->lock);
}

static long pvpanic_save(void *dev, void *buf, size_t cap)
{
	struct pvpanic *p = dev;
	uint8_t *b = buf;
	if (cap < SAVE_LEN)
		return -ENOSPC;
	pthread_mutex_lock(&p->lock);
	b[0] = SAVE_VERSION;
	b[1] = p->events;
	pthread_mutex_unlock(&p->lock);
	return SAVE_LEN;
}

static int pvpanic_load(void *dev, const void *buf, size_t len)
{
	struct pvpanic *p = dev;
	const uint8_t *b = buf;
	if (len != SAVE_LEN || b[0] != SAVE_VERSION || (b[1] & ~PVPANIC_SUPPORTED))
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	p->events = b[1];
	pthread_mutex_unlock(&p->lock);
	return 0;
}

const struct device_ops pvpanic_ops = {
	.name = "pvpanic",
	.read = pvpanic_read,
	.write = pvpanic_write,
	.reset = pvpanic_reset,
	.save = pvpanic_save,
	.load = pvpanic_load,
};
