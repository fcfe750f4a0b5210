#include "sandbox/seccomp_policy.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <termios.h>

#include "lib/util.h"
#include "migration/postcopy_uffd.h"

#define IOCTL(r) { (unsigned long)(r), #r }

/*
 * Every SCMP_An() comparison names datum_b, even where the operator ignores it: the fuzz build
 * (clang, -Wmissing-field-initializers) refuses the macro's short form.
 */

/*
 * Every thread: futexes (pthread locks and condition variables), the allocator's mappings
 * (never executable, see the mmap/mprotect rules below), returning from a signal handler (the
 * vCPU kick), one-line logs to stderr and the JSON log file, clocks and pthread_kill (a stop
 * kicks the vCPUs from whichever thread asks for it), thread exit.
 */
const char *const seccomp_common_syscalls[] = {
	"futex", "brk", "munmap", "madvise", "mremap",
	"rt_sigreturn", "rt_sigprocmask", "restart_syscall",
	"write", "writev", "lseek", "fstat", "newfstatat",
	"clock_gettime", "gettimeofday", "clock_nanosleep", "nanosleep", "sched_yield",
	"getpid", "gettid", "tgkill", "getrandom",
	/* Ending the whole process is never a privilege; any thread may do it on a fatal error. */
	"exit", "exit_group",
	/*
	 * A crash in any thread (SIGSEGV, SIGABRT...): the console's fatal-signal handler gives the
	 * terminal back (ioctl(0, TCSETS), allowed in allow_terminal_restore) and puts the previous
	 * handler back before re-raising, so the crash is reported as itself, not as SIGSYS.
	 */
	"rt_sigaction",
#if defined(__SANITIZE_ADDRESS__)
	/*
	 * ASan/UBSan builds only: the runtime's shadow-memory upkeep, its alternate signal stack,
	 * and the leak check at exit (it stops the threads with ptrace from a helper task and reads
	 * /proc/self/maps and /proc/self/task).
	 */
	"sigaltstack", "rt_sigaction", "prctl", "getrlimit", "prlimit64", "sched_getaffinity",
	"getdents", "open", "openat", "read", "close", "getdents64", "readlink", "ptrace", "wait4", "clone", "exit_group",
	"getppid", "pipe2", "dup2",
#endif
};
const size_t seccomp_ncommon_syscalls = ARRAY_SIZE(seccomp_common_syscalls);

/* Tears the VM down: joins threads, closes descriptors, restores the terminal, removes sockets. */
static const char *const main_syscalls[] = {
	"read", "close", "unlink", "epoll_ctl", "shutdown", "io_uring_enter", "exit_group",
};
static const struct ioctl_request main_ioctls[] = {
	IOCTL(TCGETS), IOCTL(TCSETS), IOCTL(TCSETSW), IOCTL(TCSETSF),
};

/* A signal during set-up ends vmon at once, after giving the terminal back. */
static const char *const signal_syscalls[] = { "rt_sigtimedwait" };
static const struct ioctl_request signal_ioctls[] = {
	IOCTL(TCGETS), IOCTL(TCSETS), IOCTL(TCSETSW), IOCTL(TCSETSF),
};

/*
 * libmicrohttpd's listener starts a thread per connection; requests pause and resume the VM,
 * read its state for a snapshot and write the snapshot's files, read /proc/self for metrics.
 */
