#include "migration/postcopy_dest.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lib/util.h"
#include "migration/handshake.h"
#include "migration/postcopy_uffd.h"
#include "migration/postcopy_wire.h"
#include "migration/transport_conn.h"
#include "sandbox/sandbox.h"


enum { PC_RUNNING, PC_COMPLETE, PC_FAILED };

struct postcopy_dest {
	struct guest_mem *mem;
	struct pc_link link;
	int uffd, stop_fd, event_fd;
	uint64_t npages;
	uint64_t *received, *requested, *pending; /* one bit per page, atomic */
	bool poison, zeropage;                    /* the kernel's UFFDIO_POISON, and ZEROPAGE on this RAM */
	pthread_t fault_thread, recv_thread;
	bool threads;
	pthread_mutex_t lock;
	/* Under lock: the verdict is sent; every page is here and the done record waits for the verdict. */
	bool told, done_due;
	bool abandoned; /* postcopy_dest_free() ended it while it ran */
	struct mig_rec_postcopy_end done;
	int state;
	int rc;
	char why[640];
	struct postcopy_dest_stats st; /* __atomic */
};

static bool bit_test(const uint64_t *b, uint64_t i)
{
	return __atomic_load_n(&b[i / 64], __ATOMIC_ACQUIRE) & (1ULL << (i % 64));
}

/* Sets bit i; whether it was set before. */
static bool bit_set(uint64_t *b, uint64_t i)
{
	return __atomic_fetch_or(&b[i / 64], 1ULL << (i % 64), __ATOMIC_ACQ_REL) & (1ULL << (i % 64));
}

