/*
 * The virtio 1.x "modern" PCI transport (virtio 1.x section 4.1) and the interface every
 * virtio device (rng, blk, net, console, vsock) implements.
 *
 * A device is a struct of its own plus a `struct virtio_device_ops`; the transport owns the
 * PCI function, feature negotiation, device status and reset, the virtqueues, MSI-X and the
 * queue notifications. BAR0 (16 KiB) holds the common configuration, ISR, device-specific
 * configuration and notification areas; BAR1 holds the MSI-X table and PBA. Vector 0 is the
 * configuration-change vector Linux picks first; queues take vectors 1..num_queues.
 *
 * Device status follows virtio 1.2 (2.1, 3.1.1): only writing 0 resets. A write that clears
 * another bit, or sets DRIVER_OK without FEATURES_OK, changes nothing and sets DEVICE_NEEDS_RESET
 * (with a configuration-change interrupt once DRIVER_OK was set). The driver's features are
 * fixed at FEATURES_OK, which is refused unless they are a subset of the offered ones with
 * VERSION_1; the queues' size and addresses are fixed once enabled, and all of them at DRIVER_OK.
 *
 * Threads: the guest's register accesses arrive on vCPU threads. Everything that touches
 * virtqueues runs on the event-loop thread: queue_notify, and also reset and activate, which
 * the transport forwards to the loop thread and waits for. So a device never sees its queues
 * from two threads at once. Only config_read/config_write run on vCPU threads (under the
 * transport's lock, so they are serialised with each other).
 *
 * Writing a device:
 *   static const struct virtio_device_ops my_ops = { .name = "rng", .device_id = VIRTIO_ID_RNG, ... };
 *   virtio_pci_create(&deps, &my_ops, my, &my->vdev);
 *   // on the loop thread, in queue_notify:
 *   struct iovec iov[N]; struct vq_chain c = { .iov = iov, .iov_cap = N };
 *   while ((rc = virtio_pci_pop(my->vdev, q, &c)) > 0) { ...fill c...; virtio_pci_push(my->vdev, q, c.head, written); }
 *   virtio_pci_notify(my->vdev, q);   // interrupt, if the driver wants one
 */
#ifndef VMON_VIRTIO_VIRTIO_PCI_H
#define VMON_VIRTIO_VIRTIO_PCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/event_loop.h"
#include "bus/msix.h"
#include "bus/pci.h"
#include "memory/guest_mem.h"
#include "virtio/virtqueue.h"
#include "vm/irq_routing.h"

/* Device IDs (virtio 1.x section 5). */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG 4
#define VIRTIO_ID_BALLOON 5
#define VIRTIO_ID_VSOCK 19

/* Transport feature bits (the transport offers VERSION_1 and the ring features itself). */
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_BIT(n) (1ull << (n))

/* Device status bits. */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

#define VIRTIO_MSI_NO_VECTOR 0xffff
#define VIRTIO_PCI_MAX_QUEUES 64
#define VIRTIO_PCI_CONFIG_MAX 0x1000 /* largest device-specific configuration */

/* BAR0 layout. */
#define VIRTIO_PCI_COMMON_OFF 0x0000
#define VIRTIO_PCI_COMMON_LEN 0x38
#define VIRTIO_PCI_ISR_OFF 0x1000
#define VIRTIO_PCI_DEVICE_OFF 0x2000
#define VIRTIO_PCI_NOTIFY_OFF 0x3000
#define VIRTIO_PCI_NOTIFY_MULTIPLIER 4 /* queue q is notified at NOTIFY_OFF + 4 * q */
#define VIRTIO_PCI_BAR0_SIZE 0x4000

struct virtio_device; /* the transport's per-device object */

struct virtio_device_ops {
	const char *name;          /* short name for logs and the PCI device: "rng", "blk", ... */
	uint16_t device_id;        /* VIRTIO_ID_* */
	uint32_t pci_class;        /* 24-bit PCI class code, e.g. 0x010000 for block, 0x020000 for net */
	uint16_t num_queues;       /* 1..VIRTIO_PCI_MAX_QUEUES */
	uint16_t queue_max_size;   /* per queue, a power of two <= 32768 (256 is typical) */
	/*
	 * Device feature bits (bits 0-23 and device-specific bits above 40); the transport adds
	 * VERSION_1, INDIRECT_DESC and EVENT_IDX. Drivers that do not accept VERSION_1 are refused.
	 */
	uint64_t features;
	uint32_t config_size;      /* bytes of device-specific configuration (0: none), <= VIRTIO_PCI_CONFIG_MAX */

