#include "virtio/virtio_pci.h"

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

#define COMP "virtio"

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040 /* modern devices: 0x1040 + device ID */
#define VIRTIO_PCI_REVISION 1
#define VIRTIO_PCI_SUBSYS_ID 0x40

/* virtio_pci_cap.cfg_type */
enum { CAP_COMMON = 1, CAP_NOTIFY = 2, CAP_ISR = 3, CAP_DEVICE = 4 };

/* Common configuration register offsets (virtio 1.x 4.1.4.3). */
enum {
	CC_DFSELECT = 0x00, CC_DF = 0x04, CC_GFSELECT = 0x08, CC_GF = 0x0c, CC_MSIX_CONFIG = 0x10,
	CC_NUM_QUEUES = 0x12, CC_STATUS = 0x14, CC_CFG_GENERATION = 0x15, CC_Q_SELECT = 0x16,
	CC_Q_SIZE = 0x18, CC_Q_MSIX = 0x1a, CC_Q_ENABLE = 0x1c, CC_Q_NOTIFY_OFF = 0x1e,
	CC_Q_DESC = 0x20, CC_Q_DRIVER = 0x28, CC_Q_DEVICE = 0x30,
};

#define BAR_COMMON 0
#define BAR_MSIX 1
#define ISR_QUEUE 1
#define ISR_CONFIG 2

struct vp_queue {
	struct virtqueue vq;
	int efd;                   /* guest notifications: ioeventfd, or written by the slow path */
	struct virtio_device *vdev;
	uint16_t index;
};

struct virtio_device {
	const struct virtio_device_ops *ops;
	void *dev;
	struct virtio_pci_deps deps;
	struct pci_device pci;
	struct msix msix;
	bool msix_ready;
	uint64_t offered;          /* device features plus the transport's */

	/* Common configuration, under lock (vCPU threads). */
	pthread_mutex_t lock;
	uint32_t dfselect, gfselect;
	uint64_t driver_features;
	_Atomic uint16_t msix_config;
	_Atomic uint8_t status;
	_Atomic uint8_t config_generation;
	_Atomic uint8_t isr;
	uint16_t queue_select;
	_Atomic bool activated;    /* DRIVER_OK handled on the loop thread */
	/*
	 * driver_features as they were at activation, 0 before: what the device and the queues
	 * work with. vCPU threads write driver_features under the lock while the loop thread
	 * serves requests; the snapshot gives the loop one consistent value without the lock.
	 */
	_Atomic uint64_t active_features;
	struct vp_queue q[VIRTIO_PCI_MAX_QUEUES];

	uint64_t notify_base;      /* guest address of the notify area, 0 while BAR0 is unmapped */
	bool ioeventfds;           /* registered with KVM at notify_base */
	struct log_ratelimit rl;
};

static uint16_t nq(const struct virtio_device *vdev) { return vdev->ops->num_queues; }

/* ---- interrupts ---- */

static void raise_vector(struct virtio_device *vdev, uint16_t vector)
{
	if (vector != VIRTIO_MSI_NO_VECTOR && vdev->msix_ready)
		msix_notify(&vdev->msix, vector);
}

void virtio_pci_notify(struct virtio_device *vdev, uint16_t q)
{
	if (q >= nq(vdev) || !vq_should_notify(&vdev->q[q].vq))
		return;
	atomic_fetch_or(&vdev->isr, ISR_QUEUE);
	raise_vector(vdev, __atomic_load_n(&vdev->q[q].vq.msix_vector, __ATOMIC_RELAXED));
}

void virtio_pci_config_changed(struct virtio_device *vdev)
{
	atomic_fetch_add(&vdev->config_generation, 1);
	if (!(atomic_load(&vdev->status) & VIRTIO_STATUS_DRIVER_OK))
		return;
	atomic_fetch_or(&vdev->isr, ISR_CONFIG);
	raise_vector(vdev, atomic_load(&vdev->msix_config));
}

void virtio_pci_set_needs_reset(struct virtio_device *vdev, const char *why)
{
	log_warn_ratelimited(&vdev->rl, COMP, "%s: %s; the device needs a reset by the guest driver (DEVICE_NEEDS_RESET)",
			     vdev->ops->name, why);
	uint8_t old = atomic_fetch_or(&vdev->status, VIRTIO_STATUS_NEEDS_RESET);
	if ((old & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_NEEDS_RESET)) {
		atomic_fetch_or(&vdev->isr, ISR_CONFIG);
		raise_vector(vdev, atomic_load(&vdev->msix_config));
	}
}

/* ---- queue access for devices ---- */