static void count(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

static void fire(int fd)
{
	uint64_t one = 1;
	ssize_t n = write(fd, &one, sizeof(one));
	(void)n; /* an eventfd only fails to count past its maximum: it is readable then anyway */
}

/* Every page not here faults with SIGBUS (SIGSEGV without UFFDIO_POISON) from now on; waiting threads wake to it. */
static void make_unreachable(struct postcopy_dest *d)
{
	for (int i = 0; i < d->mem->nregions; i++) {
		struct guest_mem_region *r = &d->mem->regions[i];
		if (!d->poison) {
			mprotect(r->host, r->size, PROT_NONE);
		} else {
			for (uint64_t off = 0; off < r->size;) {
				struct uffdio_poison p = { .range = { (uintptr_t)r->host + off, r->size - off } };
				if (ioctl(d->uffd, UFFDIO_POISON, &p) == 0)
					break;
				if (errno == EAGAIN && p.updated > 0) {
					off += (uint64_t)p.updated;
					continue;
				}
				/* EEXIST: a page here stops the range; go past it. */
				off += (p.updated > 0 ? (uint64_t)p.updated : 0) + MIG_PAGE_SIZE;
			}
		}
		struct uffdio_range all = { (uintptr_t)r->host, r->size };
		ioctl(d->uffd, UFFDIO_WAKE, &all);
	}
}

static void dest_end(struct postcopy_dest *d, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Ends post-copy once: complete (rc 0) or failed, the VM lost. */
static void dest_end(struct postcopy_dest *d, int rc, const char *fmt, ...)
{
	pthread_mutex_lock(&d->lock);
	if (d->state != PC_RUNNING) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	if (rc) {
		va_list ap;
		va_start(ap, fmt);
		char what[512];
		vsnprintf(what, sizeof(what), fmt, ap);
		va_end(ap);
		snprintf(d->why, sizeof(d->why),
			 "%s; the VM is lost (the pages not yet here exist only on the source): stop it, and start it "
			 "again from its disks",
			 what);
		make_unreachable(d);
		/* Wakes the other thread's reads and writes at once instead of after their deadline. */
		shutdown(d->link.conn->fd, SHUT_RDWR);
	}
	d->rc = rc;
	d->state = rc ? PC_FAILED : PC_COMPLETE;
	pthread_mutex_unlock(&d->lock);
	fire(d->stop_fd);
	fire(d->event_fd);
}

/* The host address of gpa's page in the registered mapping. */
static uint64_t host_of(const struct postcopy_dest *d, uint64_t gpa)
{
	return (uintptr_t)gpa_to_host(d->mem, gpa, MIG_PAGE_SIZE);
}

/* Marks count pages from gpa here; the ones that were here already are duplicates. */
static void mark_received(struct postcopy_dest *d, uint64_t gpa, uint64_t n, bool zero)
{
	uint64_t first = pc_page_index(d->mem, gpa), dup = 0;
	for (uint64_t i = 0; i < n; i++)
		dup += bit_set(d->received, first + i);
	count(zero ? &d->st.zero_pages : &d->st.pages, n - dup);
	count(&d->st.duplicates, dup);
}

/* One UFFDIO_COPY or ZEROPAGE of [dst, dst+len); EEXIST (a page already here) and EAGAIN are the caller's. */
static int install_once(struct postcopy_dest *d, uint64_t dst, const uint8_t *src, uint64_t len, int64_t *done)
{
	int rc;
	if (src || !d->zeropage) {
		static const uint8_t zeros[MIG_PAGE_SIZE] __attribute__((aligned(MIG_PAGE_SIZE)));
		if (!src)
			len = MIG_PAGE_SIZE;
		struct uffdio_copy c = { .dst = dst, .src = (uintptr_t)(src ? src : zeros), .len = len };
		rc = ioctl(d->uffd, UFFDIO_COPY, &c) ? -errno : 0;
		*done = rc ? c.copy : (int64_t)len;
	} else {
		struct uffdio_zeropage z = { .range = { dst, len } };
		rc = ioctl(d->uffd, UFFDIO_ZEROPAGE, &z) ? -errno : 0;
		*done = rc ? z.zeropage : (int64_t)len;
	}
	return rc;
}

/* Installs count pages at gpa (data, or zeros when src is NULL), each page once. 0 or -errno. */
static int install(struct postcopy_dest *d, uint64_t gpa, const uint8_t *src, uint64_t n)
{
	uint64_t dst = host_of(d, gpa), len = n * MIG_PAGE_SIZE, off = 0;
	while (off < len) {
		int64_t done = 0;
		int rc = install_once(d, dst + off, src ? src + off : NULL, len - off, &done);
		if (done > 0)
			off += (uint64_t)done;
		else if (rc == -EEXIST)
			off += MIG_PAGE_SIZE; /* installed already: a request and the push both brought it */
		else if (rc && rc != -EAGAIN)
			return rc;
	}
	mark_received(d, gpa, n, !src);
	return 0;
}

static int finish(struct postcopy_dest *d, char *err, size_t errlen)
{
	uint64_t missing = 0;
	for (uint64_t i = 0; i < d->npages; i++)
		missing += bit_test(d->pending, i) && !bit_test(d->received, i);
	if (missing)
		return mig_fail(err, errlen, -EINVAL,
				"post-copy: the source ended post-copy with %llu of the pages it announced never sent",
				(unsigned long long)missing);
	for (int i = 0; i < d->mem->nregions; i++) {
		struct uffdio_range r = { (uintptr_t)d->mem->regions[i].host, d->mem->regions[i].size };
		if (ioctl(d->uffd, UFFDIO_UNREGISTER, &r))
			return mig_fail(err, errlen, -errno, "post-copy: cannot unregister guest RAM from userfaultfd: %s",
					strerror(errno));
	}
	struct mig_rec_postcopy_end done = { .pages = __atomic_load_n(&d->st.pages, __ATOMIC_RELAXED) +
						       __atomic_load_n(&d->st.zero_pages, __ATOMIC_RELAXED),
					     .requests = __atomic_load_n(&d->st.requests, __ATOMIC_RELAXED) };
	/* The source takes the done record as the end: the verdict must be on the wire before it. */
	pthread_mutex_lock(&d->lock);
	int rc = 0;
	if (d->told)
		rc = pc_write(&d->link, MIG_REC_POSTCOPY_DONE, &done, sizeof(done), NULL, 0, err, errlen);
	else {
		d->done = done;
		d->done_due = true;
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}

int postcopy_dest_tell(struct postcopy_dest *d, const char *refusal, char *err, size_t errlen)
{
	struct mig_rec_verdict v;
	mig_verdict_make(&v, refusal);
	pthread_mutex_lock(&d->lock);
	int rc = d->told ? mig_fail(err, errlen, -EALREADY, "post-copy: the source was told already")
			 : pc_write(&d->link, MIG_REC_VERDICT, &v, sizeof(v), NULL, 0, err, errlen);
	d->told = true;
	if (!rc && d->done_due && !refusal)
		rc = pc_write(&d->link, MIG_REC_POSTCOPY_DONE, &d->done, sizeof(d->done), NULL, 0, err, errlen);
	pthread_mutex_unlock(&d->lock);
	return rc;
}

/* One record from the source: pages installed, or the end. 1 at the end, 0 to go on, -errno. */
static int receive_one(struct postcopy_dest *d, uint8_t *buf, char *err, size_t errlen)
{
	uint32_t type, len;
	uint64_t rec = d->link.rx_offset;
	int rc = pc_read(&d->link, false, &type, buf, &len, err, errlen);
	if (rc)
		return rc;
	struct mig_rec_pages run;
	switch (type) {
	case MIG_REC_PAGES:
	case MIG_REC_ZERO:
		memcpy(&run, buf, sizeof(run));
		if (type == MIG_REC_PAGES && run.count != (len - sizeof(run)) / MIG_PAGE_SIZE)
			return mig_fail(err, errlen, -EINVAL,
					"post-copy: the memory record at byte %llu says it holds %llu pages but carries %zu",
					(unsigned long long)rec, (unsigned long long)run.count,
					(size_t)((len - sizeof(run)) / MIG_PAGE_SIZE));
		if ((rc = pc_check_run(d->mem, mig_rec_name(type), rec, run.gpa, run.count, d->npages, err, errlen)))
			return rc;
		rc = install(d, run.gpa, type == MIG_REC_PAGES ? buf + sizeof(run) : NULL, run.count);
		if (rc)
			return mig_fail(err, errlen, rc, "post-copy: cannot install the pages at 0x%llx into guest RAM: %s",
					(unsigned long long)run.gpa, strerror(-rc));
		return 0;
	case MIG_REC_POSTCOPY_END:
		rc = finish(d, err, errlen);
		return rc ? rc : 1;
	default:
		return mig_fail(err, errlen, -EINVAL, "post-copy: the source sent a %s at byte %llu, which post-copy does not have",
				mig_rec_name(type), (unsigned long long)rec);
	}
}

static void *receiver(void *arg)
{
	struct postcopy_dest *d = arg;
	sandbox_enter(SANDBOX_POSTCOPY);
	char err[512] = "post-copy: out of memory for the receive buffer";
	/* Page-aligned page data for UFFDIO_COPY: the payload starts that far before a page boundary. */
	size_t size = (PC_REC_MAX + 2 * MIG_PAGE_SIZE - 1) / MIG_PAGE_SIZE * MIG_PAGE_SIZE;
	uint8_t *buf = aligned_alloc(MIG_PAGE_SIZE, size);
	int rc = buf ? 0 : -ENOMEM;
	while (!rc)
		rc = receive_one(d, buf + MIG_PAGE_SIZE - sizeof(struct mig_rec_pages), err, sizeof(err));
	pthread_mutex_lock(&d->lock);
	if (rc < 0 && d->abandoned) {
		rc = -ECANCELED;
		snprintf(err, sizeof(err), "post-copy: stopped before every page arrived");
	}
	pthread_mutex_unlock(&d->lock);
	dest_end(d, rc < 0 ? rc : 0, "%s", err);
	free(buf);
	return NULL;
}

/* The page a fault was on: asked for once, unless it arrived meanwhile. */
static int serve_fault(struct postcopy_dest *d, uint64_t addr, char *err, size_t errlen)
{
	count(&d->st.faults, 1);
	addr &= ~(uint64_t)(MIG_PAGE_SIZE - 1);
	for (int i = 0; i < d->mem->nregions; i++) {
		const struct guest_mem_region *r = &d->mem->regions[i];
		if (addr < (uintptr_t)r->host || addr - (uintptr_t)r->host >= r->size)
			continue;
		uint64_t gpa = r->gpa + (addr - (uintptr_t)r->host);
		uint64_t page = pc_page_index(d->mem, gpa);
		if (bit_test(d->received, page)) {
			/* It arrived between the fault and now: UFFDIO_COPY woke the thread already; this is for safety. */
			struct uffdio_range w = { addr, MIG_PAGE_SIZE };
			ioctl(d->uffd, UFFDIO_WAKE, &w);
			return 0;
		}
		if (bit_set(d->requested, page))
			return 0; /* asked for already: its arrival wakes every thread waiting on it */
		count(&d->st.requests, 1);
		struct mig_rec_page_request q = { .gpa = gpa, .count = 1 };
		return pc_write(&d->link, MIG_REC_PAGE_REQUEST, &q, sizeof(q), NULL, 0, err, errlen);
	}
	return 0; /* not guest RAM: registered ranges are guest RAM only */
}

static void *fault_handler(void *arg)
{
	struct postcopy_dest *d = arg;
	sandbox_enter(SANDBOX_POSTCOPY);
	char err[512] = "";
	struct pollfd p[2] = { { .fd = d->uffd, .events = POLLIN }, { .fd = d->stop_fd, .events = POLLIN } };
	int rc = 0;
	while (!rc) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			rc = mig_fail(err, sizeof(err), -errno, "post-copy: cannot wait for page faults: %s", strerror(errno));
			break;
		}
		if (p[1].revents)
			break;
		struct uffd_msg msg[16];
		ssize_t n = read(d->uffd, msg, sizeof(msg));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0) {
			rc = mig_fail(err, sizeof(err), -errno, "post-copy: cannot read page faults: %s", strerror(errno));
			break;
		}
		for (size_t i = 0; !rc && i < (size_t)n / sizeof(msg[0]); i++)
			if (msg[i].event == UFFD_EVENT_PAGEFAULT)
				rc = serve_fault(d, msg[i].arg.pagefault.address, err, sizeof(err));
	}
	if (rc)
		dest_end(d, rc, "%s", err);
	return NULL;
}

