#include "sandbox/seccomp_log.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "lib/util.h"
#include "sandbox/sandbox.h"

#define MAX_SYSCALL_NR 512

/* Filled once by seccomp_log_install_handler, so that the handler only reads. */
static char *syscall_names[MAX_SYSCALL_NR];

/*
 * sandbox_raw_syscall(nr, a1..a6): the one system call instruction the log-mode filters allow
 * whatever the call; the filter recognises it by the address that follows it.
 */
long sandbox_raw_syscall(long nr, long a1, long a2, long a3, long a4, long a5, long a6);
extern const char sandbox_raw_syscall_end[];
__asm__(".text\n"
	".type sandbox_raw_syscall,@function\n"
	"sandbox_raw_syscall:\n"
	"	movq %rdi, %rax\n"
	"	movq %rsi, %rdi\n"
	"	movq %rdx, %rsi\n"
	"	movq %rcx, %rdx\n"
	"	movq %r8, %r10\n"
	"	movq %r9, %r8\n"
	"	movq 8(%rsp), %r9\n"
	"	syscall\n"
	"sandbox_raw_syscall_end:\n"
	"	ret\n"
	".size sandbox_raw_syscall, .-sandbox_raw_syscall\n");

static size_t append(char *buf, size_t at, size_t cap, const char *s)
{
	while (*s && at + 1 < cap)
		buf[at++] = *s++;
	return at;
}

static size_t append_num(char *buf, size_t at, size_t cap, long v)
{
	char digits[24];
	size_t n = 0;
	unsigned long u = v < 0 ? (unsigned long)-v : (unsigned long)v;
	do {
		digits[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u && n < sizeof(digits));
	if (v < 0 && at + 1 < cap)
		buf[at++] = '-';
	while (n && at + 1 < cap)
		buf[at++] = digits[--n];
	return at;
}

/* Async-signal-safe: a fixed buffer, one write(2), and the raw system call. */
static void on_sigsys(int sig, siginfo_t *si, void *ucv)
{
	(void)sig;
	ucontext_t *uc = ucv;
	greg_t *g = uc->uc_mcontext.gregs;
	int nr = si->si_syscall;
	const char *name = nr >= 0 && nr < MAX_SYSCALL_NR && syscall_names[nr] ? syscall_names[nr] : "?";
	char line[256];
	size_t n = append(line, 0, sizeof(line), "vmon: [seccomp] the ");
	/* The role is in the thread's name (sandbox_enter), which threads it starts inherit. */
	char comm[17] = "";
	sandbox_raw_syscall(SYS_prctl, PR_GET_NAME, (long)comm, 0, 0, 0, 0);
	/* libmicrohttpd renames the api threads "MHD-listen" and "MHD-connection". */
	const char *role = strncmp(comm, "MHD-", 4) ? sandbox_role_name(SANDBOX_MAIN) : sandbox_role_name(SANDBOX_API);
	for (int r = 0; r < SANDBOX_ROLE_COUNT; r++)
		if (!strcmp(comm, sandbox_role_name((enum sandbox_role)r)))
			role = comm;
	n = append(line, n, sizeof(line), role);
	n = append(line, n, sizeof(line), " thread called ");
	n = append(line, n, sizeof(line), name);
	n = append(line, n, sizeof(line), " (system call ");
	n = append_num(line, n, sizeof(line), nr);
	n = append(line, n, sizeof(line), "), which its filter forbids: allowed because of --seccomp log\n");
	sandbox_raw_syscall(SYS_write, STDERR_FILENO, (long)line, (long)n, 0, 0, 0);
	g[REG_RAX] = sandbox_raw_syscall(nr, g[REG_RDI], g[REG_RSI], g[REG_RDX], g[REG_R10], g[REG_R8], g[REG_R9]);
}

int seccomp_log_install_handler(void)
{
	for (int nr = 0; nr < MAX_SYSCALL_NR; nr++)
		if (!syscall_names[nr])
			syscall_names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigsys;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	return sigaction(SIGSYS, &sa, NULL) < 0 ? -errno : 0;
}

/* libseccomp 2.5 exports a filter only to a file descriptor. */
static int export_bpf(scmp_filter_ctx ctx, struct sock_filter **out, size_t *count)
{
	int fd = memfd_create("vmon-seccomp", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = seccomp_export_bpf(ctx, fd);
	off_t len = rc ? 0 : lseek(fd, 0, SEEK_CUR);
	struct sock_filter *prog = NULL;
	if (!rc && (len <= 0 || len % (off_t)sizeof(*prog)))
		rc = -EIO;
	if (!rc && !(prog = malloc((size_t)len)))
		rc = -ENOMEM;
	if (!rc && pread(fd, prog, (size_t)len, 0) != len)
		rc = -EIO;
	close(fd);
	if (rc) {
		free(prog);
		return rc;
	}
	*out = prog;
	*count = (size_t)len / sizeof(*prog);
	return 0;
}

int seccomp_log_load(scmp_filter_ctx ctx)
{
	struct sock_filter *body = NULL;
	size_t nbody = 0;
	int rc = export_bpf(ctx, &body, &nbody);
	if (rc)
		return rc;
	uint64_t ip = (uint64_t)(uintptr_t)sandbox_raw_syscall_end;
	/* The instruction pointer after sandbox_raw_syscall's syscall: allow; anything else: the policy. */
	struct sock_filter prefix[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, instruction_pointer)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)ip, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, instruction_pointer) + 4),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(ip >> 32), 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	size_t n = ARRAY_SIZE(prefix) + nbody;
	struct sock_filter *all = malloc(n * sizeof(*all));
	if (!all) {
		free(body);
		return -ENOMEM;
	}
	memcpy(all, prefix, sizeof(prefix));
	memcpy(all + ARRAY_SIZE(prefix), body, nbody * sizeof(*body));
	free(body);
	struct sock_fprog prog = { .len = (unsigned short)n, .filter = all };
	rc = prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0 ? -errno : 0;
	free(all);
	return rc;
}