static const char *const api_syscalls[] = {
	"accept", "accept4", "recvfrom", "recvmsg", "sendto", "sendmsg", "read", "poll", "ppoll", "select",
	"pselect6", "shutdown", "close", "setsockopt", "getsockopt", "getsockname", "getpeername", "fcntl",
	"set_robust_list", "rseq", "sigaltstack",
	"openat", "mkdir", "mkdirat", "pread64", "pwrite64", "ftruncate", "fsync", "fdatasync", "rename",
	"renameat", "renameat2", "unlink", "unlinkat", "statx", "io_uring_enter", "epoll_ctl", "eventfd2",
	/*
	 * Snapshots (src/state/snapshot.c): flock on the directory against a second writer, dup and
	 * getdents64 to sweep temporary and old memory files; readlink of /proc/self/fd names the
	 * memory file in mem_state.c's error messages.
	 */
	"flock", "dup", "getdents64", "readlink",
	/*
	 * Migration's tracking of vmon's own writes into guest RAM (src/memory/write_track.c): one
	 * barrier on every thread when it starts, so no device write goes unmarked.
	 */
	"membarrier",
	/*
	 * Live migration's source (src/migration/transport*.c): a TCP connection to the destination,
	 * made without blocking; getaddrinfo asks nscd, then the name servers of /etc/resolv.conf
	 * (a UDP socket, sendmmsg, FIONREAD) and reads uname for the search domain.
	 */
	"connect", "sendmmsg", "uname",
};
static const struct ioctl_request api_ioctls[] = {
	IOCTL(KVM_RUN), IOCTL(KVM_GET_REGS), IOCTL(KVM_GET_SREGS), IOCTL(KVM_GET_FPU), IOCTL(KVM_GET_MSRS),
	IOCTL(KVM_GET_XSAVE), IOCTL(KVM_GET_XSAVE2), IOCTL(KVM_GET_XCRS), IOCTL(KVM_GET_DEBUGREGS),
	IOCTL(KVM_GET_LAPIC), IOCTL(KVM_GET_MP_STATE), IOCTL(KVM_GET_VCPU_EVENTS), IOCTL(KVM_GET_TSC_KHZ),
	IOCTL(KVM_GET_CLOCK), IOCTL(KVM_SET_CLOCK), IOCTL(KVM_GET_IRQCHIP), IOCTL(KVM_GET_PIT2),
	IOCTL(KVM_CHECK_EXTENSION), IOCTL(KVM_GET_MSR_INDEX_LIST), IOCTL(KVM_GET_SUPPORTED_CPUID),
	IOCTL(KVM_IRQ_LINE), IOCTL(FIONREAD),
	/* Migration's dirty-page log (src/memory/kvm_slots.c): logging on and off per slot, and reading it. */
	IOCTL(KVM_SET_USER_MEMORY_REGION), IOCTL(KVM_GET_DIRTY_LOG), IOCTL(KVM_CLEAR_DIRTY_LOG),
};

static const char *const console_in_syscalls[] = { "read", "poll", "ppoll" };
static const struct ioctl_request console_in_ioctls[] = { IOCTL(KVM_IRQ_LINE) };

/* The serial output writer (stdout, a file or a socket) and --console2 file='s writer. */
static const char *const console_out_syscalls[] = { "read", "poll", "ppoll", "sendto" };

/*
 * Backends: eventfds, io_uring disks, qcow2 disks (pread/pwrite, fdatasync, hole punching),
 * tap and user-mode networking (libslirp opens host sockets for the guest's connections),
 * vsock and console sockets, timers.
 */
static const char *const event_loop_syscalls[] = {
	"epoll_wait", "epoll_pwait", "epoll_ctl", "read", "readv", "pread64", "pwrite64", "fdatasync", "fallocate",
	"recvfrom",
	"recvmsg", "sendto", "sendmsg", "connect", "accept", "accept4", "bind", "listen", "setsockopt",
	"getsockopt", "getsockname", "getpeername", "shutdown", "close", "fcntl", "poll", "ppoll",
	"timerfd_settime", "timerfd_gettime", "io_uring_enter",
};
static const struct ioctl_request event_loop_ioctls[] = {
	IOCTL(FIONBIO), IOCTL(FIONREAD), IOCTL(TUNSETOFFLOAD), IOCTL(KVM_IRQ_LINE),
};

/*
 * Exit handling: device emulation, the instruction emulator's register and FPU access, a
 * virtio device's activation (ioeventfds, irqfds, MSI routes), the serial output, and a
 * queue notification handled on the vCPU (qcow2 disks then read and write there).
 * While a migration throttles the vCPUs (src/vm/throttle.c), each vCPU thread makes, arms and
 * deletes its own POSIX timer, which signals that thread alone (SIGEV_THREAD_ID); the hold
 * between two KVM_RUNs is a futex wait on a CLOCK_MONOTONIC condition variable.
 */
