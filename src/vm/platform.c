#include "vm/platform.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "lib/log.h"
#include "virtio/virtio_pci.h"
#include "virtio/virtio_rng.h"
#include "virtio/virtio_balloon.h"
#include "virtio/virtio_console.h"
#include "virtio/virtio_vsock.h"
#include "config/config_sockets.h"
#include "virtio/virtio_net.h"
#include "virtio/virtio_blk.h"
#include "backends/net_slirp.h"
#include "backends/net_tap.h"
#include "config/config_net.h"
#include "vm/vm.h"

static void on_i8042_reset(void *opaque)
{
	vm_request_stop(opaque, VM_STOP_REBOOT, "guest asked to reboot (keyboard controller reset); vmon stopped the VM");
}

static void on_acpi_event(void *opaque, enum acpi_pm_event ev)
{
	if (ev == ACPI_PM_POWEROFF)
		vm_request_stop(opaque, VM_STOP_POWEROFF, "guest powered off");
	else
		vm_request_stop(opaque, VM_STOP_REBOOT, "guest asked to reboot (ACPI reset); vmon stopped the VM");
}

static void on_panic(void *opaque, uint8_t events)
{
	vm_request_stop(opaque, VM_STOP_PANIC, "guest kernel panicked (pvpanic event 0x%x); its console shows why",
			events);
}

static struct irq_line irq(struct vm *vm, unsigned int gsi)
{
	return (struct irq_line){ .set = vm_irq_set, .opaque = vm, .gsi = gsi };
}

int platform_create(struct vm *vm, void (*console_out)(void *opaque, const uint8_t *buf, size_t len),
		    void *console_opaque)
{
	struct platform *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	vm->platform = p;

	serial_init(&p->com1, irq(vm, PLATFORM_COM1_IRQ), console_out, console_opaque);
	i8042_init(&p->i8042, irq(vm, PLATFORM_KBD_IRQ), on_i8042_reset, vm);
	rtc_init(&p->rtc, irq(vm, PLATFORM_RTC_IRQ));
	acpi_pm_init(&p->acpi_pm, on_acpi_event, vm);
	pvpanic_init(&p->pvpanic, on_panic, vm);
	vmgenid_init(&p->vmgenid, LAYOUT_VMGENID, irq(vm, LAYOUT_GED_GSI));

	struct {
		uint64_t port, len;
		const struct device_ops *ops;
		void *dev;
	} ranges[] = {
		{ PLATFORM_COM1_PORT, 8, &serial_ops, &p->com1 },
		{ 0x60, 1, &i8042_ops, &p->i8042 },
		{ 0x64, 1, &i8042_cmd_ops, &p->i8042 },
		{ 0x70, 2, &rtc_ops, &p->rtc },
		{ PORT_ACPI_PM_BASE, ACPI_PM_PORT_LEN, &acpi_pm_ops, &p->acpi_pm },
		{ PORT_PVPANIC, 1, &pvpanic_ops, &p->pvpanic },
	};
	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
		int rc = bus_register(&vm->pio, ranges[i].port, ranges[i].len, ranges[i].ops, ranges[i].dev);
		if (rc) {
			log_error("platform", "cannot register %s at port 0x%llx: %s", ranges[i].ops->name,
				  (unsigned long long)ranges[i].port, strerror(-rc));
			return rc;
		}
	}

	int rc = irq_routing_init(&p->irq_routing, vm->vm_fd);
	if (!rc)
		rc = event_loop_create(&p->loop);
	if (!rc)
		rc = pci_bus_init(&p->pci, &vm->pio, &vm->mmio, LAYOUT_PCI_MMIO_START, LAYOUT_IOAPIC);
	return rc;
}

void platform_virtio_deps(struct vm *vm, struct virtio_pci_deps *deps)
{
	struct platform *p = vm->platform;
	*deps = (struct virtio_pci_deps){
		.pci = &p->pci, .routing = &p->irq_routing, .loop = p->loop, .mem = &vm->mem, .vm_fd = vm->vm_fd,
	};
}

int platform_add_rng(struct vm *vm)
{
	struct platform *p = vm->platform;
	struct virtio_pci_deps deps;
	platform_virtio_deps(vm, &deps);
	return virtio_rng_create(&deps, &p->rng);
}

int platform_add_balloon(struct vm *vm, const struct balloon_config *cfg)
{
	struct platform *p = vm->platform;
	struct virtio_pci_deps deps;
	platform_virtio_deps(vm, &deps);
	return virtio_balloon_create(&deps, cfg, &p->balloon);
}

