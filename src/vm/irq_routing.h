/*
 * The VM's interrupt routing table (KVM_SET_GSI_ROUTING): the PC's legacy routes (GSI 0-15 to
 * the 8259s, GSI n to I/O APIC pin n, the PIT's GSI 0 to pin 2) plus one MSI route per MSI-X
 * vector in use. KVM replaces the whole table on every commit, so every change goes through
 * this one object, which holds all entries and commits under a lock.
 */
#ifndef VMON_VM_IRQ_ROUTING_H
#define VMON_VM_IRQ_ROUTING_H

#include <pthread.h>
#include <stdint.h>

/* GSIs below this are the I/O APIC's pins; MSI routes get GSIs from here up. */
#define IRQ_ROUTING_FIRST_MSI_GSI 24
#define IRQ_ROUTING_MAX_MSI 1024

struct kvm_irq_routing_entry;

struct irq_routing {
	int vm_fd;                 /* -1: keep the table but never call KVM (unit tests) */
	pthread_mutex_t lock;
	struct kvm_irq_routing_entry *entries; /* legacy entries first, then MSI routes */
	unsigned int n;
	unsigned int nlegacy;
	uint8_t msi_used[IRQ_ROUTING_MAX_MSI / 8]; /* allocated MSI GSIs, bit per GSI from FIRST_MSI_GSI */
};

/* Commits only the legacy routes: what vm_create() sets up before any device exists. */
int irq_routing_commit_legacy(int vm_fd);

/* Builds the legacy routes (does not commit). Returns 0 or -ENOMEM. */
int irq_routing_init(struct irq_routing *r, int vm_fd);
void irq_routing_destroy(struct irq_routing *r);

/* Reserves a GSI for an MSI vector (no route yet). Returns the GSI or -ENOSPC. */
int irq_routing_alloc_msi_gsi(struct irq_routing *r);
/* Removes the GSI's route (if any), commits, and frees the GSI. */
void irq_routing_free_msi_gsi(struct irq_routing *r, unsigned int gsi);

/* Sets (adds or replaces) the MSI route of an allocated GSI and commits. 0 or a negative errno. */
int irq_routing_set_msi(struct irq_routing *r, unsigned int gsi, uint64_t address, uint32_t data);
/* Removes the MSI route of a GSI and commits (no-op if it has none). */
int irq_routing_clear_msi(struct irq_routing *r, unsigned int gsi);

/* Number of routes in the table (legacy + MSI), for tests. */
unsigned int irq_routing_count(struct irq_routing *r);

#endif
