#include "bus/msix.h"

#include <errno.h>
#include <linux/kvm.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

#define COMP "msix"

static uint16_t msg_ctrl(const struct msix *m)
{
	return pci_get16(m->pci->config + m->cap + 2);
}

static bool eventfd_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static int irqfd(struct msix *m, struct msix_vector *v, bool assign)
{
	struct kvm_irqfd req = { .fd = (uint32_t)v->efd, .gsi = (uint32_t)v->gsi, .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN };
	return ioctl(m->vm_fd, KVM_IRQFD, &req) < 0 ? -errno : 0;
}

/* Caller holds the lock. Attaches or detaches vector i's irqfd to match its mask state. */
static void update_vector(struct msix *m, uint16_t i)
{
	struct msix_vector *v = &m->v[i];
	uint16_t ctrl = msg_ctrl(m);
	bool active = (ctrl & MSIX_CTRL_ENABLE) && !(ctrl & MSIX_CTRL_FUNCTION_MASK) && !(v->ctrl & MSIX_ENTRY_CTRL_MASKED);
	uint64_t addr = (uint64_t)v->addr_hi << 32 | v->addr_lo;
	if (m->vm_fd < 0 || v->gsi < 0)
		return;
	static struct log_ratelimit rl;
	if (active) {
		if (v->attached && v->routed_addr == addr && v->routed_data == v->data)
			return;
		int rc = irq_routing_set_msi(m->routing, (unsigned int)v->gsi, addr, v->data);
		if (rc) {
			log_warn_ratelimited(&rl, COMP, "%s: cannot route MSI-X vector %u: %s", m->pci->name, i, strerror(-rc));
			return;
		}
		v->routed_addr = addr;
		v->routed_data = v->data;
		if (v->attached)
			return;
		/* Take what was signalled while masked, attach, then replay it through KVM. */
		uint64_t pending = 0;
		if (read(v->efd, &pending, sizeof(pending)) < 0)
			pending = 0;
		rc = irqfd(m, v, true);
		if (rc) {
			log_warn_ratelimited(&rl, COMP, "%s: cannot attach MSI-X vector %u to KVM (KVM_IRQFD): %s",
					     m->pci->name, i, strerror(-rc));
			if (pending)
				msix_notify(m, i);
			return;
		}
		v->attached = true;
		if (pending)
			msix_notify(m, i);
	} else if (v->attached) {
		int rc = irqfd(m, v, false);
		if (rc)
			log_warn_ratelimited(&rl, COMP, "%s: cannot detach MSI-X vector %u (KVM_IRQFD): %s", m->pci->name, i,
					     strerror(-rc));
		v->attached = false;
	}
}

static void update_all(struct msix *m)
{
	for (uint16_t i = 0; i < m->nvectors; i++)
		update_vector(m, i);
}

int msix_init(struct msix *m, struct pci_device *d, int bar, uint16_t nvectors, struct irq_routing *routing, int vm_fd)
{
	memset(m, 0, sizeof(*m));
	if (nvectors == 0 || nvectors > MSIX_MAX_VECTORS)
		return -EINVAL;
	m->pci = d;
	m->bar = bar;
	m->nvectors = nvectors;
	m->routing = routing;
	m->vm_fd = vm_fd;
	pthread_mutex_init(&m->lock, NULL);
	m->v = calloc(nvectors, sizeof(*m->v));
	if (!m->v)
		return -ENOMEM;
	for (uint16_t i = 0; i < nvectors; i++) {
		m->v[i].gsi = -1;
		m->v[i].efd = -1;
	}
	int rc = 0;
	for (uint16_t i = 0; i < nvectors && !rc; i++) {
		m->v[i].ctrl = MSIX_ENTRY_CTRL_MASKED;
		m->v[i].efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (m->v[i].efd < 0) {
			rc = -errno;
			break;
		}
		if (routing) {
			int gsi = irq_routing_alloc_msi_gsi(routing);
			if (gsi < 0)
				rc = gsi;
			m->v[i].gsi = gsi;
		}
	}
	uint8_t body[10] = { 0 };
	pci_put16(body, (uint16_t)(nvectors - 1));
	pci_put32(body + 2, MSIX_TABLE_OFFSET | (uint32_t)bar);
	pci_put32(body + 6, MSIX_PBA_OFFSET | (uint32_t)bar);
	int off = rc ? rc : pci_device_add_capability(d, PCI_CAP_ID_MSIX, body, sizeof(body));
	if (off < 0)
		rc = off;
	if (!rc) {
		m->cap = (uint8_t)off;
		const uint8_t wmask[2] = { 0, (MSIX_CTRL_ENABLE | MSIX_CTRL_FUNCTION_MASK) >> 8 };
		pci_device_set_wmask(d, (uint32_t)off + 2, wmask, 2);
		rc = pci_device_set_bar(d, bar, MSIX_BAR_SIZE, &msix_bar_ops, m);
	}
	if (rc) {
		log_error(COMP, "%s: cannot set up %u MSI-X vectors: %s", d->name, nvectors, strerror(-rc));
		msix_destroy(m);
	}
	return rc;
}