static void pause_io(struct vm *vm)
{
	struct platform *p = vm->platform;
	if (p && p->loop)
		event_loop_pause(p->loop);
	/* Disk requests in flight complete now, so a snapshot of the paused VM holds none. */
	for (unsigned int i = 0; p && i < p->nblks; i++)
		virtio_blk_quiesce(p->blk[i]);
}

static void resume_io(struct vm *vm)
{
	struct platform *p = vm->platform;
	if (p && p->loop)
		event_loop_resume(p->loop);
}

int platform_add_net(struct vm *vm, const char *spec)
{
	struct platform *p = vm->platform;
	struct net_spec ns;
	char err[256];
	if (p->nnets >= sizeof(p->net) / sizeof(p->net[0]))
		return -ENOSPC;
	if (config_net_parse(spec, &ns, err, sizeof(err))) {
		log_error("platform", "%s", err);
		return -EINVAL;
	}
	if (!ns.has_mac)
		config_net_default_mac(p->nnets, ns.mac);
	struct net_backend *be;
	int rc = ns.kind == NET_TAP ? net_tap_create(p->loop, ns.ifname, &be)
				    : net_slirp_create(p->loop, ns.fwd, ns.nfwd, ns.host_loopback, &be);
	if (rc)
		return rc;
	struct virtio_pci_deps deps;
	platform_virtio_deps(vm, &deps);
	if ((rc = virtio_net_create(&deps, ns.mac, be, &p->net[p->nnets])))
		return rc;
	p->nnets++;
	return 0;
}

int platform_add_blk(struct vm *vm, const struct disk_config *disk)
{
	struct platform *p = vm->platform;
	if (p->nblks >= sizeof(p->blk) / sizeof(p->blk[0])) {
		log_error("platform", "too many disks: vmon supports at most %zu", sizeof(p->blk) / sizeof(p->blk[0]));
		return -ENOSPC;
	}
	struct virtio_pci_deps deps;
	platform_virtio_deps(vm, &deps);
	int rc = virtio_blk_create(&deps, disk->path, disk->format, disk->readonly, disk->serial, &p->blk[p->nblks]);
	if (!rc)
		p->nblks++;
	return rc;
}

int platform_add_console2(struct vm *vm, const char *spec)
{
	struct platform *p = vm->platform;
	struct console2_spec cs;
	char err[256];
	if (config_console2_parse(spec, &cs, err, sizeof(err))) {
		log_error("platform", "%s", err);
		return -EINVAL;
	}
	struct virtio_pci_deps deps;
	platform_virtio_deps(vm, &deps);
	return virtio_console_create(&deps, cs.is_file ? VIRTIO_CONSOLE_FILE : VIRTIO_CONSOLE_SOCKET, cs.path,
				     cs.max_size, &p->console2);
}

int platform_add_vsock(struct vm *vm, const char *spec)
{
	struct platform *p = vm->platform;
	struct vsock_spec vs;
	char err[256];
	if (config_vsock_parse(spec, &vs, err, sizeof(err))) {
		log_error("platform", "%s", err);
		return -EINVAL;
	}
	struct virtio_pci_deps deps;
	platform_virtio_deps(vm, &deps);
	return virtio_vsock_create(&deps, vs.cid, vs.uds, &p->vsock);
}

int platform_start_io(struct vm *vm)
{
	struct platform *p = vm->platform;
	if (!p || !p->loop)
		return -EINVAL;
	vm->io_pause = pause_io;
	vm->io_resume = resume_io;
	return event_loop_start(p->loop);
}

void platform_stop_io(struct vm *vm)
{
	struct platform *p = vm->platform;
	if (p && p->loop)
		event_loop_stop(p->loop);
}

void platform_destroy(struct vm *vm)
{
	struct platform *p = vm->platform;
	if (!p)
		return;
	platform_stop_io(vm);
	virtio_rng_destroy(p->rng);
	virtio_balloon_destroy(p->balloon);
	virtio_console_destroy(p->console2);
	virtio_vsock_destroy(p->vsock);
	for (unsigned int i = 0; i < p->nnets; i++)
		virtio_net_destroy(p->net[i]);
	for (unsigned int i = 0; i < p->nblks; i++)
		virtio_blk_destroy(p->blk[i]);
	if (p->pci.mmio)
		pci_bus_destroy(&p->pci);
	event_loop_destroy(p->loop);
	irq_routing_destroy(&p->irq_routing);
	serial_destroy(&p->com1);
	i8042_destroy(&p->i8042);
	rtc_destroy(&p->rtc);
	free(p);
	vm->platform = NULL;
}
