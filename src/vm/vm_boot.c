#include "vm/vm_boot.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86/acpi.h"
#include "arch/x86/boot_params.h"
#include "arch/x86/cpuid.h"
#include "arch/x86/layout.h"
#include "arch/x86/long_mode.h"
#include "arch/x86/mptable.h"
#include "boot/kernel.h"
#include "lib/log.h"
#include "vm/platform.h"
#include "vm/vcpu.h"
#include "vm/vm.h"

int vm_boot_cmdline(const struct vm *vm, char *buf, size_t len)
{
	const char *user = vm->cfg->cmdline ? vm->cfg->cmdline : VM_DEFAULT_CMDLINE;
	char host_opts[1024];
	int rc = cpuid_guest_cmdline_options(&vm->host, host_opts, sizeof(host_opts));
	if (rc)
		return rc;
	/*
	 * Speculation mitigations make a kernel run instructions (verw, ...) that limited emulators
	 * fail on; such a host is itself a guest whose host carries the mitigations.
	 */
	if (vm->host.emulator_limited) {
		size_t used = strlen(host_opts);
		snprintf(host_opts + used, sizeof(host_opts) - used, "%smitigations=off", used ? " " : "");
	}
	int n = snprintf(buf, len, "%s%s%s", user, host_opts[0] ? " " : "", host_opts);
	if (n < 0 || (size_t)n >= len)
		return -ENOSPC;
	if (host_opts[0])
		log_info("boot", "this host's KVM cannot run some instructions; adding kernel options: %s", host_opts);
	return 0;
}

int vm_boot_setup(struct vm *vm)
{
	char err[512];
	struct kernel_image k;
	int rc = kernel_load(&vm->mem, vm->cfg->kernel_path, &k, err, sizeof(err));
	if (rc) {
		log_error("boot", "%s", err);
		return rc;
	}
	log_info("boot", "loaded %s: %s, entry 0x%llx", vm->cfg->kernel_path, k.format, (unsigned long long)k.entry);

	uint64_t initrd_gpa = 0, initrd_size = 0;
	if (vm->cfg->initrd_path) {
		rc = initrd_load(&vm->mem, vm->cfg->initrd_path, &k, &initrd_gpa, &initrd_size, err, sizeof(err));
		if (rc) {
			log_error("boot", "%s", err);
			return rc;
		}
	}

	/* The MP table only fits 40 vCPUs in the EBDA; beyond that ACPI's MADT alone describes them. */
	rc = mptable_write(&vm->mem, vm->ncpus);
	if (rc == -ENOSPC)
		log_info("boot", "%u vCPUs do not fit in an MP table; only ACPI describes them (kernels booted "
				 "with acpi=off will see one CPU)", vm->ncpus);
	else if (rc) {
		log_error("boot", "cannot write the MP table: %s", strerror(-rc));
		return rc;
	}
	uint64_t rsdp = 0;
	if ((rc = long_mode_write_tables(&vm->mem)) || (rc = acpi_write_tables(&vm->mem, vm->ncpus, &rsdp))) {
		log_error("boot", "cannot write the boot tables into guest memory: %s", strerror(-rc));
		return rc;
	}

	/* The guest's first generation ID; every restore gives it a new one. */
	struct platform *p = vm->platform;
	uint8_t genid[VMGENID_LEN];
	if (p && ((rc = vmgenid_generate(genid)) || (rc = vmgenid_set(&p->vmgenid, &vm->mem, genid)))) {
		log_error("boot", "cannot write the VM generation ID into guest memory: %s", strerror(-rc));
		return rc;
	}

	char cmdline[LAYOUT_CMDLINE_MAX];
	if ((rc = vm_boot_cmdline(vm, cmdline, sizeof(cmdline)))) {
		log_error("boot", "the kernel command line is longer than %llu bytes",
			  (unsigned long long)LAYOUT_CMDLINE_MAX);
		return rc;
	}
	rc = boot_params_write(&vm->mem, &k, cmdline, initrd_gpa, initrd_size, rsdp, err, sizeof(err));
	if (rc) {
		log_error("boot", "%s", err);
		return rc;
	}
	rc = long_mode_setup_bsp(vm->vcpus[0]->fd, k.entry, LAYOUT_BOOT_PARAMS);
	if (rc) {
		log_error("boot", "cannot set the boot CPU's registers: %s", strerror(-rc));
		return rc;
	}
	return 0;
}
