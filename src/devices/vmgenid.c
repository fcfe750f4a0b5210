#include "devices/vmgenid.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#define SAVE_MAGIC 0x4e454756u /* "VGEN" */
#define SAVE_VERSION 1

struct saved_vmgenid {
	uint32_t magic, version;
	uint64_t gpa;
	uint8_t id[VMGENID_LEN];
};

void vmgenid_init(struct vmgenid *g, uint64_t gpa, struct irq_line irq)
{
	memset(g, 0, sizeof(*g));
	g->present = true;
	g->gpa = gpa;
	g->irq = irq;
}

int vmgenid_set(struct vmgenid *g, const struct guest_mem *mem, const uint8_t id[VMGENID_LEN])
{
	if (!g->present)
		return -ENODEV;
	if (guest_mem_write(mem, g->gpa, id, VMGENID_LEN) < 0)
		return -EFAULT;
	memcpy(g->id, id, VMGENID_LEN);
	return 0;
}

void vmgenid_notify(const struct vmgenid *g)
{
	if (!g->present)
		return;
	irq_line_set(&g->irq, 1);
	irq_line_set(&g->irq, 0);
}

int vmgenid_generate(uint8_t id[VMGENID_LEN])
{
	if (getrandom(id, VMGENID_LEN, 0) != VMGENID_LEN)
		return -errno ? -errno : -EIO;
	id[6] = (uint8_t)((id[6] & 0x0f) | 0x40); /* version 4 */
	id[8] = (uint8_t)((id[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	return 0;
}

void vmgenid_format(const uint8_t id[VMGENID_LEN], char out[VMGENID_STR_LEN])
{
	char *p = out;
	for (int i = 0; i < VMGENID_LEN; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		p += snprintf(p, 3, "%02x", id[i]);
	}
	*p = 0;
}

long vmgenid_save(const struct vmgenid *g, void *buf, size_t cap)
{
	struct saved_vmgenid s = { .magic = SAVE_MAGIC, .version = SAVE_VERSION, .gpa = g->gpa };
	memcpy(s.id, g->id, VMGENID_LEN);
	if (cap < sizeof(s))
		return -ENOSPC;
	memcpy(buf, &s, sizeof(s));
	return (long)sizeof(s);
}

int vmgenid_load(struct vmgenid *g, const void *buf, size_t len)
{
	struct saved_vmgenid s;
	if (len != sizeof(s))
		return -EINVAL;
	memcpy(&s, buf, sizeof(s));
	/* The address is the guest's own ACPI tables' word: it must be the one this vmon puts there. */
	if (s.magic != SAVE_MAGIC || s.version != SAVE_VERSION || s.gpa != g->gpa)
		return -EINVAL;
	memcpy(g->id, s.id, VMGENID_LEN);
	g->present = true;
	return 0;
}
