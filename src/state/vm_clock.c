#include "state/vm_clock.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "lib/log.h"
#include "lib/util.h"
#include "vm/vm.h"

#define COMP "clock"
#define REALTIME_SECTION "vm.clock_realtime"

int vm_clock_parse_mode(const char *s, enum vm_clock_mode *mode)
{
	if (!strcmp(s, "realtime"))
		*mode = VM_CLOCK_REALTIME;
	else if (!strcmp(s, "continue"))
		*mode = VM_CLOCK_CONTINUE;
	else
		return -EINVAL;
	return 0;
}

void vm_clock_plan(enum vm_clock_mode mode, uint64_t saved_clock, uint64_t saved_realtime, uint64_t now_realtime,
		   bool kvm_has_realtime, struct vm_clock_plan *out)
{
	memset(out, 0, sizeof(*out));
	out->clock = saved_clock;
	if (mode == VM_CLOCK_CONTINUE)
		return;
	if (!saved_realtime) {
		out->unknown_age = true;
		return;
	}
	if (kvm_has_realtime) {
		out->kvm_realtime = true;
		out->realtime = saved_realtime;
		return;
	}
	uint64_t elapsed = now_realtime > saved_realtime ? now_realtime - saved_realtime : 0;
	out->advanced_ns = elapsed > UINT64_MAX - saved_clock ? UINT64_MAX - saved_clock : elapsed;
	out->clock = saved_clock + out->advanced_ns;
}

uint64_t vm_clock_tsc_ticks(uint64_t ns, uint32_t khz)
{
	return (uint64_t)((unsigned __int128)ns * khz / 1000000u);
}

int vm_clock_save(struct snap_writer *w, uint64_t realtime)
{
	return snap_writer_add(w, REALTIME_SECTION, &realtime, sizeof(realtime));
}

int vm_clock_restore(struct vm *vm, const struct snap_file *f, enum vm_clock_mode mode, uint64_t *advanced_ns,
		     char *err, size_t errlen)
{
	*advanced_ns = 0;
	size_t len;
	const void *p = snap_file_section(f, "vm.clock", &len);
	uint64_t clock, saved_realtime = 0;
	if (!p || len != sizeof(clock))
		return err_fail(err, errlen, -EINVAL, "the snapshot has no valid section 'vm.clock': it is incomplete");
	memcpy(&clock, p, sizeof(clock));
	p = snap_file_section(f, REALTIME_SECTION, &len);
	if (p && len == sizeof(saved_realtime))
		memcpy(&saved_realtime, p, sizeof(saved_realtime));
	int caps = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_ADJUST_CLOCK);
	bool kvm_rt = caps > 0 && (caps & KVM_CLOCK_REALTIME);
	struct vm_clock_plan plan;
	uint64_t now = realtime_ns();
	vm_clock_plan(mode, clock, saved_realtime, now, kvm_rt, &plan);
	struct kvm_clock_data c = { .clock = plan.clock };
	if (plan.kvm_realtime) {
		c.flags = KVM_CLOCK_REALTIME;
		c.realtime = plan.realtime;
	}
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &c) < 0)
		return err_fail(err, errlen, -errno, "KVM refused the saved guest clock: %s", strerror(errno));
	if (plan.kvm_realtime)
		*advanced_ns = now > saved_realtime ? now - saved_realtime : 0;
	else
		*advanced_ns = plan.advanced_ns;
	if (mode == VM_CLOCK_CONTINUE)
		log_info(COMP, "the guest's clock continues from the snapshot (--clock=continue): it is behind by the "
			       "time the snapshot was on disk");
	else if (plan.unknown_age)
		log_warn(COMP, "the snapshot does not record when it was taken (an older vmon wrote it): the guest's "
			       "clock continues from the snapshot and is behind the host's");
	else if (plan.kvm_realtime)
		log_info(COMP, "the guest's clock jumps forward by the %.1f s since the snapshot (KVM_CLOCK_REALTIME)",
			 (double)*advanced_ns / 1e9);
	else
		log_info(COMP, "this host's KVM lacks KVM_CLOCK_REALTIME: vmon advanced the guest's clock by the %.1f s "
			       "since the snapshot itself",
			 (double)plan.advanced_ns / 1e9);
	return 0;
}