bool virtio_pci_running(const struct virtio_device *vdev)
{
	return atomic_load(&vdev->activated) && !(atomic_load(&vdev->status) & VIRTIO_STATUS_NEEDS_RESET);
}

int virtio_pci_pop(struct virtio_device *vdev, uint16_t q, struct vq_chain *c)
{
	if (q >= nq(vdev) || !virtio_pci_running(vdev) || !vq_ready(&vdev->q[q].vq))
		return 0;
	int rc = vq_pop(&vdev->q[q].vq, c);
	if (rc < 0) {
		char why[96];
		snprintf(why, sizeof(why), "queue %u: %s", q,
			 rc == -ENOBUFS ? "a descriptor chain has more segments than the device accepts"
					: "malformed descriptor ring or chain");
		virtio_pci_set_needs_reset(vdev, why);
	}
	return rc;
}

void virtio_pci_push(struct virtio_device *vdev, uint16_t q, uint16_t head, uint32_t len)
{
	if (q < nq(vdev))
		vq_push(&vdev->q[q].vq, head, len);
}

struct virtqueue *virtio_pci_queue(struct virtio_device *vdev, uint16_t q)
{
	return q < nq(vdev) ? &vdev->q[q].vq : NULL;
}

uint64_t virtio_pci_driver_features(const struct virtio_device *vdev) { return atomic_load(&vdev->active_features); }

bool virtio_pci_has_feature(const struct virtio_device *vdev, unsigned int bit)
{
	return bit < 64 && (virtio_pci_driver_features(vdev) & VIRTIO_F_BIT(bit));
}

const struct guest_mem *virtio_pci_mem(const struct virtio_device *vdev) { return vdev->deps.mem; }
struct event_loop *virtio_pci_loop(const struct virtio_device *vdev) { return vdev->deps.loop; }
struct pci_device *virtio_pci_function(struct virtio_device *vdev) { return &vdev->pci; }

/* ---- loop-thread side ---- */

static void on_queue_kick(void *opaque, uint32_t events)
{
	(void)events;
	struct vp_queue *q = opaque;
	uint64_t n;
	if (read(q->efd, &n, sizeof(n)) < 0)
		return;
	struct virtio_device *vdev = q->vdev;
	if (virtio_pci_running(vdev) && vq_ready(&q->vq) && vdev->ops->queue_notify)
		vdev->ops->queue_notify(vdev->dev, q->index);
}

static void start_queues(struct virtio_device *vdev)
{
	bool event_idx = virtio_pci_has_feature(vdev, VIRTIO_RING_F_EVENT_IDX);
	bool indirect = virtio_pci_has_feature(vdev, VIRTIO_RING_F_INDIRECT_DESC);
	for (uint16_t i = 0; i < nq(vdev); i++) {
		struct virtqueue *vq = &vdev->q[i].vq;
		if (!vq->enabled)
			continue;
		if (vq_start(vq, vdev->deps.mem, event_idx, indirect)) {
			char why[128];
			snprintf(why, sizeof(why),
				 "queue %u: size %u or ring addresses 0x%llx/0x%llx/0x%llx are not valid guest RAM", i,
				 vq->size, (unsigned long long)vq->desc_gpa, (unsigned long long)vq->avail_gpa,
				 (unsigned long long)vq->used_gpa);
			virtio_pci_set_needs_reset(vdev, why);
		}
	}
}

static void do_activate(void *opaque)
{
	struct virtio_device *vdev = opaque;
	/*
	 * Another vCPU may have reset the device (or it was activated already) between the status
	 * write and this call: activate only a device that is still waiting for it.
	 */
	pthread_mutex_lock(&vdev->lock);
	uint8_t status = atomic_load(&vdev->status);
	bool go = !atomic_load(&vdev->activated) && (status & VIRTIO_STATUS_DRIVER_OK) &&
		  (status & VIRTIO_STATUS_FEATURES_OK) && !(status & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED));
	if (go)
		atomic_store(&vdev->active_features, vdev->driver_features);
	pthread_mutex_unlock(&vdev->lock);
	if (!go)
		return;
	start_queues(vdev);
	atomic_store(&vdev->activated, true);
	if (vdev->ops->activate) {
		int rc = vdev->ops->activate(vdev->dev);
		if (rc) {
			char why[96];
			snprintf(why, sizeof(why), "activation failed: %s", strerror(-rc));
			virtio_pci_set_needs_reset(vdev, why);
		}
	}
	/* Buffers made available before DRIVER_OK were not announced: look once. */
	for (uint16_t i = 0; i < nq(vdev) && vdev->ops->queue_notify; i++)
		if (virtio_pci_running(vdev) && vq_ready(&vdev->q[i].vq))
			vdev->ops->queue_notify(vdev->dev, i);
}

