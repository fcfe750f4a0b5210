/*
 * Where vmon puts things in guest-physical memory at boot. Low memory below 1 MiB holds the
 * boot structures; the kernel goes where its headers ask (normally 16 MiB); the initrd goes
 * at the top of low RAM. The hole below 4 GiB is for MMIO.
 */
#ifndef VMON_ARCH_X86_LAYOUT_H
#define VMON_ARCH_X86_LAYOUT_H

#define LAYOUT_GDT          0x00000500ULL /* boot GDT: null, code64, data (4 entries) */
#define LAYOUT_IDT          0x00000520ULL /* empty IDT: any exception before the kernel sets one triple-faults */
#define LAYOUT_BOOT_PARAMS  0x00007000ULL /* the "zero page", struct boot_params, 4 KiB */
#define LAYOUT_BOOT_STACK   0x00008ff0ULL /* initial RSP */
#define LAYOUT_PML4         0x00009000ULL /* identity page tables: PML4, PDPT, 4 PDs of 2 MiB pages */
#define LAYOUT_PDPT         0x0000a000ULL
#define LAYOUT_PD           0x0000b000ULL /* 4 pages: 0xb000..0xefff maps the first 4 GiB */
#define LAYOUT_CMDLINE      0x00020000ULL
#define LAYOUT_CMDLINE_MAX  0x00010000ULL /* 64 KiB */
#define LAYOUT_MPTABLE      0x0009fc00ULL /* start of the EBDA, where Linux looks for an MP table */
#define LAYOUT_EBDA_END     0x000a0000ULL
#define LAYOUT_ACPI_RSDP    0x000e0000ULL /* in the BIOS area Linux scans for "RSD PTR " */
#define LAYOUT_ACPI_TABLES  0x000e0040ULL /* XSDT, FADT, DSDT, MADT follow the RSDP */
#define LAYOUT_ACPI_END     0x000ff000ULL
#define LAYOUT_VMGENID      0x000ff000ULL /* the VM generation ID's 16 bytes (devices/vmgenid.h), reserved in e820 */
#define LAYOUT_HIMEM        0x00100000ULL /* 1 MiB: start of ordinary RAM in the e820 map */
#define LAYOUT_KERNEL_DEFAULT 0x01000000ULL /* 16 MiB, Linux's default CONFIG_PHYSICAL_START */

/* MMIO in the hole below 4 GiB. */
#define LAYOUT_PCI_MMIO_START 0xc0000000ULL
#define LAYOUT_IOAPIC       0xfec00000ULL
#define LAYOUT_LAPIC        0xfee00000ULL

/* The ACPI Generic Event Device's interrupt (edge, active high): the VM generation ID's notification. */
#define LAYOUT_GED_GSI      10

/* Port I/O used by vmon's own platform devices. */
#define PORT_ACPI_PM_BASE   0x600 /* ACPI hardware-reduced sleep control/status and reset registers */
#define PORT_PVPANIC        0x505 /* pvpanic: the guest writes here when its kernel panics */

#endif