void msix_destroy(struct msix *m)
{
	if (!m->v)
		return;
	for (uint16_t i = 0; i < m->nvectors; i++) {
		struct msix_vector *v = &m->v[i];
		if (v->attached)
			irqfd(m, v, false);
		if (v->gsi >= 0)
			irq_routing_free_msi_gsi(m->routing, (unsigned int)v->gsi);
		if (v->efd >= 0)
			close(v->efd);
	}
	free(m->v);
	m->v = NULL;
	pthread_mutex_destroy(&m->lock);
}

void msix_config_written(struct msix *m, uint32_t off, uint32_t len)
{
	uint32_t ctrl = m->cap + 2u;
	if (off + len <= ctrl || off >= ctrl + 2)
		return;
	pthread_mutex_lock(&m->lock);
	update_all(m);
	pthread_mutex_unlock(&m->lock);
}

void msix_notify(struct msix *m, uint16_t v)
{
	if (v >= m->nvectors)
		return;
	uint64_t one = 1;
	if (write(m->v[v].efd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
		static struct log_ratelimit rl;
		log_warn_ratelimited(&rl, COMP, "%s: signalling MSI-X vector %u failed: %s", m->pci->name, v, strerror(errno));
	}
}

int msix_eventfd(const struct msix *m, uint16_t v)
{
	return v < m->nvectors ? m->v[v].efd : -1;
}

/* Caller holds the lock. */
static bool pending_locked(struct msix *m, uint16_t i)
{
	return !m->v[i].attached && eventfd_readable(m->v[i].efd);
}

bool msix_pending(struct msix *m, uint16_t v)
{
	if (v >= m->nvectors)
		return false;
	pthread_mutex_lock(&m->lock);
	bool p = pending_locked(m, v);
	pthread_mutex_unlock(&m->lock);
	return p;
}

void msix_reset(struct msix *m)
{
	pthread_mutex_lock(&m->lock);
	uint8_t *ctrl = m->pci->config + m->cap + 2;
	pci_put16(ctrl, (uint16_t)(m->nvectors - 1));
	for (uint16_t i = 0; i < m->nvectors; i++) {
		struct msix_vector *v = &m->v[i];
		v->addr_lo = v->addr_hi = v->data = 0;
		v->ctrl = MSIX_ENTRY_CTRL_MASKED;
		update_vector(m, i);
		uint64_t drop;
		if (read(v->efd, &drop, sizeof(drop)) < 0)
			drop = 0;
	}
	pthread_mutex_unlock(&m->lock);
}

static uint32_t *entry_word(struct msix_vector *v, unsigned int w)
{
	switch (w) {
	case 0: return &v->addr_lo;
	case 1: return &v->addr_hi;
	case 2: return &v->data;
	default: return &v->ctrl;
	}
}

/* Reads or writes len bytes (1, 2, 4 or 8, naturally aligned) of the BAR. */
static void bar_read(void *dev, uint64_t offset, void *data, uint32_t len)
{
	struct msix *m = dev;
	uint8_t out[8];
	memset(out, 0, sizeof(out));
	if (len > 8 || (offset & (len - 1))) {
		memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&m->lock);
	for (uint32_t i = 0; i < len; i++) {
		uint64_t o = offset + i;
		if (o < MSIX_PBA_OFFSET) {
			uint64_t idx = o / MSIX_ENTRY_SIZE;
			if (idx < m->nvectors) {
				uint32_t w = *entry_word(&m->v[idx], (unsigned int)(o % MSIX_ENTRY_SIZE) / 4);
				out[i] = (uint8_t)(w >> (8 * (o % 4)));
			}
		} else {
			uint64_t first = (o - MSIX_PBA_OFFSET) * 8;
			for (unsigned int b = 0; b < 8; b++)
				if (first + b < m->nvectors && pending_locked(m, (uint16_t)(first + b)))
					out[i] |= (uint8_t)(1u << b);
		}
	}
	pthread_mutex_unlock(&m->lock);
	memcpy(data, out, len);
}

static void bar_write(void *dev, uint64_t offset, const void *data, uint32_t len)
{
	struct msix *m = dev;
	if (len > 8 || (offset & (len - 1)) || offset >= MSIX_PBA_OFFSET)
		return; /* the PBA is read-only */
	const uint8_t *in = data;
	pthread_mutex_lock(&m->lock);
	uint64_t touched_first = UINT64_MAX, touched_last = 0;
	for (uint32_t i = 0; i < len; i++) {
		uint64_t o = offset + i, idx = o / MSIX_ENTRY_SIZE;
		if (idx >= m->nvectors)
			continue;
		uint32_t *w = entry_word(&m->v[idx], (unsigned int)(o % MSIX_ENTRY_SIZE) / 4);
		unsigned int shift = 8 * (unsigned int)(o % 4);
		*w = (*w & ~(0xffu << shift)) | ((uint32_t)in[i] << shift);
		if (w == &m->v[idx].ctrl)
			*w &= MSIX_ENTRY_CTRL_MASKED; /* the other bits are reserved */
		touched_first = MIN(touched_first, idx);
		touched_last = idx;
	}
	for (uint64_t idx = touched_first; touched_first != UINT64_MAX && idx <= touched_last; idx++)
		update_vector(m, (uint16_t)idx);
	pthread_mutex_unlock(&m->lock);
}

const struct device_ops msix_bar_ops = { .name = "msix", .read = bar_read, .write = bar_write };
