#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/boot_params.h"
#include "arch/x86/layout.h"
#include "lib/util.h"

/* Raw little-endian reads of the zero page, at the offsets Documentation/arch/x86/boot.rst gives. */
static uint64_t raw(const struct guest_mem *mem, uint64_t off, unsigned int size)
{
	uint64_t v = 0;
	assert_int_equal(guest_mem_read(mem, LAYOUT_BOOT_PARAMS + off, &v, size), 0);
	return v;
}

static void check_e820(const struct boot_e820_entry *e, uint64_t addr, uint64_t size, uint32_t type)
{
	assert_int_equal(e->addr, addr);
	assert_int_equal(e->size, size);
	assert_int_equal(e->type, type);
}

static void test_e820_128m(void **state)
{
	(void)state;
	struct guest_mem mem;
	assert_int_equal(guest_mem_init(&mem, 128 * MiB), 0);
	struct boot_e820_entry e[8];
	assert_int_equal(e820_build(&mem, e, 8), 3);
	check_e820(&e[0], 0, 0x9fc00, E820_TYPE_RAM);
	check_e820(&e[1], 0x9fc00, 0x100000 - 0x9fc00, E820_TYPE_RESERVED);
	check_e820(&e[2], 0x100000, 128 * MiB - 0x100000, E820_TYPE_RAM);
	assert_int_equal(e820_build(&mem, e, 2), -ENOSPC);
	guest_mem_destroy(&mem);
}

static void test_e820_5g(void **state)
{
	(void)state;
	struct guest_mem mem;
	assert_int_equal(guest_mem_init(&mem, 5 * GiB), 0);
	struct boot_e820_entry e[8];
	assert_int_equal(e820_build(&mem, e, 8), 4);
	check_e820(&e[0], 0, 0x9fc00, E820_TYPE_RAM);
	check_e820(&e[1], 0x9fc00, 0x60400, E820_TYPE_RESERVED);
	/* RAM stops at the MMIO hole and the rest continues at 4 GiB: 3 + 2 = 5 GiB. */
	check_e820(&e[2], 0x100000, 3 * GiB - 0x100000, E820_TYPE_RAM);
	check_e820(&e[3], 4 * GiB, 2 * GiB, E820_TYPE_RAM);
	uint64_t ram = 0;
	for (int i = 0; i < 4; i++)
		ram += e[i].type == E820_TYPE_RAM ? e[i].size : 0;
	assert_int_equal(ram, 5 * GiB - (0x100000 - 0x9fc00));
	guest_mem_destroy(&mem);
}

static void test_built_header_fields(void **state)
{
	(void)state;
	struct guest_mem mem;
	assert_int_equal(guest_mem_init(&mem, 128 * MiB), 0);
	struct kernel_image k = { .entry = LAYOUT_KERNEL_DEFAULT, .format = "ELF vmlinux" };
	char err[256] = "";
	const char *cmdline = "console=ttyS0 panic=-1";
	assert_int_equal(boot_params_write(&mem, &k, cmdline, 0x7000000, 0x123456, LAYOUT_ACPI_RSDP, err, sizeof(err)), 0);

	assert_int_equal(raw(&mem, 0x1fe, 2), 0xaa55);        /* boot_flag */
	assert_int_equal(raw(&mem, 0x202, 4), 0x53726448);    /* "HdrS" */
	assert_int_equal(raw(&mem, 0x206, 2), 0x020f);        /* version */
	assert_int_equal(raw(&mem, 0x210, 1), 0xff);          /* type_of_loader */
	assert_int_equal(raw(&mem, 0x211, 1) & 0x81, 0x81);   /* LOADED_HIGH | CAN_USE_HEAP */
	assert_int_equal(raw(&mem, 0x224, 2), 0xfe00);        /* heap_end_ptr */
	assert_int_equal(raw(&mem, 0x228, 4), LAYOUT_CMDLINE); /* cmd_line_ptr */
	assert_int_equal(raw(&mem, 0x0c8, 4), 0);             /* ext_cmd_line_ptr */
	assert_int_equal(raw(&mem, 0x218, 4), 0x7000000);     /* ramdisk_image */
	assert_int_equal(raw(&mem, 0x21c, 4), 0x123456);      /* ramdisk_size */
	assert_int_equal(raw(&mem, 0x070, 8), LAYOUT_ACPI_RSDP); /* acpi_rsdp_addr */
	assert_int_equal(raw(&mem, 0x1e8, 1), 3);             /* e820_entries */
	assert_int_equal(raw(&mem, 0x2d0, 8), 0);             /* e820_table[0].addr */
	assert_int_equal(raw(&mem, 0x2d8, 8), 0x9fc00);       /* e820_table[0].size */
	assert_int_equal(raw(&mem, 0x2e0, 4), E820_TYPE_RAM); /* e820_table[0].type */
	assert_int_equal(raw(&mem, 0x2e4, 8), 0x9fc00);       /* e820_table[1].addr: entries are 20 bytes */
	assert_int_equal(raw(&mem, 0x1ef, 1), 0);             /* sentinel: the kernel keeps the page as is */

	char got[64];
	assert_int_equal(guest_mem_read(&mem, LAYOUT_CMDLINE, got, strlen(cmdline) + 1), 0);
	assert_string_equal(got, cmdline);
	guest_mem_destroy(&mem);
}

