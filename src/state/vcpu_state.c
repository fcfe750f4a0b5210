#include "state/vcpu_state.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "lib/log.h"
#include "lib/util.h"
#include "state/vm_clock.h"
#include "vm/vcpu.h"
#include "vm/vm.h"

/* Restored after the LAPIC: its value only means something once the timer mode is set. */
#define MSR_IA32_TSC_DEADLINE 0x6e0u
#define MSR_IA32_TSC_INDEX 0x10u

/* MSRs KVM implements without listing them in KVM_GET_MSR_INDEX_LIST: the MTRRs. */
static const uint32_t unlisted_msrs[] = {
	0x2ff, /* MTRRdefType */
	0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f, /* fixed MTRRs */
	0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207, /* variable MTRRs 0-3 */
	0x208, 0x209, 0x20a, 0x20b, 0x20c, 0x20d, 0x20e, 0x20f, /* variable MTRRs 4-7 */
};

static void section_name(char *buf, size_t len, unsigned int id, const char *what)
{
	snprintf(buf, len, "vcpu.%u.%s", id, what);
}

/* ---- completing an access KVM left pending ---- */

static void dispatch_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint32_t size = run->io.size;
	uint64_t total = (uint64_t)size * run->io.count;
	if (size == 0 || size > 4 || run->io.data_offset + total > (uint64_t)v->vm->vcpu_mmap_size)
		return;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	for (uint32_t i = 0; i < run->io.count; i++, data += size) {
		if (run->io.direction == KVM_EXIT_IO_OUT)
			bus_write(&v->vm->pio, run->io.port, data, size);
		else
			bus_read(&v->vm->pio, run->io.port, data, size);
	}
}

static void dispatch_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	if (run->mmio.len == 0 || run->mmio.len > sizeof(run->mmio.data))
		return;
	if (run->mmio.is_write)
		bus_write(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len);
	else
		bus_read(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len);
}

int vcpu_state_settle(struct vcpu *v)
{
	/*
	 * With immediate_exit set, KVM_RUN finishes what user space handled and returns EINTR before
	 * the guest runs another instruction; a string I/O instruction may need more than one round.
	 * The flag is left set: the vCPU thread sees one EINTR when it resumes and carries on.
	 */
	for (int round = 0; round < 64; round++) {
		v->run->immediate_exit = 1;
		if (ioctl(v->fd, KVM_RUN, 0) < 0)
			return errno == EINTR || errno == EAGAIN ? 0 : -errno;
		if (v->run->exit_reason == KVM_EXIT_IO)
			dispatch_io(v);
		else if (v->run->exit_reason == KVM_EXIT_MMIO)
			dispatch_mmio(v);
		else
			return -EBUSY;
	}
	return -EBUSY;
}

/* ---- MSRs ---- */

static int msr_index_list(int kvm_fd, uint32_t **out, unsigned int *n)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return -errno;
	uint32_t cap = probe.nmsrs + 16;
	struct kvm_msr_list *list = calloc(1, sizeof(*list) + cap * sizeof(list->indices[0]));
	if (!list)
		return -ENOMEM;
	list->nmsrs = cap;
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		int e = -errno;
		free(list);
		return e;
	}
	uint32_t *idx = calloc(list->nmsrs + ARRAY_SIZE(unlisted_msrs), sizeof(*idx));
	if (!idx) {
		free(list);
		return -ENOMEM;
	}
	unsigned int k = 0;
	for (uint32_t i = 0; i < list->nmsrs; i++)
		idx[k++] = list->indices[i];
	for (size_t i = 0; i < ARRAY_SIZE(unlisted_msrs); i++) {
		bool dup = false;
		for (unsigned int j = 0; j < k && !dup; j++)
			dup = idx[j] == unlisted_msrs[i];
		if (!dup)
			idx[k++] = unlisted_msrs[i];
	}
	free(list);
	*out = idx;
	*n = k;
	return 0;
}

/*
 * Reads every MSR KVM can report for this vCPU. KVM_GET_MSRS stops at the first MSR it cannot
 * read (one the vCPU's CPUID does not have), so such an MSR is skipped and the rest read again.
 */
