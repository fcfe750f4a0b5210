#include "vm/irq_routing.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "lib/log.h"

#define COMP "irq"
#define IOAPIC_PINS 24
#define PIC_IRQS 16
#define MAX_LEGACY (PIC_IRQS + IOAPIC_PINS)
#define MAX_ENTRIES (MAX_LEGACY + IRQ_ROUTING_MAX_MSI)

/*
 * KVM's default routing sends GSI n to I/O APIC pin n, but on PC chipsets (and in vmon's ACPI
 * MADT and MP table) the PIT's IRQ 0 arrives on pin 2. Route as a PC does: GSI 0-15 to the
 * 8259s, GSI 0 to pin 2, every other GSI to its own pin; pin 2's own GSI (the cascade) goes nowhere.
 */
static unsigned int legacy_entries(struct kvm_irq_routing_entry *e)
{
	unsigned int n = 0;
	for (unsigned int gsi = 0; gsi < PIC_IRQS; gsi++) {
		if (gsi == 2)
			continue;
		memset(&e[n], 0, sizeof(e[n]));
		e[n].gsi = gsi;
		e[n].type = KVM_IRQ_ROUTING_IRQCHIP;
		e[n].u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
		e[n].u.irqchip.pin = gsi % 8;
		n++;
	}
	for (unsigned int gsi = 0; gsi < IOAPIC_PINS; gsi++) {
		if (gsi == 2)
			continue;
		memset(&e[n], 0, sizeof(e[n]));
		e[n].gsi = gsi;
		e[n].type = KVM_IRQ_ROUTING_IRQCHIP;
		e[n].u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
		e[n].u.irqchip.pin = gsi == 0 ? 2 : gsi;
		n++;
	}
	return n;
}

static int commit(int vm_fd, const struct kvm_irq_routing_entry *e, unsigned int n)
{
	if (vm_fd < 0)
		return 0;
	struct kvm_irq_routing *r = calloc(1, sizeof(*r) + (size_t)n * sizeof(*e));
	if (!r)
		return -ENOMEM;
	r->nr = n;
	memcpy(r->entries, e, (size_t)n * sizeof(*e));
	int rc = ioctl(vm_fd, KVM_SET_GSI_ROUTING, r) < 0 ? -errno : 0;
	free(r);
	if (rc)
		log_error(COMP, "cannot set the interrupt routing (KVM_SET_GSI_ROUTING, %u routes): %s", n,
			  strerror(-rc));
	return rc;
}

int irq_routing_commit_legacy(int vm_fd)
{
	struct kvm_irq_routing_entry e[MAX_LEGACY];
	return commit(vm_fd, e, legacy_entries(e));
}

int irq_routing_init(struct irq_routing *r, int vm_fd)
{
	memset(r, 0, sizeof(*r));
	r->vm_fd = vm_fd;
	r->entries = calloc(MAX_ENTRIES, sizeof(*r->entries));
	if (!r->entries)
		return -ENOMEM;
	r->nlegacy = r->n = legacy_entries(r->entries);
	pthread_mutex_init(&r->lock, NULL);
	return 0;
}

void irq_routing_destroy(struct irq_routing *r)
{
	if (!r->entries)
		return;
	free(r->entries);
	r->entries = NULL;
	pthread_mutex_destroy(&r->lock);
}

static bool gsi_allocated(const struct irq_routing *r, unsigned int gsi)
{
	if (gsi < IRQ_ROUTING_FIRST_MSI_GSI || gsi >= IRQ_ROUTING_FIRST_MSI_GSI + IRQ_ROUTING_MAX_MSI)
		return false;
	unsigned int i = gsi - IRQ_ROUTING_FIRST_MSI_GSI;
	return r->msi_used[i / 8] & (1u << (i % 8));
}

int irq_routing_alloc_msi_gsi(struct irq_routing *r)
{
	pthread_mutex_lock(&r->lock);
	for (unsigned int i = 0; i < IRQ_ROUTING_MAX_MSI; i++) {
		if (!(r->msi_used[i / 8] & (1u << (i % 8)))) {
			r->msi_used[i / 8] |= (uint8_t)(1u << (i % 8));
			pthread_mutex_unlock(&r->lock);
			return (int)(IRQ_ROUTING_FIRST_MSI_GSI + i);
		}
	}
	pthread_mutex_unlock(&r->lock);
	log_error(COMP, "all %d MSI interrupt routes are in use: attach fewer devices or queues", IRQ_ROUTING_MAX_MSI);
	return -ENOSPC;
}

/* Caller holds the lock. Index of gsi's MSI entry, or -1. */
static int find_msi(const struct irq_routing *r, unsigned int gsi)
{
	for (unsigned int i = r->nlegacy; i < r->n; i++)
		if (r->entries[i].gsi == gsi)
			return (int)i;
	return -1;
}

/* Caller holds the lock. */
static bool remove_msi(struct irq_routing *r, unsigned int gsi)
{
	int i = find_msi(r, gsi);
	if (i < 0)
		return false;
	r->entries[i] = r->entries[r->n - 1];
	r->n--;
	return true;
}

void irq_routing_free_msi_gsi(struct irq_routing *r, unsigned int gsi)
{
	pthread_mutex_lock(&r->lock);
	if (gsi_allocated(r, gsi)) {
		if (remove_msi(r, gsi))
			commit(r->vm_fd, r->entries, r->n);
		unsigned int i = gsi - IRQ_ROUTING_FIRST_MSI_GSI;
		r->msi_used[i / 8] &= (uint8_t)~(1u << (i % 8));
	}
	pthread_mutex_unlock(&r->lock);
}

int irq_routing_set_msi(struct irq_routing *r, unsigned int gsi, uint64_t address, uint32_t data)
{
	pthread_mutex_lock(&r->lock);
	if (!gsi_allocated(r, gsi)) {
		pthread_mutex_unlock(&r->lock);
		return -EINVAL;
	}
	int i = find_msi(r, gsi);
	bool added = i < 0;
	if (added)
		i = (int)r->n++;
	struct kvm_irq_routing_entry *e = &r->entries[i];
	bool same = !added && e->gsi == gsi && e->type == KVM_IRQ_ROUTING_MSI && e->u.msi.address_lo == (uint32_t)address &&
		    e->u.msi.address_hi == (uint32_t)(address >> 32) && e->u.msi.data == data;
	int rc = 0;
	if (!same) {
		memset(e, 0, sizeof(*e));
		e->gsi = gsi;
		e->type = KVM_IRQ_ROUTING_MSI;
		e->u.msi.address_lo = (uint32_t)address;
		e->u.msi.address_hi = (uint32_t)(address >> 32);
		e->u.msi.data = data;
		rc = commit(r->vm_fd, r->entries, r->n);
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

int irq_routing_clear_msi(struct irq_routing *r, unsigned int gsi)
{
	pthread_mutex_lock(&r->lock);
	int rc = remove_msi(r, gsi) ? commit(r->vm_fd, r->entries, r->n) : 0;
	pthread_mutex_unlock(&r->lock);
	return rc;
}

unsigned int irq_routing_count(struct irq_routing *r)
{
	pthread_mutex_lock(&r->lock);
	unsigned int n = r->n;
	pthread_mutex_unlock(&r->lock);
	return n;
}