static void test_no_initrd_no_rsdp(void **state)
{
	(void)state;
	struct guest_mem mem;
	assert_int_equal(guest_mem_init(&mem, 64 * MiB), 0);
	/* Leftovers of a previous boot must not show through. */
	memset(gpa_to_host_write(&mem, LAYOUT_BOOT_PARAMS, 4096), 0xa5, 4096);
	char err[256];
	assert_int_equal(boot_params_write(&mem, NULL, NULL, 0, 0, 0, err, sizeof(err)), 0);
	assert_int_equal(raw(&mem, 0x218, 4), 0);
	assert_int_equal(raw(&mem, 0x21c, 4), 0);
	assert_int_equal(raw(&mem, 0x070, 8), 0);
	assert_int_equal(raw(&mem, 0x0c0, 4), 0);
	char c;
	assert_int_equal(guest_mem_read(&mem, LAYOUT_CMDLINE, &c, 1), 0);
	assert_int_equal(c, '\0');
	guest_mem_destroy(&mem);
}

static void test_initrd_above_4g(void **state)
{
	(void)state;
	struct guest_mem mem;
	assert_int_equal(guest_mem_init(&mem, 5 * GiB), 0);
	char err[256];
	uint64_t initrd = 4 * GiB + 0x200000;
	assert_int_equal(boot_params_write(&mem, NULL, "x", initrd, 0x1000, 0, err, sizeof(err)), 0);
	assert_int_equal(raw(&mem, 0x218, 4), 0x200000); /* ramdisk_image, low half */
	assert_int_equal(raw(&mem, 0x0c0, 4), 1);        /* ext_ramdisk_image, high half */
	assert_int_equal(raw(&mem, 0x1e8, 1), 4);
	assert_int_equal(raw(&mem, 0x2d0 + 3 * 20, 8), 4 * GiB);

	/* An initrd outside RAM is refused with a sentence saying so. */
	assert_int_equal(boot_params_write(&mem, NULL, "x", 7 * GiB, 0x1000, 0, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "initrd"));
	guest_mem_destroy(&mem);
}

/* A bzImage header (protocol 2.15): fields the loader does not own come through unchanged. */
static void make_bzimage_header(struct kernel_image *k)
{
	memset(k, 0, sizeof(*k));
	k->has_setup_header = true;
	snprintf(k->format, sizeof(k->format), "bzImage (lz4 payload)");
	uint8_t *h = k->setup_header;
#define AT(off) (h + (off) - SETUP_HEADER_OFFSET)
	*AT(0x1f1) = 27;                           /* setup_sects */
	memcpy(AT(0x1fe), "\x55\xaa", 2);           /* boot_flag */
	memcpy(AT(0x200), "\xeb\x6a", 2);           /* jmp to 0x26c: the header ends there */
	memcpy(AT(0x202), "HdrS", 4);
	memcpy(AT(0x206), "\x0f\x02", 2);           /* version 2.15 */
	*AT(0x211) = 0x01;                          /* loadflags: LOADED_HIGH */
	memcpy(AT(0x230), "\x00\x00\x20\x00", 4);   /* kernel_alignment 2 MiB */
	*AT(0x234) = 1;                             /* relocatable_kernel */
	memcpy(AT(0x236), "\x7f\x00", 2);           /* xloadflags */
	memcpy(AT(0x238), "\x64\x00\x00\x00", 4);   /* cmdline_size 100 */
	memset(AT(0x26c), 0xcc, 0x290 - 0x26c);     /* setup code after the header */
#undef AT
}

