/*
 * MSI-X for a PCI device: the capability, the vector table and the pending-bit array (PBA) in
 * one BAR, and one KVM GSI per vector, routed as an MSI and fed by an eventfd (irqfd).
 *
 * Device code raises vector v with msix_notify() (or by writing msix_eventfd() itself) from any
 * thread; on hardware KVM that is one eventfd write and no exit. While the vector is masked
 * (its own mask bit, the function mask, or MSI-X disabled), vmon detaches the irqfd, so the
 * eventfd just counts: that count is the vector's PBA bit, and unmasking delivers it.
 */
#ifndef VMON_BUS_MSIX_H
#define VMON_BUS_MSIX_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus/pci.h"
#include "vm/irq_routing.h"

#define MSIX_MAX_VECTORS 128
#define MSIX_ENTRY_SIZE 16
#define MSIX_TABLE_OFFSET 0x000
#define MSIX_PBA_OFFSET 0x800
#define MSIX_BAR_SIZE 0x1000

/* Message control bits (capability offset + 2). */
#define MSIX_CTRL_ENABLE 0x8000
#define MSIX_CTRL_FUNCTION_MASK 0x4000
#define MSIX_ENTRY_CTRL_MASKED 0x1

struct msix_vector {
	uint32_t addr_lo, addr_hi, data, ctrl; /* the guest-visible table entry */
	int gsi;    /* KVM GSI, or -1 */
	int efd;    /* the eventfd devices signal */
	bool attached; /* irqfd assigned: signals go straight to the guest */
	uint64_t routed_addr; uint32_t routed_data; /* what the GSI's route says, when attached */
};

struct msix {
	struct pci_device *pci;
	uint8_t cap;          /* capability offset in configuration space */
	int bar;
	uint16_t nvectors;
	struct msix_vector *v;
	struct irq_routing *routing;
	int vm_fd;            /* -1: no KVM (unit tests): vectors are never attached */
	pthread_mutex_t lock;
};

/*
 * Adds the MSI-X capability to d and declares BAR `bar` (MSIX_BAR_SIZE bytes) holding the table
 * and PBA; allocates a GSI and an eventfd per vector. All vectors start masked, MSI-X disabled.
 * The device's config_written hook must call msix_config_written(). Returns 0 or a negative errno.
 */
int msix_init(struct msix *m, struct pci_device *d, int bar, uint16_t nvectors, struct irq_routing *routing,
	      int vm_fd);
void msix_destroy(struct msix *m);

/* To be called from the PCI device's config_written hook: reacts to enable/function-mask changes. */
void msix_config_written(struct msix *m, uint32_t off, uint32_t len);

/* Signals vector v (ignored if v is out of range). Safe from any thread. */
void msix_notify(struct msix *m, uint16_t v);
/* The eventfd behind vector v, or -1. */
int msix_eventfd(const struct msix *m, uint16_t v);
/* True while the vector's PBA bit is set (masked and signalled). */
bool msix_pending(struct msix *m, uint16_t v);

/* Back to power-on state: table cleared, every vector masked, MSI-X disabled, nothing pending. */
void msix_reset(struct msix *m);

/* The BAR's MMIO handlers (table and PBA). */
extern const struct device_ops msix_bar_ops;

#endif
