#include "state/device_state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/pci.h"
#include "lib/util.h"
#include "virtio/virtio_pci.h"
#include "vm/platform.h"
#include "vm/vm.h"

/* Device state is small (a UART is ~100 bytes); the cap only bounds a runaway save op. */
#define DEV_BUF_INITIAL (64 * 1024)
#define DEV_BUF_MAX (16 * 1024 * 1024)
#define VIRTIO_VENDOR 0x1af4
/* Not on a bus: the VM generation ID lives in guest memory and ACPI. */
#define VMGENID_SECTION "dev.vmgenid"

/* One device to save or load, whichever bus or PCI slot it lives on. */
struct dev_ref {
	char name[SNAP_NAME_MAX];
	const struct device_ops *ops;   /* bus devices */
	void *dev;
	struct virtio_device *vdev;     /* virtio devices on PCI */
};

/* The first range of each device on a bus (ranges are sorted by base) names it. */
static bool seen_before(const struct bus *bus, int upto, const void *dev)
{
	for (int i = 0; i < upto; i++)
		if (bus->ranges[i].dev == dev && bus->ranges[i].ops->save)
			return true;
	return false;
}

static int collect(struct vm *vm, struct dev_ref **out, unsigned int *nout)
{
	unsigned int cap = 8, n = 0;
	struct dev_ref *refs = calloc(cap, sizeof(*refs));
	if (!refs)
		return -ENOMEM;
	struct bus *buses[] = { &vm->pio, &vm->mmio };
	for (int b = 0; b < 2; b++) {
		struct bus *bus = buses[b];
		pthread_rwlock_rdlock(&bus->lock);
		for (int i = 0; i < bus->nranges; i++) {
			const struct bus_range *r = &bus->ranges[i];
			if (!r->ops->save || !r->ops->load || seen_before(bus, i, r->dev))
				continue;
			if (n == cap) {
				struct dev_ref *more = realloc(refs, 2 * cap * sizeof(*refs));
				if (!more) {
					pthread_rwlock_unlock(&bus->lock);
					free(refs);
					return -ENOMEM;
				}
				refs = more;
				cap *= 2;
			}
			refs[n] = (struct dev_ref){ .ops = r->ops, .dev = r->dev };
			snprintf(refs[n].name, sizeof(refs[n].name), "dev.%s.%s@%llx", bus->name, r->ops->name,
				 (unsigned long long)r->base);
			n++;
		}
		pthread_rwlock_unlock(&bus->lock);
	}
	struct platform *p = vm->platform;
	for (int slot = 0; p && slot < PCI_SLOTS; slot++) {
		struct pci_device *d = p->pci.devices[slot];
		if (!d || !d->owner || pci_get16(d->config + PCI_VENDOR_ID) != VIRTIO_VENDOR)
			continue;
		if (n == cap) {
			struct dev_ref *more = realloc(refs, 2 * cap * sizeof(*refs));
			if (!more) {
				free(refs);
				return -ENOMEM;
			}
			refs = more;
			cap *= 2;
		}
		refs[n] = (struct dev_ref){ .vdev = d->owner };
		snprintf(refs[n].name, sizeof(refs[n].name), "pci.%d.%s", slot, d->name);
		n++;
	}
	*out = refs;
	*nout = n;
	return 0;
}

static long save_one(const struct dev_ref *r, void *buf, size_t cap)
{
	return r->vdev ? virtio_pci_save(r->vdev, buf, cap) : r->ops->save(r->dev, buf, cap);
}

int device_state_save(struct vm *vm, struct snap_writer *w, char *err, size_t errlen)
{
	struct dev_ref *refs;
	unsigned int n;
	int rc = collect(vm, &refs, &n);
	if (rc)
		return err_fail(err, errlen, rc, "out of memory listing the devices");
	size_t cap = DEV_BUF_INITIAL;
	uint8_t *buf = malloc(cap);
	for (unsigned int i = 0; i < n && !rc; i++) {
		long len = -ENOSPC;
		while (buf && (len = save_one(&refs[i], buf, cap)) == -ENOSPC && cap < DEV_BUF_MAX) {
			free(buf);
			cap *= 4;
			buf = malloc(cap);
		}
		if (!buf)
			rc = err_fail(err, errlen, -ENOMEM, "out of memory saving device %s", refs[i].name);
		else if (len < 0)
			rc = err_fail(err, errlen, (int)len, "device %s could not save its state: %s", refs[i].name,
				  strerror((int)-len));
		else if ((rc = snap_writer_add(w, refs[i].name, buf, (size_t)len)))
			rc = err_fail(err, errlen, rc, "out of memory saving device %s", refs[i].name);
	}
	struct platform *p = vm->platform;
	if (!rc && p && p->vmgenid.present) {
		long len = buf ? vmgenid_save(&p->vmgenid, buf, cap) : -ENOMEM;
		if (len < 0 || (rc = snap_writer_add(w, VMGENID_SECTION, buf, (size_t)len)))
			rc = err_fail(err, errlen, len < 0 ? (int)len : rc, "cannot save the VM generation ID");
	}
	if (!rc && p) {
		pthread_mutex_lock(&p->pci.lock);
		uint32_t latch = p->pci.config_address;
		pthread_mutex_unlock(&p->pci.lock);
		if ((rc = snap_writer_add(w, "pci.config_address", &latch, sizeof(latch))))
			rc = err_fail(err, errlen, rc, "out of memory");
	}
	free(buf);
	free(refs);
	return rc;
}