/* A userfaultfd: the system call, else /dev/userfaultfd (hosts that keep the call for privileged users). */
static int open_uffd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0)
		return fd;
	int e = errno;
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return -e;
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	e = errno;
	close(dev);
	return fd >= 0 ? fd : -e;
}

static int setup_uffd(struct postcopy_dest *d, char *err, size_t errlen)
{
	int probe = open_uffd();
	if (probe < 0)
		return mig_fail(err, errlen, -EOPNOTSUPP,
				"post-copy: this host gives vmon no userfaultfd (%s): allow it (sysctl "
				"vm.unprivileged_userfaultfd=1, or access to /dev/userfaultfd) or migrate with pre-copy",
				strerror(-probe));
	struct uffdio_api api = { .api = UFFD_API };
	int rc = ioctl(probe, UFFDIO_API, &api) ? -errno : 0;
	close(probe);
	if (rc)
		return mig_fail(err, errlen, -EOPNOTSUPP, "post-copy: this kernel's userfaultfd refuses its API: %s",
				strerror(-rc));
	uint64_t want = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_POISON;
	if (d->mem->fd >= 0 && !(api.features & UFFD_FEATURE_MISSING_SHMEM))
		return mig_fail(err, errlen, -EOPNOTSUPP,
				"post-copy: this kernel cannot serve faults on memfd guest RAM with userfaultfd: run the "
				"guest with --memory SIZE,merge=on or migrate with pre-copy");
	d->poison = api.features & UFFD_FEATURE_POISON;
	if ((d->uffd = open_uffd()) < 0)
		return mig_fail(err, errlen, d->uffd, "post-copy: cannot open a userfaultfd: %s", strerror(-d->uffd));
	api = (struct uffdio_api){ .api = UFFD_API, .features = want & api.features };
	if (ioctl(d->uffd, UFFDIO_API, &api))
		return mig_fail(err, errlen, -errno, "post-copy: cannot enable userfaultfd's features: %s", strerror(errno));
	d->zeropage = true;
	for (int i = 0; i < d->mem->nregions; i++) {
		struct uffdio_register reg = {
			.range = { (uintptr_t)d->mem->regions[i].host, d->mem->regions[i].size },
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};
		if (ioctl(d->uffd, UFFDIO_REGISTER, &reg))
			return mig_fail(err, errlen, -errno, "post-copy: cannot register guest RAM with userfaultfd: %s",
					strerror(errno));
		if (!(reg.ioctls & (1ULL << _UFFDIO_COPY)))
			return mig_fail(err, errlen, -EOPNOTSUPP,
					"post-copy: this kernel cannot install pages into this guest RAM (no UFFDIO_COPY)");
		d->zeropage &= !!(reg.ioctls & (1ULL << _UFFDIO_ZEROPAGE));
	}
	return 0;
}