static void do_reset(void *opaque)
{
	struct virtio_device *vdev = opaque;
	atomic_store(&vdev->activated, false);
	atomic_store(&vdev->active_features, 0);
	if (vdev->ops->reset)
		vdev->ops->reset(vdev->dev);
	pthread_mutex_lock(&vdev->lock);
	for (uint16_t i = 0; i < nq(vdev); i++) {
		vq_reset(&vdev->q[i].vq);
		uint64_t n;
		if (read(vdev->q[i].efd, &n, sizeof(n)) < 0)
			n = 0;
	}
	vdev->dfselect = vdev->gfselect = 0;
	vdev->driver_features = 0;
	vdev->queue_select = 0;
	atomic_store(&vdev->msix_config, VIRTIO_MSI_NO_VECTOR);
	atomic_store(&vdev->isr, 0);
	atomic_store(&vdev->status, 0);
	pthread_mutex_unlock(&vdev->lock);
}

/* ---- common configuration ---- */

static struct virtqueue *selected_queue(struct virtio_device *vdev)
{
	return vdev->queue_select < nq(vdev) ? &vdev->q[vdev->queue_select].vq : NULL;
}

/* Caller holds the lock. The register file as the guest sees it. */
static void common_image(struct virtio_device *vdev, uint8_t *img)
{
	memset(img, 0, VIRTIO_PCI_COMMON_LEN);
	pci_put32(img + CC_DFSELECT, vdev->dfselect);
	pci_put32(img + CC_DF, vdev->dfselect < 2 ? (uint32_t)(vdev->offered >> (32 * vdev->dfselect)) : 0);
	pci_put32(img + CC_GFSELECT, vdev->gfselect);
	pci_put32(img + CC_GF, vdev->gfselect < 2 ? (uint32_t)(vdev->driver_features >> (32 * vdev->gfselect)) : 0);
	pci_put16(img + CC_MSIX_CONFIG, atomic_load(&vdev->msix_config));
	pci_put16(img + CC_NUM_QUEUES, nq(vdev));
	img[CC_STATUS] = atomic_load(&vdev->status);
	img[CC_CFG_GENERATION] = atomic_load(&vdev->config_generation);
	pci_put16(img + CC_Q_SELECT, vdev->queue_select);
	struct virtqueue *vq = selected_queue(vdev);
	if (!vq)
		return; /* queue_size 0: no such queue */
	pci_put16(img + CC_Q_SIZE, vq->size);
	pci_put16(img + CC_Q_MSIX, vq->msix_vector);
	pci_put16(img + CC_Q_ENABLE, vq->enabled);
	pci_put16(img + CC_Q_NOTIFY_OFF, vdev->queue_select);
	pci_put32(img + CC_Q_DESC, (uint32_t)vq->desc_gpa);
	pci_put32(img + CC_Q_DESC + 4, (uint32_t)(vq->desc_gpa >> 32));
	pci_put32(img + CC_Q_DRIVER, (uint32_t)vq->avail_gpa);
	pci_put32(img + CC_Q_DRIVER + 4, (uint32_t)(vq->avail_gpa >> 32));
	pci_put32(img + CC_Q_DEVICE, (uint32_t)vq->used_gpa);
	pci_put32(img + CC_Q_DEVICE + 4, (uint32_t)(vq->used_gpa >> 32));
}

static uint16_t valid_vector(struct virtio_device *vdev, uint16_t v)
{
	/* A vector the device cannot use reads back as NO_VECTOR, which tells the driver so. */
	return vdev->msix_ready && v < vdev->msix.nvectors ? v : VIRTIO_MSI_NO_VECTOR;
}

static bool touches(uint32_t off, uint32_t len, uint32_t reg, uint32_t reg_len)
{
	return off < reg + reg_len && reg < off + len;
}

static uint64_t get64(const uint8_t *p) { return pci_get32(p) | (uint64_t)pci_get32(p + 4) << 32; }

enum status_action { ACT_NONE, ACT_RESET, ACT_ACTIVATE, ACT_NEEDS_RESET };

/*
 * Caller holds the lock. The device status rules of virtio 1.2 (2.1, 3.1.1): only writing 0
 * resets; the driver never clears a bit otherwise (that would let it renegotiate features or
 * re-activate live queues), and DRIVER_OK needs FEATURES_OK first. A write that breaks them
 * changes nothing and puts the device in NEEDS_RESET; *why says which rule it broke.
 */