static int save_msrs(struct vcpu *v, int kvm_fd, struct kvm_msr_entry **out, unsigned int *nout)
{
	uint32_t *idx = NULL;
	unsigned int n = 0;
	int rc = msr_index_list(kvm_fd, &idx, &n);
	if (rc)
		return rc;
	struct kvm_msrs *m = calloc(1, sizeof(*m) + n * sizeof(struct kvm_msr_entry));
	struct kvm_msr_entry *saved = calloc(n ? n : 1, sizeof(*saved));
	if (!m || !saved) {
		free(idx);
		free(m);
		free(saved);
		return -ENOMEM;
	}
	unsigned int nsaved = 0, i = 0;
	while (i < n) {
		m->nmsrs = n - i;
		for (unsigned int j = 0; j < m->nmsrs; j++)
			m->entries[j] = (struct kvm_msr_entry){ .index = idx[i + j] };
		int got = ioctl(v->fd, KVM_GET_MSRS, m);
		if (got < 0) {
			rc = -errno;
			break;
		}
		for (int j = 0; j < got; j++)
			saved[nsaved++] = m->entries[j];
		i += (unsigned int)got;
		if (i < n) {
			log_debug("snapshot", "vCPU %u: MSR 0x%x cannot be read; not saved", v->id, idx[i]);
			i++;
		}
	}
	free(idx);
	free(m);
	if (rc) {
		free(saved);
		return rc;
	}
	*out = saved;
	*nout = nsaved;
	return 0;
}

/* Sets every MSR of entries[0..n) but the TSC deadline, or (deadline_only) just that one; names one refused. */
static int restore_msrs(struct vcpu *v, const struct kvm_msr_entry *entries, unsigned int n, bool deadline_only,
			char *err, size_t errlen)
{
	struct kvm_msrs *m = calloc(1, sizeof(*m) + (n ? n : 1) * sizeof(struct kvm_msr_entry));
	if (!m)
		return -ENOMEM;
	unsigned int k = 0;
	for (unsigned int i = 0; i < n; i++)
		if ((entries[i].index == MSR_IA32_TSC_DEADLINE) == deadline_only)
			m->entries[k++] = entries[i];
	m->nmsrs = k;
	int rc = 0;
	if (k) {
		int set = ioctl(v->fd, KVM_SET_MSRS, m);
		if (set < 0)
			rc = err_fail(err, errlen, -errno, "KVM refused vCPU %u's MSRs: %s", v->id, strerror(errno));
		else if ((unsigned int)set < k)
			rc = err_fail(err, errlen, -EINVAL,
				  "KVM on this host refused MSR 0x%x = 0x%llx of vCPU %u: the host's KVM lacks a feature "
				  "the snapshot's guest uses",
				  m->entries[set].index, (unsigned long long)m->entries[set].data, v->id);
	}
	free(m);
	return rc;
}

/* ---- save ---- */

static int add(struct snap_writer *w, unsigned int id, const char *what, const void *data, size_t len)
{
	char name[SNAP_NAME_MAX];
	section_name(name, sizeof(name), id, what);
	return snap_writer_add(w, name, data, len);
}

static int xsave_size(int kvm_fd)
{
	int sz = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	return sz > (int)sizeof(struct kvm_xsave) ? sz : (int)sizeof(struct kvm_xsave);
}

int vcpu_state_save(struct vcpu *v, int kvm_fd, struct snap_writer *w, char *err, size_t errlen)
{
	unsigned int id = v->id;
	int rc;
#define GET(req, var, what)                                                                                   \
	do {                                                                                                  \
		if (ioctl(v->fd, req, &(var)) < 0)                                                            \
			return err_fail(err, errlen, -errno, "cannot read vCPU %u's %s: %s", id, what, strerror(errno)); \
		if ((rc = add(w, id, what, &(var), sizeof(var))))                                             \
			return err_fail(err, errlen, rc, "out of memory saving vCPU %u", id);                     \
	} while (0)

	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	GET(KVM_GET_REGS, regs, "regs");
	GET(KVM_GET_SREGS, sregs, "sregs");
	GET(KVM_GET_LAPIC, lapic, "lapic");
	GET(KVM_GET_VCPU_EVENTS, events, "events");
	GET(KVM_GET_MP_STATE, mp, "mp_state");
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DEBUGREGS) > 0) {
		struct kvm_debugregs dr;
		GET(KVM_GET_DEBUGREGS, dr, "debugregs");
	}
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0) {
		struct kvm_xcrs xcrs;
		GET(KVM_GET_XCRS, xcrs, "xcrs");
	}