/* The runs of pages the source sends again: dropped here, so they fault until their new bytes arrive. */
static int read_discards(struct postcopy_dest *d, uint64_t runs, uint64_t pending, char *err, size_t errlen)
{
	struct mig_rec_pages run;
	uint64_t total = 0;
	uint8_t buf[sizeof(run)];
	for (uint64_t i = 0; i < runs; i++) {
		uint64_t rec = d->link.rx_offset;
		struct mig_rec_hdr h;
		/* A discard record is the only one allowed here: read it whole, no larger record fits buf. */
		ssize_t n = mig_conn_read(d->link.conn, &h, sizeof(h));
		if (n != (ssize_t)sizeof(h))
			return mig_fail(err, errlen, -EPIPE, "post-copy: the source stopped in the discard records at byte %llu: %s",
					(unsigned long long)rec, n < 0 ? mig_conn_error(d->link.conn) : "it closed the connection");
		if (mig_crc(0, &h, offsetof(struct mig_rec_hdr, hdr_crc)) != h.hdr_crc || h.type != MIG_REC_DISCARD ||
		    h.len != sizeof(run))
			return mig_fail(err, errlen, -EINVAL,
					"post-copy: byte %llu holds no discard record (%llu of them were announced)",
					(unsigned long long)rec, (unsigned long long)runs);
		n = mig_conn_read(d->link.conn, buf, h.len);
		d->link.rx_offset += sizeof(h) + h.len;
		if (n != (ssize_t)h.len || mig_crc(0, buf, h.len) != h.crc)
			return mig_fail(err, errlen, -EINVAL, "post-copy: the discard record at byte %llu is cut short or corrupted",
					(unsigned long long)rec);
		memcpy(&run, buf, sizeof(run));
		int rc = pc_check_run(d->mem, "discard record", rec, run.gpa, run.count, d->npages, err, errlen);
		if (rc)
			return rc;
		if ((rc = guest_mem_discard(d->mem, run.gpa, run.count * MIG_PAGE_SIZE)))
			return mig_fail(err, errlen, rc, "post-copy: cannot drop the stale pages at 0x%llx: %s",
					(unsigned long long)run.gpa, strerror(-rc));
		uint64_t first = pc_page_index(d->mem, run.gpa);
		for (uint64_t p = 0; p < run.count; p++)
			total += !bit_set(d->pending, first + p);
	}
	if (total != pending)
		return mig_fail(err, errlen, -EINVAL,
				"post-copy: the discard records name %llu distinct pages; the switch record announced %llu",
				(unsigned long long)total, (unsigned long long)pending);
	return 0;
}

