/*
 * The ACPI "Virtual Machine Generation ID" device: 16 bytes in guest memory that change every
 * time the VM is restored or cloned from a snapshot, so the guest knows it may be one of many
 * copies (Linux 5.18+ reseeds its random number generator; drivers/virt/vmgenid.c).
 *
 * The DSDT (src/arch/x86/acpi.c) declares \_SB.VGEN (_HID "VMGENCTR", _CID "VM_Gen_Counter")
 * whose ADDR method returns the buffer's guest-physical address, and a Generic Event Device
 * (ACPI0013) on an edge-triggered interrupt whose _EVT does Notify(\_SB.VGEN, 0x80). The buffer
 * is in the BIOS area that the e820 map marks reserved, so the guest never uses it as RAM.
 *
 * Its state (whether the guest has the device, the buffer's address, the current ID) is saved
 * with snapshots (src/state/device_state.c, section "dev.vmgenid").
 */
#ifndef VMON_DEVICES_VMGENID_H
#define VMON_DEVICES_VMGENID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/device.h"
#include "memory/guest_mem.h"

#define VMGENID_LEN 16
#define VMGENID_STR_LEN 37 /* xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx and the NUL */

struct vmgenid {
	bool present;              /* the guest's ACPI tables describe the device */
	uint64_t gpa;              /* where the guest reads the ID */
	uint8_t id[VMGENID_LEN];
	struct irq_line irq;       /* the Generic Event Device's interrupt (edge) */
};

/* The device as a new VM gets it: at gpa, notifying through irq; no ID yet. */
void vmgenid_init(struct vmgenid *g, uint64_t gpa, struct irq_line irq);

/*
 * Makes id the current ID and writes it into guest memory. Returns 0, or -EFAULT if the buffer
 * is not guest RAM, -ENODEV if the guest has no such device (a snapshot of an older vmon).
 */
int vmgenid_set(struct vmgenid *g, const struct guest_mem *mem, const uint8_t id[VMGENID_LEN]);

/* Tells the guest the ID changed: one edge on the event device's interrupt. */
void vmgenid_notify(const struct vmgenid *g);

/* A random ID (an RFC 4122 version 4 UUID, as the ACPI specification suggests). 0 or -errno. */
int vmgenid_generate(uint8_t id[VMGENID_LEN]);

/* The ID as a UUID string, bytes in the order the guest sees them. */
void vmgenid_format(const uint8_t id[VMGENID_LEN], char out[VMGENID_STR_LEN]);

/* Snapshot state: bytes written or -ENOSPC; 0 or -EINVAL for a malformed blob. */
long vmgenid_save(const struct vmgenid *g, void *buf, size_t cap);
int vmgenid_load(struct vmgenid *g, const void *buf, size_t len);

#endif