#undef GET

	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0) {
		int sz = xsave_size(kvm_fd);
		void *xs = calloc(1, (size_t)sz);
		if (!xs)
			return -ENOMEM;
		unsigned long req = sz > (int)sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
		if (ioctl(v->fd, req, xs) < 0) {
			rc = err_fail(err, errlen, -errno, "cannot read vCPU %u's XSAVE state: %s", id, strerror(errno));
			free(xs);
			return rc;
		}
		rc = add(w, id, "xsave", xs, (size_t)sz);
		free(xs);
	} else {
		struct kvm_fpu fpu;
		if (ioctl(v->fd, KVM_GET_FPU, &fpu) < 0)
			return err_fail(err, errlen, -errno, "cannot read vCPU %u's FPU state: %s", id, strerror(errno));
		rc = add(w, id, "fpu", &fpu, sizeof(fpu));
	}
	if (rc)
		return err_fail(err, errlen, rc, "out of memory saving vCPU %u", id);

	struct kvm_msr_entry *msrs;
	unsigned int nmsrs;
	if ((rc = save_msrs(v, kvm_fd, &msrs, &nmsrs)))
		return err_fail(err, errlen, rc, "cannot read vCPU %u's MSRs: %s", id, strerror(-rc));
	rc = add(w, id, "msrs", msrs, nmsrs * sizeof(*msrs));
	free(msrs);
	if (rc)
		return err_fail(err, errlen, rc, "out of memory saving vCPU %u", id);

	int khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
	if (khz > 0) {
		uint32_t k = (uint32_t)khz;
		if ((rc = add(w, id, "tsc_khz", &k, sizeof(k))))
			return err_fail(err, errlen, rc, "out of memory saving vCPU %u", id);
	}
	return 0;
}

/* ---- restore ---- */

static const void *need(const struct snap_file *f, unsigned int id, const char *what, size_t want, char *err,
			size_t errlen, int *rc)
{
	char name[SNAP_NAME_MAX];
	section_name(name, sizeof(name), id, what);
	size_t len;
	const void *p = snap_file_section(f, name, &len);
	if (!p) {
		*rc = err_fail(err, errlen, -EINVAL, "the snapshot has no section '%s': it is incomplete", name);
		return NULL;
	}
	if (want && len != want) {
		*rc = err_fail(err, errlen, -EINVAL,
			   "section '%s' has %zu bytes, this vmon expects %zu: the snapshot comes from an incompatible "
			   "build",
			   name, len, want);
		return NULL;
	}
	return p;
}

static const void *optional(const struct snap_file *f, unsigned int id, const char *what, size_t *len)
{
	char name[SNAP_NAME_MAX];
	section_name(name, sizeof(name), id, what);
	return snap_file_section(f, name, len);
}

/* Copies a section into a properly aligned struct before handing it to KVM. */
#define LOAD(var, what)                                                                          \
	do {                                                                                     \
		const void *p_ = need(f, id, what, sizeof(var), err, errlen, &rc);               \
		if (!p_)                                                                         \
			return rc;                                                               \
		memcpy(&(var), p_, sizeof(var));                                                 \
	} while (0)
#define SET(req, var, what)                                                                                     \
	do {                                                                                                    \
		if (ioctl(v->fd, req, &(var)) < 0)                                                              \
			return err_fail(err, errlen, -errno, "KVM refused vCPU %u's saved %s: %s", id, what, strerror(errno)); \
	} while (0)

static int restore_tsc_khz(struct vcpu *v, int kvm_fd, const struct snap_file *f)
{
	size_t len;
	const void *p = optional(f, v->id, "tsc_khz", &len);
	if (!p || len != sizeof(uint32_t))
		return 0;
	uint32_t saved;
	memcpy(&saved, p, sizeof(saved));
	int now = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
	/* Calibrations of the same machine differ by a few kHz; only a real difference matters. */
	if (now <= 0 || (uint32_t)now == saved || (saved > (uint32_t)now ? saved - (uint32_t)now : (uint32_t)now - saved) <
								 (uint32_t)now / 2000)
		return 0;
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_CONTROL) > 0 &&
	    ioctl(v->fd, KVM_SET_TSC_KHZ, (unsigned long)saved) == 0) {
		log_info("snapshot", "vCPU %u: TSC runs at the snapshot's %u kHz (this host: %d kHz)", v->id, saved, now);
		return 0;
	}
	log_warn("snapshot",
		 "vCPU %u: the snapshot's TSC ran at %u kHz and this host's runs at %d kHz, which KVM cannot scale "
		 "here; the guest's clock may drift until it recalibrates",
		 v->id, saved, now);
	return 0;
}