static int check_backing(const struct guest_mem *mem, char *err, size_t errlen)
{
	if (mem->backing == GUEST_MEM_HUGETLB)
		return mig_fail(err, errlen, -EOPNOTSUPP,
				"post-copy cannot serve guest RAM of 2 MiB hugepages: every fault would wait for a whole "
				"2 MiB page from the source; migrate this VM with pre-copy, or receive it without "
				"hugepages=on");
	if (mem->file_backed)
		return mig_fail(err, errlen, -EOPNOTSUPP,
				"post-copy cannot serve guest RAM mapped from a snapshot file: receive the VM into memfd "
				"or merge=on RAM");
	return 0;
}

int postcopy_dest_start(struct postcopy_dest **out, struct guest_mem *mem, struct mig_conn *conn, uint64_t offset,
			uint64_t discard_runs, uint64_t pending, char *err, size_t errlen)
{
	*out = NULL;
	int rc = check_backing(mem, err, errlen);
	if (rc)
		return rc;
	struct postcopy_dest *d = calloc(1, sizeof(*d));
	if (!d)
		return mig_fail(err, errlen, -ENOMEM, "post-copy: out of memory");
	d->mem = mem;
	d->uffd = d->stop_fd = d->event_fd = -1;
	d->npages = pc_pages(mem);
	pc_link_init(&d->link, conn, "the source");
	d->link.rx_offset = offset;
	pthread_mutex_init(&d->lock, NULL);
	size_t words = (size_t)(d->npages + 63) / 64;
	d->received = calloc(words, sizeof(uint64_t));
	d->requested = calloc(words, sizeof(uint64_t));
	d->pending = calloc(words, sizeof(uint64_t));
	d->stop_fd = eventfd(0, EFD_CLOEXEC);
	d->event_fd = eventfd(0, EFD_CLOEXEC);
	if (!d->received || !d->requested || !d->pending || d->stop_fd < 0 || d->event_fd < 0)
		rc = mig_fail(err, errlen, -ENOMEM, "post-copy: out of memory for the page bitmaps");
	if (!rc)
		rc = read_discards(d, discard_runs, pending, err, errlen);
	if (!rc)
		rc = setup_uffd(d, err, errlen);
	if (!rc && (rc = -pthread_create(&d->recv_thread, NULL, receiver, d)) == 0) {
		if ((rc = -pthread_create(&d->fault_thread, NULL, fault_handler, d))) {
			dest_end(d, rc, "post-copy: cannot start the fault handler");
			pthread_join(d->recv_thread, NULL);
		}
	}
	if (rc) {
		if (!*err)
			mig_fail(err, errlen, rc, "post-copy: cannot start its threads: %s", strerror(-rc));
		postcopy_dest_free(d);
		return rc;
	}
	d->threads = true;
	*out = d;
	return 0;
}

