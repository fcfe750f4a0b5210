/*
 * Runs inside a Linux guest: can a user process reach CPL0 by jumping to the kernel's system
 * call entry? It must not: on hardware the jump is a user-mode fetch of a supervisor page, a
 * page fault, SIGSEGV. On hosts where vmon completes SYSCALLs itself (docs/host-quirks.md)
 * that same fault is what vmon inspects, so this checks vmon tells it from a real SYSCALL.
 *
 * A child process looks up entry_SYSCALL_64 in /proc/kallsyms and jumps there dressed as a
 * system call (RAX = getpid, RCX just after a real `syscall` instruction, R11 = its RFLAGS),
 * with a SIGSEGV handler that reports the faulting address. If the kernel ran the "system
 * call", the child comes back at RCX at CPL3 as if it had made one.
 *
 * Prints one line, "VMON-TEST syscall_entry_jump=sigsegv" (the fault, at the entry, and the
 * guest carried on), "=escalated" (the jump became a system call), "=other ..." or
 * "=no-symbol" (kallsyms unreadable), and exits 0 only for sigsegv. Built with gcc -static.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

enum { CHILD_SEGV_AT_ENTRY = 10, CHILD_SEGV_ELSEWHERE = 11, CHILD_RETURNED = 12 };

static uintptr_t entry;

static uintptr_t find_symbol(const char *name)
{
	FILE *f = fopen("/proc/kallsyms", "r");
	if (!f)
		return 0;
	/* Few, large reads: every system call is slow where the guest kernel is emulated. */
	static char buf[1 << 16];
	setvbuf(f, buf, _IOFBF, sizeof(buf));
	char line[256];
	uintptr_t addr = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long a;
		char type, sym[200];
		if (sscanf(line, "%llx %c %199s", &a, &type, sym) == 3 && strcmp(sym, name) == 0) {
			addr = (uintptr_t)a;
			break;
		}
	}
	fclose(f);
	return addr;
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	_exit((uintptr_t)si->si_addr == entry ? CHILD_SEGV_AT_ENTRY : CHILD_SEGV_ELSEWHERE);
}

static void jump_to_entry(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, NULL);
	long nr = SYS_getpid;
	__asm__ volatile("lea 1f(%%rip), %%rcx\n"
			 "pushfq\n"
			 "pop %%r11\n"
			 "jmp *%[entry]\n"
			 "syscall\n"
			 "1:\n"
			 : "+a"(nr)
			 : [entry] "r"(entry)
			 : "rcx", "r11", "memory", "cc");
	_exit(CHILD_RETURNED);
}

int main(void)
{
	entry = find_symbol("entry_SYSCALL_64");
	if (!entry) {
		printf("VMON-TEST syscall_entry_jump=no-symbol\n");
		return 1;
	}
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		printf("VMON-TEST syscall_entry_jump=other fork failed\n");
		return 1;
	}
	if (pid == 0)
		jump_to_entry();
	int status;
	if (waitpid(pid, &status, 0) != pid) {
		printf("VMON-TEST syscall_entry_jump=other waitpid failed\n");
		return 1;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_SEGV_AT_ENTRY) {
		printf("VMON-TEST syscall_entry_jump=sigsegv\n");
		return 0;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_RETURNED)
		printf("VMON-TEST syscall_entry_jump=escalated\n");
	else if (WIFEXITED(status))
		printf("VMON-TEST syscall_entry_jump=other exit %d\n", WEXITSTATUS(status));
	else
		printf("VMON-TEST syscall_entry_jump=other signal %d\n", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	return 1;
}