static const char *const vcpu_syscalls[] = {
	"read", "close", "epoll_ctl", "timerfd_settime", "io_uring_enter", "pread64", "pwrite64", "fdatasync",
	"fallocate", "timer_create", "timer_settime", "timer_delete",
};
static const struct ioctl_request vcpu_ioctls[] = {
	IOCTL(KVM_RUN), IOCTL(KVM_GET_REGS), IOCTL(KVM_SET_REGS), IOCTL(KVM_GET_SREGS), IOCTL(KVM_SET_SREGS),
	IOCTL(KVM_GET_VCPU_EVENTS), IOCTL(KVM_SET_VCPU_EVENTS), IOCTL(KVM_GET_MSRS), IOCTL(KVM_GET_XCRS),
	IOCTL(KVM_GET_FPU), IOCTL(KVM_SET_FPU), IOCTL(KVM_GET_XSAVE), IOCTL(KVM_GET_XSAVE2),
	IOCTL(KVM_SET_XSAVE), IOCTL(KVM_IRQ_LINE), IOCTL(KVM_IRQFD), IOCTL(KVM_IOEVENTFD),
	IOCTL(KVM_SET_GSI_ROUTING), IOCTL(KVM_CHECK_EXTENSION), IOCTL(KVM_GET_SUPPORTED_CPUID),
	IOCTL(TUNSETOFFLOAD),
};

/*
 * Post-copy's destination threads (migration/postcopy_dest.c): the fault handler reads
 * userfaultfd events and sends page requests, the receiver reads pages off the migration
 * connection and installs them; at the end they unregister guest RAM, and when the source is
 * lost they poison the missing pages (UFFDIO_POISON, Linux 6.6) and wake every waiting thread.
 */
static const char *const postcopy_syscalls[] = {
	"poll", "ppoll", "read", "recvfrom", "recvmsg", "sendto", "sendmsg", "shutdown",
};
static const struct ioctl_request postcopy_ioctls[] = {
	IOCTL(UFFDIO_COPY), IOCTL(UFFDIO_ZEROPAGE), IOCTL(UFFDIO_WAKE), IOCTL(UFFDIO_UNREGISTER),
	IOCTL(UFFDIO_POISON),
};

/*
 * libslirp reads /etc/resolv.conf (fopen) when the guest first queries the user-mode network's
 * DNS server, and again when the file changes: the event loop may open files read-only.
 */
/* A role's list, and its ioctl requests when it has any. */
#define SYSCALLS(l) .syscalls = l, .nsyscalls = ARRAY_SIZE(l)
#define IOCTLS(l) .ioctls = l, .nioctls = ARRAY_SIZE(l)

static const struct seccomp_policy policies[SANDBOX_ROLE_COUNT] = {
	[SANDBOX_MAIN] = { SYSCALLS(main_syscalls), IOCTLS(main_ioctls) },
	[SANDBOX_SIGNAL] = { SYSCALLS(signal_syscalls), IOCTLS(signal_ioctls) },
	[SANDBOX_API] = { SYSCALLS(api_syscalls), IOCTLS(api_ioctls), .threads = true, .names_threads = true,
			  .sockets = true },
	[SANDBOX_CONSOLE_IN] = { SYSCALLS(console_in_syscalls), IOCTLS(console_in_ioctls) },
	[SANDBOX_CONSOLE_OUT] = { SYSCALLS(console_out_syscalls) },
	[SANDBOX_EVENT_LOOP] = { SYSCALLS(event_loop_syscalls), IOCTLS(event_loop_ioctls), .sockets = true,
				 .reads_files = true },
	[SANDBOX_VCPU] = { SYSCALLS(vcpu_syscalls), IOCTLS(vcpu_ioctls) },
	[SANDBOX_POSTCOPY] = { SYSCALLS(postcopy_syscalls), IOCTLS(postcopy_ioctls) },
};

const struct seccomp_policy *seccomp_policy_of(enum sandbox_role role)
{
	return role < SANDBOX_ROLE_COUNT ? &policies[role] : NULL;
}

/* A name listed twice (in the common list and a role's) is allowed once. */
static int allow_name(scmp_filter_ctx ctx, const char *name)
{
	int nr = seccomp_syscall_resolve_name(name);
	if (nr == __NR_SCMP_ERROR)
		return -EINVAL;
	int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
	return rc == -EEXIST ? 0 : rc;
}

/* mmap and mprotect never make a page executable: vmon loads no code after start-up. */
static int allow_memory(scmp_filter_ctx ctx)
{
	int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (!rc)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
				      SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	return rc;
}

/* openat(..., O_RDONLY without O_CREAT/O_TRUNC): reading, never creating or changing a file. */
static int allow_read_only_open(scmp_filter_ctx ctx)
{
	return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
				SCMP_A2(SCMP_CMP_MASKED_EQ, O_ACCMODE | O_CREAT | O_TRUNC, O_RDONLY));
}

