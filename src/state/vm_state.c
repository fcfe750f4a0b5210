#include "state/vm_state.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "lib/util.h"
#include "state/vm_clock.h"
#include "vm/vm.h"

static const unsigned int chips[] = { KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC };

/* The guest's clock as it was when the VM was paused (vm_pause froze it), else now, and the host's wall time then. */
static int guest_clock(struct vm *vm, uint64_t *ns, uint64_t *realtime)
{
	if (vm->clock_saved) {
		*ns = vm->paused_clock;
		*realtime = vm->paused_realtime;
		return 0;
	}
	struct kvm_clock_data c = { 0 };
	uint64_t now = realtime_ns();
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &c) < 0)
		return -errno;
	*ns = c.clock;
	*realtime = (c.flags & KVM_CLOCK_REALTIME) ? c.realtime : now;
	return 0;
}

int vm_state_save(struct vm *vm, struct snap_writer *w, char *err, size_t errlen)
{
	int rc;
	char name[SNAP_NAME_MAX];
	for (unsigned int i = 0; i < sizeof(chips) / sizeof(chips[0]); i++) {
		struct kvm_irqchip chip;
		memset(&chip, 0, sizeof(chip));
		chip.chip_id = chips[i];
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
			return err_fail(err, errlen, -errno, "cannot read interrupt controller %u: %s", chips[i], strerror(errno));
		snprintf(name, sizeof(name), "vm.irqchip.%u", chips[i]);
		if ((rc = snap_writer_add(w, name, &chip, sizeof(chip))))
			return err_fail(err, errlen, rc, "out of memory");
	}
	struct kvm_pit_state2 pit;
	memset(&pit, 0, sizeof(pit));
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0)
		return err_fail(err, errlen, -errno, "cannot read the PIT: %s", strerror(errno));
	if ((rc = snap_writer_add(w, "vm.pit", &pit, sizeof(pit))))
		return err_fail(err, errlen, rc, "out of memory");
	uint64_t clock, realtime = 0;
	if ((rc = guest_clock(vm, &clock, &realtime)))
		return err_fail(err, errlen, rc, "cannot read the guest clock: %s", strerror(-rc));
	if ((rc = snap_writer_add(w, "vm.clock", &clock, sizeof(clock))) || (rc = vm_clock_save(w, realtime)))
		return err_fail(err, errlen, rc, "out of memory");
	return 0;
}

static const void *need(const struct snap_file *f, const char *name, size_t want, char *err, size_t errlen, int *rc)
{
	size_t len;
	const void *p = snap_file_section(f, name, &len);
	if (!p)
		*rc = err_fail(err, errlen, -EINVAL, "the snapshot has no section '%s': it is incomplete", name);
	else if (len != want)
		*rc = err_fail(err, errlen, -EINVAL, "section '%s' has %zu bytes where %zu were expected", name, len, want);
	return p && len == want ? p : NULL;
}

int vm_state_restore(struct vm *vm, const struct snap_file *f, char *err, size_t errlen)
{
	int rc = 0;
	char name[SNAP_NAME_MAX];
	const void *p;
	struct kvm_pit_state2 pit;
	if (!(p = need(f, "vm.pit", sizeof(pit), err, errlen, &rc)))
		return rc;
	memcpy(&pit, p, sizeof(pit));
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0)
		return err_fail(err, errlen, -errno, "KVM refused the saved PIT state: %s", strerror(errno));
	for (unsigned int i = 0; i < sizeof(chips) / sizeof(chips[0]); i++) {
		struct kvm_irqchip chip;
		snprintf(name, sizeof(name), "vm.irqchip.%u", chips[i]);
		if (!(p = need(f, name, sizeof(chip), err, errlen, &rc)))
			return rc;
		memcpy(&chip, p, sizeof(chip));
		if (chip.chip_id != chips[i])
			return err_fail(err, errlen, -EINVAL, "section '%s' holds the state of another chip", name);
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip) < 0)
			return err_fail(err, errlen, -errno, "KVM refused the saved interrupt controller %u: %s", chips[i],
				    strerror(errno));
	}
	uint64_t clock;
	if (!(p = need(f, "vm.clock", sizeof(clock), err, errlen, &rc)))
		return rc;
	memcpy(&clock, p, sizeof(clock));
	/* As the snapshot left it; vm_clock_restore() then moves it on by the time on disk if asked to. */
	struct kvm_clock_data c = { .clock = clock };
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &c) < 0)
		return err_fail(err, errlen, -errno, "KVM refused the saved guest clock: %s", strerror(errno));
	return 0;
}