	/*
	 * Device-specific configuration space access; off + len <= config_size is guaranteed.
	 * vCPU thread, under the transport lock. Either may be NULL (reads 0, writes ignored).
	 */
	void (*config_read)(void *dev, uint32_t off, void *data, uint32_t len);
	void (*config_write)(void *dev, uint32_t off, const void *data, uint32_t len);

	/*
	 * The driver made buffers available on queue q (after DRIVER_OK only). Loop thread.
	 * Drain with virtio_pci_pop()/virtio_pci_push(), then virtio_pci_notify().
	 */
	void (*queue_notify)(void *dev, uint16_t q);

	/*
	 * The driver set DRIVER_OK: the negotiated features are in virtio_pci_driver_features() and
	 * the queues are started. Return 0, or a negative errno to put the device in NEEDS_RESET.
	 * Loop thread. May be NULL.
	 */
	int (*activate)(void *dev);

	/*
	 * The driver reset the device (wrote status 0) or vmon resets the VM: drop all in-flight
	 * requests, forget everything negotiated. The queues are reset by the transport afterwards.
	 * Loop thread. May be NULL.
	 */
	void (*reset)(void *dev);

	/* Device-specific state for snapshots (not the queues: the transport saves those). May be NULL. */
	long (*save)(void *dev, void *buf, size_t cap);
	int (*load)(void *dev, const void *buf, size_t len);
};

/* What a virtio device needs from the VM. */
struct virtio_pci_deps {
	struct pci_bus *pci;
	struct irq_routing *routing;  /* NULL: no interrupts (tests) */
	struct event_loop *loop;
	const struct guest_mem *mem;
	int vm_fd;                    /* for ioeventfds and irqfds; -1 without KVM (tests) */
};

/*
 * Creates the PCI function for a device and plugs it into the bus. dev is passed back to every
 * op. Returns 0 and *out, or a negative errno (logged).
 */
int virtio_pci_create(const struct virtio_pci_deps *deps, const struct virtio_device_ops *ops, void *dev,
		      struct virtio_device **out);
/* Unplugs and frees; the event loop must be stopped (or the device's fds not firing). */
void virtio_pci_destroy(struct virtio_device *vdev);

/* ---- For device code on the loop thread ---- */

/*
 * Pops the next chain of queue q (see vq_pop()). Returns 1, 0 when empty or the device is not
 * running, or a negative errno when the ring is malformed, in which case the transport has
 * already put the device in NEEDS_RESET and logged a rate-limited warning: just stop.
 */
int virtio_pci_pop(struct virtio_device *vdev, uint16_t q, struct vq_chain *c);
/* Returns a chain to the driver with len bytes written into its writable part. */
void virtio_pci_push(struct virtio_device *vdev, uint16_t q, uint16_t head, uint32_t len);
/* Interrupts the guest for queue q if the driver wants it (event index / NO_INTERRUPT). */
void virtio_pci_notify(struct virtio_device *vdev, uint16_t q);
/* The queue itself, e.g. for vq_disable_notify()/vq_enable_notify(). */
struct virtqueue *virtio_pci_queue(struct virtio_device *vdev, uint16_t q);

/* The device changed its configuration space: bumps config_generation and interrupts. Any thread. */
void virtio_pci_config_changed(struct virtio_device *vdev);
/* Marks the device broken (DEVICE_NEEDS_RESET) and tells the driver; why is logged, rate-limited. */
void virtio_pci_set_needs_reset(struct virtio_device *vdev, const char *why);

/*
 * The features the driver negotiated, as they were when the device was activated (0 before
 * DRIVER_OK and after a reset). Any thread; the loop thread sees one consistent value.
 */
uint64_t virtio_pci_driver_features(const struct virtio_device *vdev);
bool virtio_pci_has_feature(const struct virtio_device *vdev, unsigned int bit);
/* True between DRIVER_OK and the next reset, unless NEEDS_RESET was set. */
bool virtio_pci_running(const struct virtio_device *vdev);
const struct guest_mem *virtio_pci_mem(const struct virtio_device *vdev);
struct event_loop *virtio_pci_loop(const struct virtio_device *vdev);

/* The device's PCI function (for tests and the snapshot code). */
struct pci_device *virtio_pci_function(struct virtio_device *vdev);

/*
 * Whole-device state (transport, queues, then the device's own save()) for snapshots, taken
 * while the VM is paused and the loop is idle. Return bytes written / 0, or a negative errno.
 */
long virtio_pci_save(struct virtio_device *vdev, void *buf, size_t cap);
int virtio_pci_load(struct virtio_device *vdev, const void *buf, size_t len);

#endif
