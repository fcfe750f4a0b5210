/* Puts a kernel, its initrd and the x86 boot structures into a created VM, ready to run. */
#ifndef VMON_VM_VM_BOOT_H
#define VMON_VM_VM_BOOT_H

#include <stddef.h>

struct vm;

#define VM_DEFAULT_CMDLINE "console=ttyS0"

/* Returns 0, or a negative errno after logging what went wrong. */
int vm_boot_setup(struct vm *vm);

/* The command line the guest gets: the user's (or the default) plus what the host needs. */
int vm_boot_cmdline(const struct vm *vm, char *buf, size_t len);

#endif