int vcpu_state_restore(struct vcpu *v, int kvm_fd, const struct snap_file *f, char *err, size_t errlen)
{
	unsigned int id = v->id;
	int rc = 0;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	LOAD(regs, "regs");
	LOAD(sregs, "sregs");
	LOAD(lapic, "lapic");
	LOAD(events, "events");
	LOAD(mp, "mp_state");
	size_t msrs_len;
	const void *msrs_p = need(f, id, "msrs", 0, err, errlen, &rc);
	if (!msrs_p)
		return rc;
	optional(f, id, "msrs", &msrs_len);
	if (msrs_len % sizeof(struct kvm_msr_entry))
		return err_fail(err, errlen, -EINVAL, "section 'vcpu.%u.msrs' has a size that is not a whole number of MSRs", id);
	/* vmon always saves the MSRs KVM lists (EFER, the SYSCALL MSRs, the TSC...); none means a forged file. */
	if (msrs_len == 0)
		return err_fail(err, errlen, -EINVAL,
			    "section 'vcpu.%u.msrs' is empty: a vCPU cannot run without its MSRs; the file was not "
			    "written by vmon",
			    id);

	restore_tsc_khz(v, kvm_fd, f);

	/* QEMU's order: registers, FPU, XCRs, system registers, MSRs, MP state, LAPIC, events. */
	SET(KVM_SET_REGS, regs, "registers");
	size_t xlen;
	const void *xs = optional(f, id, "xsave", &xlen);
	if (xs) {
		if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) <= 0)
			return err_fail(err, errlen, -ENOTSUP, "the snapshot has XSAVE state and this host's KVM has no XSAVE");
		size_t sz = (size_t)xsave_size(kvm_fd);
		if (xlen < sizeof(struct kvm_xsave) || xlen > sz)
			return err_fail(err, errlen, -ENOTSUP,
				    "vCPU %u's XSAVE state has %zu bytes and this host's KVM takes %zu at most: the "
				    "host's CPU lacks state components the guest uses",
				    id, xlen, sz);
		void *buf = calloc(1, sz);
		if (!buf)
			return -ENOMEM;
		memcpy(buf, xs, xlen);
		int r = ioctl(v->fd, KVM_SET_XSAVE, buf);
		int e = errno;
		free(buf);
		if (r < 0)
			return err_fail(err, errlen, -e, "KVM refused vCPU %u's saved XSAVE state: %s", id, strerror(e));
	} else {
		struct kvm_fpu fpu;
		LOAD(fpu, "fpu");
		SET(KVM_SET_FPU, fpu, "FPU state");
	}
	size_t l;
	const void *p = optional(f, id, "xcrs", &l);
	if (p && ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0) {
		struct kvm_xcrs xcrs;
		LOAD(xcrs, "xcrs");
		/* A guest that never enabled XSAVE has XCR0 = x87 only, which every host takes. */
		SET(KVM_SET_XCRS, xcrs, "XCRs");
	}
	SET(KVM_SET_SREGS, sregs, "system registers");

	struct kvm_msr_entry *entries = malloc(msrs_len ? msrs_len : 1);
	if (!entries)
		return -ENOMEM;
	memcpy(entries, msrs_p, msrs_len);
	unsigned int nmsrs = (unsigned int)(msrs_len / sizeof(*entries));
	rc = restore_msrs(v, entries, nmsrs, false, err, errlen);
	if (rc) {
		free(entries);
		return rc;
	}
	if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0) {
		free(entries);
		return err_fail(err, errlen, -errno, "KVM refused vCPU %u's saved MP state: %s", id, strerror(errno));
	}
	if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0) {
		free(entries);
		return err_fail(err, errlen, -errno, "KVM refused vCPU %u's saved LAPIC: %s", id, strerror(errno));
	}
	rc = restore_msrs(v, entries, nmsrs, true, err, errlen);
	free(entries);
	if (rc)
		return rc;
	/* Payload delivery is a capability vmon does not enable; the rest is what KVM reported. */
	events.flags &= ~(uint32_t)(KVM_VCPUEVENT_VALID_PAYLOAD | KVM_VCPUEVENT_VALID_TRIPLE_FAULT);
	events.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
	SET(KVM_SET_VCPU_EVENTS, events, "pending events");
	p = optional(f, id, "debugregs", &l);
	if (p && ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DEBUGREGS) > 0) {
		struct kvm_debugregs dr;
		LOAD(dr, "debugregs");
		dr.flags = 0;
		SET(KVM_SET_DEBUGREGS, dr, "debug registers");
	}
	return 0;
}

int vcpu_state_advance_tsc(struct vcpu *v, uint64_t ns, char *err, size_t errlen)
{
	int khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
	if (khz <= 0)
		return err_fail(err, errlen, khz < 0 ? -errno : -EINVAL, "cannot read vCPU %u's TSC rate: %s", v->id,
			    strerror(khz < 0 ? errno : EINVAL));
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e.index = MSR_IA32_TSC_INDEX };
	if (ioctl(v->fd, KVM_GET_MSRS, &m) != 1)
		return err_fail(err, errlen, -EIO, "cannot read vCPU %u's TSC", v->id);
	m.e.data += vm_clock_tsc_ticks(ns, (uint32_t)khz);
	if (ioctl(v->fd, KVM_SET_MSRS, &m) != 1)
		return err_fail(err, errlen, -EIO, "KVM refused to move vCPU %u's TSC forward", v->id);
	return 0;
}