static enum status_action write_status(struct virtio_device *vdev, uint8_t val, const char **why)
{
	uint8_t old = atomic_load(&vdev->status);
	if (val == 0)
		return ACT_RESET;
	/* NEEDS_RESET is the device's bit: the driver can neither set nor clear it. */
	val = (uint8_t)((val & ~VIRTIO_STATUS_NEEDS_RESET) | (old & VIRTIO_STATUS_NEEDS_RESET));
	if (old & ~val) {
		*why = "the driver cleared device status bits without a reset (writing 0)";
		return ACT_NEEDS_RESET;
	}
	if ((val & VIRTIO_STATUS_DRIVER_OK) && !(val & VIRTIO_STATUS_FEATURES_OK)) {
		*why = "the driver set DRIVER_OK before FEATURES_OK";
		return ACT_NEEDS_RESET;
	}
	if ((val & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
		uint64_t unknown = vdev->driver_features & ~vdev->offered;
		if (unknown || !(vdev->driver_features & VIRTIO_F_BIT(VIRTIO_F_VERSION_1))) {
			static struct log_ratelimit rl;
			log_warn_ratelimited(&rl, COMP,
					     "%s: the driver %s; refusing FEATURES_OK (vmon speaks virtio 1.x only)",
					     vdev->ops->name,
					     unknown ? "asked for features the device does not offer"
						     : "did not accept VIRTIO_F_VERSION_1 (a legacy driver)");
			/* The driver reads FEATURES_OK back as clear, as the spec has it (3.1.1 step 6). */
			val &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
			if (val & VIRTIO_STATUS_DRIVER_OK) {
				*why = "the driver set DRIVER_OK with features the device refused";
				return ACT_NEEDS_RESET;
			}
		}
	}
	atomic_store(&vdev->status, val);
	if ((val & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK) &&
	    !(val & (VIRTIO_STATUS_FAILED | VIRTIO_STATUS_NEEDS_RESET)))
		return ACT_ACTIVATE;
	return ACT_NONE;
}

/* Caller holds the lock. Applies a write of [off, off+len) given the updated image. */
static enum status_action apply_common(struct virtio_device *vdev, const uint8_t *img, uint32_t off, uint32_t len,
					const char **why)
{
	enum status_action act = ACT_NONE;
	uint8_t status = atomic_load(&vdev->status);
	if (touches(off, len, CC_DFSELECT, 4))
		vdev->dfselect = pci_get32(img + CC_DFSELECT);
	if (touches(off, len, CC_GFSELECT, 4))
		vdev->gfselect = pci_get32(img + CC_GFSELECT);
	if (touches(off, len, CC_GF, 4) && vdev->gfselect < 2 && !(status & VIRTIO_STATUS_FEATURES_OK)) {
		unsigned int shift = 32 * vdev->gfselect;
		vdev->driver_features = (vdev->driver_features & ~(0xffffffffull << shift)) |
					((uint64_t)pci_get32(img + CC_GF) << shift);
	}
	if (touches(off, len, CC_MSIX_CONFIG, 2))
		atomic_store(&vdev->msix_config, valid_vector(vdev, pci_get16(img + CC_MSIX_CONFIG)));
	if (touches(off, len, CC_STATUS, 1))
		act = write_status(vdev, img[CC_STATUS], why);
	if (touches(off, len, CC_Q_SELECT, 2))
		vdev->queue_select = pci_get16(img + CC_Q_SELECT);
	struct virtqueue *vq = selected_queue(vdev);
	if (!vq)
		return act;
	if (touches(off, len, CC_Q_MSIX, 2))
		__atomic_store_n(&vq->msix_vector, valid_vector(vdev, pci_get16(img + CC_Q_MSIX)), __ATOMIC_RELAXED);
	/* A ring's size and addresses are fixed once it is enabled, and every ring's once the device runs. */
	if (vq->enabled || (status & VIRTIO_STATUS_DRIVER_OK))
		return act;
	if (touches(off, len, CC_Q_SIZE, 2))
		vq->size = pci_get16(img + CC_Q_SIZE);
	if (touches(off, len, CC_Q_DESC, 8))
		vq->desc_gpa = get64(img + CC_Q_DESC);
	if (touches(off, len, CC_Q_DRIVER, 8))
		vq->avail_gpa = get64(img + CC_Q_DRIVER);
	if (touches(off, len, CC_Q_DEVICE, 8))
		vq->used_gpa = get64(img + CC_Q_DEVICE);
	if (touches(off, len, CC_Q_ENABLE, 2) && pci_get16(img + CC_Q_ENABLE) == 1)
		vq->enabled = true;
	return act;
}

static void common_read(struct virtio_device *vdev, uint32_t off, void *data, uint32_t len)
{
	uint8_t img[VIRTIO_PCI_COMMON_LEN];
	pthread_mutex_lock(&vdev->lock);
	common_image(vdev, img);
	pthread_mutex_unlock(&vdev->lock);
	memcpy(data, img + off, len);
}

static void common_write(struct virtio_device *vdev, uint32_t off, const void *data, uint32_t len)
{
	uint8_t img[VIRTIO_PCI_COMMON_LEN];
	pthread_mutex_lock(&vdev->lock);
	common_image(vdev, img);
	memcpy(img + off, data, len);
	const char *why = NULL;
	enum status_action act = apply_common(vdev, img, off, len, &why);
	pthread_mutex_unlock(&vdev->lock);
	/* Reset and activation touch the queues, which belong to the loop thread: run them there. */
	if (act == ACT_RESET)
		event_loop_call(vdev->deps.loop, do_reset, vdev);
	else if (act == ACT_ACTIVATE)
		event_loop_call(vdev->deps.loop, do_activate, vdev);
	else if (act == ACT_NEEDS_RESET)
		virtio_pci_set_needs_reset(vdev, why);
}

/* ---- BAR0 ---- */

static void bar0_read(void *opaque, uint64_t offset, void *data, uint32_t len)
{
	struct virtio_device *vdev = opaque;
	memset(data, 0, len);
	if (offset + len <= VIRTIO_PCI_COMMON_LEN) {
		common_read(vdev, (uint32_t)offset, data, len);
	} else if (offset == VIRTIO_PCI_ISR_OFF) {
		uint8_t isr = atomic_exchange(&vdev->isr, 0); /* reading acknowledges */
		memcpy(data, &isr, 1);
	} else if (offset >= VIRTIO_PCI_DEVICE_OFF && offset + len <= VIRTIO_PCI_DEVICE_OFF + vdev->ops->config_size) {
		if (vdev->ops->config_read) {
			pthread_mutex_lock(&vdev->lock);
			vdev->ops->config_read(vdev->dev, (uint32_t)(offset - VIRTIO_PCI_DEVICE_OFF), data, len);
			pthread_mutex_unlock(&vdev->lock);
		}
	}
}

static void bar0_write(void *opaque, uint64_t offset, const void *data, uint32_t len)
{
	struct virtio_device *vdev = opaque;
	if (offset + len <= VIRTIO_PCI_COMMON_LEN) {
		common_write(vdev, (uint32_t)offset, data, len);
	} else if (offset >= VIRTIO_PCI_DEVICE_OFF && offset + len <= VIRTIO_PCI_DEVICE_OFF + vdev->ops->config_size) {
		if (vdev->ops->config_write) {
			pthread_mutex_lock(&vdev->lock);
			vdev->ops->config_write(vdev->dev, (uint32_t)(offset - VIRTIO_PCI_DEVICE_OFF), data, len);
			pthread_mutex_unlock(&vdev->lock);
		}
	} else if (offset >= VIRTIO_PCI_NOTIFY_OFF &&
		   offset < VIRTIO_PCI_NOTIFY_OFF + (uint64_t)VIRTIO_PCI_NOTIFY_MULTIPLIER * nq(vdev)) {
		/* The slow path, when KVM did not take the write through an ioeventfd. */
		uint16_t q = (uint16_t)((offset - VIRTIO_PCI_NOTIFY_OFF) / VIRTIO_PCI_NOTIFY_MULTIPLIER);
		uint64_t one = 1;
		if (write(vdev->q[q].efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_warn_ratelimited(&vdev->rl, COMP, "%s: queue %u notification lost: %s", vdev->ops->name, q,
					     strerror(errno));
	}
}

static const struct device_ops bar0_ops = { .name = "virtio-pci", .read = bar0_read, .write = bar0_write };

/* ---- ioeventfds follow BAR0 ---- */

static int ioeventfd(struct virtio_device *vdev, uint16_t q, uint64_t base, bool assign)
{
	struct kvm_ioeventfd req = {
		.addr = base + VIRTIO_PCI_NOTIFY_OFF + (uint64_t)VIRTIO_PCI_NOTIFY_MULTIPLIER * q,
		.len = 2, /* the driver writes the 16-bit queue index */
		.fd = vdev->q[q].efd,
		.flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
	};
	return ioctl(vdev->deps.vm_fd, KVM_IOEVENTFD, &req) < 0 ? -errno : 0;
}

static void set_ioeventfds(struct virtio_device *vdev, uint64_t base)
{
	if (vdev->ioeventfds) {
		for (uint16_t q = 0; q < nq(vdev); q++)
			ioeventfd(vdev, q, vdev->notify_base, false);
		vdev->ioeventfds = false;
	}
	vdev->notify_base = base;
	if (!base || vdev->deps.vm_fd < 0)
		return;
	for (uint16_t q = 0; q < nq(vdev); q++) {
		int rc = ioeventfd(vdev, q, base, true);
		if (rc) {
			log_warn_ratelimited(&vdev->rl, COMP, "%s: KVM_IOEVENTFD failed (%s); queue notifications take the slow path",
					     vdev->ops->name, strerror(-rc));
			while (q-- > 0)
				ioeventfd(vdev, q, base, false);
			return;
		}
	}
	vdev->ioeventfds = true;
}

static void on_bar_mapped(void *owner, int bar, uint64_t addr)
{
	if (bar == BAR_COMMON)
		set_ioeventfds(owner, addr);
}

static void on_config_written(void *owner, uint32_t off, uint32_t len)
{
	struct virtio_device *vdev = owner;
	if (vdev->msix_ready)
		msix_config_written(&vdev->msix, off, len);
}

/* ---- creation ---- */

static int add_cap(struct virtio_device *vdev, uint8_t type, uint32_t off, uint32_t len, uint32_t extra, bool has_extra)
{
	uint8_t body[18] = { 0 };
	uint8_t body_len = has_extra ? 18 : 14;
	body[0] = (uint8_t)(body_len + 2); /* cap_len counts the ID and next bytes */
	body[1] = type;
	body[2] = BAR_COMMON;
	pci_put32(body + 6, off);
	pci_put32(body + 10, len);
	if (has_extra)
		pci_put32(body + 14, extra);
	int rc = pci_device_add_capability(&vdev->pci, PCI_CAP_ID_VNDR, body, body_len);
	return rc < 0 ? rc : 0;
}

int virtio_pci_create(const struct virtio_pci_deps *deps, const struct virtio_device_ops *ops, void *dev,
		      struct virtio_device **out)
{
	if (ops->num_queues == 0 || ops->num_queues > VIRTIO_PCI_MAX_QUEUES || ops->queue_max_size == 0 ||
	    (ops->queue_max_size & (ops->queue_max_size - 1)) || ops->config_size > VIRTIO_PCI_CONFIG_MAX) {
		log_error(COMP, "%s: invalid device description (queues %u, queue size %u, config %u bytes)", ops->name,
			  ops->num_queues, ops->queue_max_size, ops->config_size);
		return -EINVAL;
	}
	struct virtio_device *vdev = calloc(1, sizeof(*vdev));
	if (!vdev)
		return -ENOMEM;
	vdev->ops = ops;
	vdev->dev = dev;
	vdev->deps = *deps;
	vdev->offered = ops->features | VIRTIO_F_BIT(VIRTIO_F_VERSION_1) | VIRTIO_F_BIT(VIRTIO_RING_F_INDIRECT_DESC) |
			VIRTIO_F_BIT(VIRTIO_RING_F_EVENT_IDX);
	pthread_mutex_init(&vdev->lock, NULL);
	atomic_store(&vdev->msix_config, VIRTIO_MSI_NO_VECTOR);
	for (uint16_t i = 0; i < VIRTIO_PCI_MAX_QUEUES; i++)
		vdev->q[i].efd = -1;

	int rc = 0;
	for (uint16_t i = 0; i < ops->num_queues && !rc; i++) {
		struct vp_queue *q = &vdev->q[i];
		vq_init(&q->vq, ops->queue_max_size);
		q->vdev = vdev;
		q->index = i;
		q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (q->efd < 0)
			rc = -errno;
		else
			rc = event_loop_add_fd(deps->loop, q->efd, EPOLLIN, on_queue_kick, q);
	}

	struct pci_device *d = &vdev->pci;
	pci_device_init(d, ops->name, VIRTIO_PCI_VENDOR, (uint16_t)(VIRTIO_PCI_DEVICE_BASE + ops->device_id),
			ops->pci_class, VIRTIO_PCI_VENDOR, VIRTIO_PCI_SUBSYS_ID, VIRTIO_PCI_REVISION);
	d->owner = vdev;
	d->bar_mapped = on_bar_mapped;
	d->config_written = on_config_written;
	if (!rc)
		rc = pci_device_set_bar(d, BAR_COMMON, VIRTIO_PCI_BAR0_SIZE, &bar0_ops, vdev);
	if (!rc)
		rc = add_cap(vdev, CAP_COMMON, VIRTIO_PCI_COMMON_OFF, VIRTIO_PCI_COMMON_LEN, 0, false);
	if (!rc)
		rc = add_cap(vdev, CAP_ISR, VIRTIO_PCI_ISR_OFF, 1, 0, false);
	if (!rc && ops->config_size)
		rc = add_cap(vdev, CAP_DEVICE, VIRTIO_PCI_DEVICE_OFF, ops->config_size, 0, false);
	if (!rc)
		rc = add_cap(vdev, CAP_NOTIFY, VIRTIO_PCI_NOTIFY_OFF,
			     (uint32_t)VIRTIO_PCI_NOTIFY_MULTIPLIER * ops->num_queues, VIRTIO_PCI_NOTIFY_MULTIPLIER, true);
	if (!rc) {
		/* One vector for configuration changes plus one per queue. */
		rc = msix_init(&vdev->msix, d, BAR_MSIX, (uint16_t)(ops->num_queues + 1), deps->routing, deps->vm_fd);
		vdev->msix_ready = rc == 0;
	}
	if (!rc)
		rc = pci_bus_add_device(deps->pci, d);
	if (rc) {
		log_error(COMP, "cannot create the virtio-%s PCI device: %s", ops->name, strerror(-rc));
		virtio_pci_destroy(vdev);
		return rc;
	}
	*out = vdev;
	return 0;
}

void virtio_pci_destroy(struct virtio_device *vdev)
{
	if (!vdev)
		return;
	if (vdev->pci.bus)
		pci_bus_remove_device(vdev->pci.bus, &vdev->pci); /* unmapping BAR0 drops the ioeventfds */
	set_ioeventfds(vdev, 0);
	for (uint16_t i = 0; i < VIRTIO_PCI_MAX_QUEUES; i++) {
		if (vdev->q[i].efd < 0)
			continue;
		event_loop_remove_fd(vdev->deps.loop, vdev->q[i].efd);
		close(vdev->q[i].efd);
	}
	if (vdev->msix_ready)
		msix_destroy(&vdev->msix);
	pthread_mutex_destroy(&vdev->lock);
	free(vdev);
}

/* ---- snapshots ---- */

#define SAVE_MAGIC 0x56495254u /* "VIRT" */
#define SAVE_VERSION 1

struct saved_queue {
	uint64_t desc, avail, used;
	uint16_t size, vector, last_avail, used_idx, signalled_used;
	uint8_t enabled, signalled_valid;
};

struct saved_vector {
	uint32_t addr_lo, addr_hi, data, ctrl;
	uint8_t pending;
};

struct saved_transport {
	uint32_t magic, version;
	uint16_t device_id, num_queues, nvectors, queue_select, msix_config;
	uint8_t status, config_generation, isr, activated;
	uint32_t dfselect, gfselect;
	uint64_t driver_features;
	uint8_t config[PCI_CONFIG_SIZE];
	uint32_t bar_addr[PCI_NUM_BARS];
	struct saved_queue q[VIRTIO_PCI_MAX_QUEUES];
	struct saved_vector v[VIRTIO_PCI_MAX_QUEUES + 1];
	uint64_t device_len;
};

long virtio_pci_save(struct virtio_device *vdev, void *buf, size_t cap)
{
	if (cap < sizeof(struct saved_transport))
		return -ENOSPC;
	struct saved_transport *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_lock(&vdev->lock);
	*s = (struct saved_transport){
		.magic = SAVE_MAGIC, .version = SAVE_VERSION, .device_id = vdev->ops->device_id,
		.num_queues = nq(vdev), .nvectors = vdev->msix.nvectors, .queue_select = vdev->queue_select,
		.msix_config = atomic_load(&vdev->msix_config), .status = atomic_load(&vdev->status),
		.config_generation = atomic_load(&vdev->config_generation), .isr = atomic_load(&vdev->isr),
		.activated = atomic_load(&vdev->activated), .dfselect = vdev->dfselect, .gfselect = vdev->gfselect,
		.driver_features = vdev->driver_features,
	};
	memcpy(s->config, vdev->pci.config, PCI_CONFIG_SIZE);
	for (int i = 0; i < PCI_NUM_BARS; i++)
		s->bar_addr[i] = vdev->pci.bars[i].addr;
	for (uint16_t i = 0; i < nq(vdev); i++) {
		const struct virtqueue *vq = &vdev->q[i].vq;
		s->q[i] = (struct saved_queue){ .desc = vq->desc_gpa, .avail = vq->avail_gpa, .used = vq->used_gpa,
						.size = vq->size, .vector = vq->msix_vector, .last_avail = vq->last_avail,
						.used_idx = vq->used_idx, .signalled_used = vq->signalled_used,
						.enabled = vq->enabled, .signalled_valid = vq->signalled_valid };
	}
	for (uint16_t i = 0; vdev->msix_ready && i < vdev->msix.nvectors; i++) {
		const struct msix_vector *v = &vdev->msix.v[i];
		s->v[i] = (struct saved_vector){ .addr_lo = v->addr_lo, .addr_hi = v->addr_hi, .data = v->data,
						 .ctrl = v->ctrl, .pending = msix_pending(&vdev->msix, i) };
	}
	pthread_mutex_unlock(&vdev->lock);
	long dlen = 0;
	if (vdev->ops->save) {
		dlen = vdev->ops->save(vdev->dev, (uint8_t *)buf + sizeof(*s), cap - sizeof(*s));
		if (dlen < 0) {
			free(s);
			return dlen;
		}
	}
	s->device_len = (uint64_t)dlen;
	memcpy(buf, s, sizeof(*s));
	free(s);
	return (long)(sizeof(struct saved_transport) + (size_t)dlen);
}

int virtio_pci_load(struct virtio_device *vdev, const void *buf, size_t len)
{
	if (len < sizeof(struct saved_transport))
		return -EINVAL;
	struct saved_transport *s = malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	memcpy(s, buf, sizeof(*s));
	int rc = 0;
	if (s->magic != SAVE_MAGIC || s->version != SAVE_VERSION || s->device_id != vdev->ops->device_id ||
	    s->num_queues != nq(vdev) || s->nvectors != vdev->msix.nvectors || s->device_len > len - sizeof(*s))
		rc = -EINVAL;
	if (!rc && vdev->ops->load)
		rc = vdev->ops->load(vdev->dev, (const uint8_t *)buf + sizeof(*s), (size_t)s->device_len);
	if (rc) {
		free(s);
		return rc;
	}
	pthread_mutex_lock(&vdev->lock);
	vdev->queue_select = s->queue_select;
	atomic_store(&vdev->msix_config, s->msix_config);
	atomic_store(&vdev->status, s->status);
	atomic_store(&vdev->config_generation, s->config_generation);
	atomic_store(&vdev->isr, s->isr);
	vdev->dfselect = s->dfselect;
	vdev->gfselect = s->gfselect;
	vdev->driver_features = s->driver_features;
	for (uint16_t i = 0; i < nq(vdev); i++) {
		struct virtqueue *vq = &vdev->q[i].vq;
		vq_reset(vq);
		vq->desc_gpa = s->q[i].desc;
		vq->avail_gpa = s->q[i].avail;
		vq->used_gpa = s->q[i].used;
		vq->size = s->q[i].size;
		vq->msix_vector = valid_vector(vdev, s->q[i].vector);
		vq->enabled = s->q[i].enabled;
		vq->last_avail = s->q[i].last_avail;
		vq->used_idx = s->q[i].used_idx;
		vq->signalled_used = s->q[i].signalled_used;
		vq->signalled_valid = s->q[i].signalled_valid;
	}
	for (uint16_t i = 0; vdev->msix_ready && i < vdev->msix.nvectors; i++) {
		struct msix_vector *v = &vdev->msix.v[i];
		v->addr_lo = s->v[i].addr_lo;
		v->addr_hi = s->v[i].addr_hi;
		v->data = s->v[i].data;
		v->ctrl = s->v[i].ctrl & MSIX_ENTRY_CTRL_MASKED;
		if (s->v[i].pending)
			msix_notify(&vdev->msix, i);
	}
	pthread_mutex_unlock(&vdev->lock);

	/* Configuration space through the normal path so BARs are mapped and MSI-X re-attached. */
	for (int i = 0; i < PCI_NUM_BARS; i++)
		if (vdev->pci.bars[i].size)
			pci_config_write(&vdev->pci, PCI_BAR0 + 4u * (unsigned int)i, s->bar_addr[i], 4);
	for (uint32_t off = 0; off < PCI_CONFIG_SIZE; off += 4)
		if (off < PCI_BAR0 || off >= PCI_BAR0 + 4 * PCI_NUM_BARS)
			pci_config_write(&vdev->pci, off, pci_get32(s->config + off), 4);
	atomic_store(&vdev->active_features, s->activated ? s->driver_features : 0);
	if (s->activated) {
		start_queues(vdev);
		atomic_store(&vdev->activated, true);
	}
	free(s);
	return 0;
}