static bool is_device_section(const char *name)
{
	return !strncmp(name, "dev.", 4) || (!strncmp(name, "pci.", 4) && strcmp(name, "pci.config_address"));
}

/* A guest booted by a vmon without the device has none in its ACPI tables: it stays absent. */
static int restore_vmgenid(struct vmgenid *g, const struct snap_file *f, char *err, size_t errlen)
{
	size_t len;
	const void *data = snap_file_section(f, VMGENID_SECTION, &len);
	if (!data) {
		g->present = false;
		return 0;
	}
	if (vmgenid_load(g, data, len))
		return err_fail(err, errlen, -EINVAL, "the snapshot's VM generation ID section is malformed");
	return 0;
}

int device_state_restore(struct vm *vm, const struct snap_file *f, char *err, size_t errlen)
{
	struct dev_ref *refs;
	unsigned int n;
	int rc = collect(vm, &refs, &n);
	if (rc)
		return err_fail(err, errlen, rc, "out of memory listing the devices");
	/* Every saved device must exist here... */
	const char *name;
	const void *data;
	size_t len;
	for (unsigned int s = 0; !rc && (name = snap_file_section_name(f, s, &data, &len)); s++) {
		if (!is_device_section(name) || !strcmp(name, VMGENID_SECTION))
			continue;
		unsigned int i = 0;
		while (i < n && strcmp(refs[i].name, name))
			i++;
		if (i == n)
			rc = err_fail(err, errlen, -EINVAL,
				  "the snapshot has a device (%s) that this vmon does not create: restore it with the "
				  "vmon release that took it",
				  name);
	}
	/* ...and every device here must have been saved. */
	for (unsigned int i = 0; i < n && !rc; i++) {
		data = snap_file_section(f, refs[i].name, &len);
		if (!data) {
			rc = err_fail(err, errlen, -EINVAL,
				  "the snapshot has no state for device %s, which this VM has: restore it with the vmon "
				  "release that took it",
				  refs[i].name);
			break;
		}
		/* Device blobs are byte streams, but copy them so a device may read fields in place. */
		void *copy = malloc(len ? len : 1);
		if (!copy) {
			rc = -ENOMEM;
			break;
		}
		memcpy(copy, data, len);
		int r = refs[i].vdev ? virtio_pci_load(refs[i].vdev, copy, len) : refs[i].ops->load(refs[i].dev, copy, len);
		free(copy);
		if (r)
			rc = err_fail(err, errlen, r, "device %s refused its saved state (%s): the snapshot does not match "
						  "this vmon's device model",
				  refs[i].name, strerror(-r));
	}
	struct platform *p = vm->platform;
	if (!rc && p)
		rc = restore_vmgenid(&p->vmgenid, f, err, errlen);
	if (!rc && p && (data = snap_file_section(f, "pci.config_address", &len)) && len == sizeof(uint32_t)) {
		pthread_mutex_lock(&p->pci.lock);
		memcpy(&p->pci.config_address, data, sizeof(uint32_t));
		pthread_mutex_unlock(&p->pci.lock);
	}
	free(refs);
	return rc;
}

bool device_state_has_pci(const struct snap_file *f, const char *name)
{
	const char *s;
	for (unsigned int i = 0; (s = snap_file_section_name(f, i, NULL, NULL)); i++) {
		if (strncmp(s, "pci.", 4) || !strcmp(s, "pci.config_address"))
			continue;
		const char *dot = strchr(s + 4, '.');
		if (dot && !strcmp(dot + 1, name))
			return true;
	}
	return false;
}