static void test_copied_setup_header(void **state)
{
	(void)state;
	struct guest_mem mem;
	assert_int_equal(guest_mem_init(&mem, 64 * MiB), 0);
	struct kernel_image k;
	make_bzimage_header(&k);
	char err[256];
	assert_int_equal(boot_params_write(&mem, &k, "root=/dev/vda", 0, 0, 0, err, sizeof(err)), 0);
	assert_int_equal(raw(&mem, 0x1f1, 1), 27);
	assert_int_equal(raw(&mem, 0x230, 4), 0x200000);
	assert_int_equal(raw(&mem, 0x234, 1), 1);
	assert_int_equal(raw(&mem, 0x236, 2), 0x7f);
	assert_int_equal(raw(&mem, 0x238, 4), 100);
	assert_int_equal(raw(&mem, 0x211, 1), 0x81);
	assert_int_equal(raw(&mem, 0x210, 1), 0xff);
	assert_int_equal(raw(&mem, 0x228, 4), LAYOUT_CMDLINE);
	/* Bytes past the header's end are setup code, not boot parameters. */
	assert_int_equal(raw(&mem, 0x26c, 8), 0);
	assert_int_equal(raw(&mem, 0x288, 8), 0);
	guest_mem_destroy(&mem);
}

static void test_cmdline_limit(void **state)
{
	(void)state;
	struct guest_mem mem;
	assert_int_equal(guest_mem_init(&mem, 64 * MiB), 0);
	char err[256];
	struct kernel_image k;
	make_bzimage_header(&k);

	char line[4096];
	memset(line, 'a', sizeof(line));
	line[100] = '\0';
	assert_int_equal(boot_params_write(&mem, &k, line, 0, 0, 0, err, sizeof(err)), 0);
	line[100] = 'a';
	line[101] = '\0';
	err[0] = '\0';
	assert_int_equal(boot_params_write(&mem, &k, line, 0, 0, 0, err, sizeof(err)), -E2BIG);
	assert_non_null(strstr(err, "101"));
	assert_non_null(strstr(err, "100"));

	/* Without a header the limit is Linux's COMMAND_LINE_SIZE: 2047 characters and the NUL. */
	memset(line, 'a', sizeof(line));
	line[2047] = '\0';
	assert_int_equal(boot_params_write(&mem, NULL, line, 0, 0, 0, err, sizeof(err)), 0);
	line[2047] = 'a';
	line[2048] = '\0';
	assert_int_equal(boot_params_write(&mem, NULL, line, 0, 0, 0, err, sizeof(err)), -E2BIG);
	assert_non_null(strstr(err, "2047"));
	guest_mem_destroy(&mem);
}

static void test_bad_header(void **state)
{
	(void)state;
	struct guest_mem mem;
	assert_int_equal(guest_mem_init(&mem, 64 * MiB), 0);
	struct kernel_image k;
	make_bzimage_header(&k);
	memcpy(k.setup_header + 0x202 - SETUP_HEADER_OFFSET, "XXXX", 4);
	char err[256] = "";
	assert_int_equal(boot_params_write(&mem, &k, "", 0, 0, 0, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "HdrS"));
	assert_non_null(strstr(err, "bzImage"));
	guest_mem_destroy(&mem);
}

static void test_too_little_ram(void **state)
{
	(void)state;
	struct guest_mem mem;
	assert_int_equal(guest_mem_init(&mem, 64 * KiB), 0); /* boot_params fits, the command line does not */
	char err[256] = "";
	assert_int_equal(boot_params_write(&mem, NULL, "x", 0, 0, 0, err, sizeof(err)), -EFAULT);
	assert_true(strlen(err) > 0);
	guest_mem_destroy(&mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_e820_128m),
		cmocka_unit_test(test_e820_5g),
		cmocka_unit_test(test_built_header_fields),
		cmocka_unit_test(test_no_initrd_no_rsdp),
		cmocka_unit_test(test_initrd_above_4g),
		cmocka_unit_test(test_copied_setup_header),
		cmocka_unit_test(test_cmdline_limit),
		cmocka_unit_test(test_bad_header),
		cmocka_unit_test(test_too_little_ram),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