/*
 * tcsetattr(STDIN_FILENO, TCSANOW, ...) of console_restore_terminal, from any thread's crash.
 * Matched on the request only: libseccomp 2.5 builds a wrong filter when one ioctl rule also
 * compares the descriptor and the others do not (other system calls get killed).
 */
static int allow_terminal_restore(scmp_filter_ctx ctx)
{
	/* glibc's tcsetattr reads the terminal's settings (TCGETS) before it sets them (TCSETS). */
	static const unsigned long requests[] = { TCGETS, TCSETS };
	int rc = 0;
	for (size_t i = 0; i < ARRAY_SIZE(requests) && !rc; i++)
		if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
					   SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)requests[i], 0))) == -EEXIST)
			rc = 0; /* the roles that restore the terminal anyway list both */
	return rc;
}

static int allow_threads(scmp_filter_ctx ctx)
{
	/* clone3's flags sit in memory the filter cannot read: glibc falls back to clone on ENOSYS. */
	int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	if (!rc)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				      SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
	return rc;
}

static int allow_sockets(scmp_filter_ctx ctx)
{
	static const int domains[] = { AF_UNIX, AF_INET, AF_INET6 };
	int rc = 0;
	for (size_t i = 0; i < ARRAY_SIZE(domains) && !rc; i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
				      SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)domains[i], 0));
	return rc;
}

int seccomp_policy_build(enum sandbox_role role, uint32_t default_action, scmp_filter_ctx *out)
{
	const struct seccomp_policy *p = seccomp_policy_of(role);
	if (!p)
		return -EINVAL;
	scmp_filter_ctx ctx = seccomp_init(default_action);
	if (!ctx)
		return -ENOMEM;
	int rc = allow_memory(ctx);
	for (size_t i = 0; i < seccomp_ncommon_syscalls && !rc; i++)
		rc = allow_name(ctx, seccomp_common_syscalls[i]);
	for (size_t i = 0; i < p->nsyscalls && !rc; i++)
		rc = allow_name(ctx, p->syscalls[i]);
	for (size_t i = 0; i < p->nioctls && !rc; i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				      SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)p->ioctls[i].request, 0));
	if (!rc)
		rc = allow_terminal_restore(ctx);
	if (!rc && p->threads && (rc = allow_threads(ctx)) == -EEXIST)
		rc = 0; /* sanitizer builds allow clone outright */
	if (!rc && p->sockets)
		rc = allow_sockets(ctx);
	if (!rc && p->reads_files && (rc = allow_read_only_open(ctx)) == -EEXIST)
		rc = 0; /* sanitizer builds allow openat outright */
	if (!rc && p->names_threads &&
	    (rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1, SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME, 0))) == -EEXIST)
		rc = 0; /* sanitizer builds allow prctl outright */
	if (rc) {
		seccomp_release(ctx);
		return rc;
	}
	*out = ctx;
	return 0;
}

static size_t mark(bool *seen, size_t len, int nr)
{
	if (nr < 0 || (size_t)nr >= len || seen[nr])
		return 0;
	seen[nr] = true;
	return 1;
}

size_t seccomp_policy_count(enum sandbox_role role)
{
	const struct seccomp_policy *p = seccomp_policy_of(role);
	if (!p)
		return 0;
	bool seen[1024] = { false };
	size_t n = mark(seen, ARRAY_SIZE(seen), SCMP_SYS(mmap)) + mark(seen, ARRAY_SIZE(seen), SCMP_SYS(mprotect)) +
		   mark(seen, ARRAY_SIZE(seen), SCMP_SYS(ioctl));
	if (p->threads)
		n += mark(seen, ARRAY_SIZE(seen), SCMP_SYS(clone));
	if (p->sockets)
		n += mark(seen, ARRAY_SIZE(seen), SCMP_SYS(socket));
	if (p->names_threads)
		n += mark(seen, ARRAY_SIZE(seen), SCMP_SYS(prctl));
	if (p->reads_files)
		n += mark(seen, ARRAY_SIZE(seen), SCMP_SYS(openat));
	for (size_t i = 0; i < seccomp_ncommon_syscalls; i++)
		n += mark(seen, ARRAY_SIZE(seen), seccomp_syscall_resolve_name(seccomp_common_syscalls[i]));
	for (size_t i = 0; i < p->nsyscalls; i++)
		n += mark(seen, ARRAY_SIZE(seen), seccomp_syscall_resolve_name(p->syscalls[i]));
	return n;
}