int postcopy_dest_event_fd(const struct postcopy_dest *d)
{
	return d->event_fd;
}

int postcopy_dest_wait(struct postcopy_dest *d, int timeout_ms, char *err, size_t errlen)
{
	struct pollfd p = { .fd = d->event_fd, .events = POLLIN };
	while (poll(&p, 1, timeout_ms) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&d->lock);
	int rc = d->state == PC_RUNNING ? -EINPROGRESS : d->rc;
	if (d->state == PC_FAILED)
		snprintf(err, errlen, "%s", d->why);
	pthread_mutex_unlock(&d->lock);
	return rc;
}

void postcopy_dest_get_stats(struct postcopy_dest *d, struct postcopy_dest_stats *st)
{
	st->faults = __atomic_load_n(&d->st.faults, __ATOMIC_RELAXED);
	st->requests = __atomic_load_n(&d->st.requests, __ATOMIC_RELAXED);
	st->pages = __atomic_load_n(&d->st.pages, __ATOMIC_RELAXED);
	st->zero_pages = __atomic_load_n(&d->st.zero_pages, __ATOMIC_RELAXED);
	st->duplicates = __atomic_load_n(&d->st.duplicates, __ATOMIC_RELAXED);
}

bool postcopy_dest_lost(const struct postcopy_dest *d, const void *host)
{
	if (__atomic_load_n(&d->state, __ATOMIC_ACQUIRE) != PC_FAILED)
		return false;
	for (int i = 0; i < d->mem->nregions; i++) {
		const struct guest_mem_region *r = &d->mem->regions[i];
		if ((const uint8_t *)host >= r->host && (const uint8_t *)host < r->host + r->size)
			return !bit_test(d->received, pc_page_index(d->mem, r->gpa + (uint64_t)((const uint8_t *)host - r->host)));
	}
	return false;
}

void postcopy_dest_free(struct postcopy_dest *d)
{
	if (!d)
		return;
	if (d->threads) {
		pthread_mutex_lock(&d->lock);
		bool running = d->state == PC_RUNNING;
		d->abandoned = running;
		pthread_mutex_unlock(&d->lock);
		/*
		 * The receiver fails post-copy itself once its read ends: poisoning and waking take
		 * userfaultfd ioctls its confinement allows and the caller's (vmon's main thread at
		 * teardown) need not.
		 */
		if (running)
			shutdown(d->link.conn->fd, SHUT_RDWR);
		pthread_join(d->recv_thread, NULL);
		pthread_join(d->fault_thread, NULL);
	}
	if (d->uffd >= 0)
		close(d->uffd);
	if (d->stop_fd >= 0)
		close(d->stop_fd);
	if (d->event_fd >= 0)
		close(d->event_fd);
	free(d->received);
	free(d->requested);
	free(d->pending);
	pthread_mutex_destroy(&d->lock);
	pc_link_destroy(&d->link);
	free(d);
}
