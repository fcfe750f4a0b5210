/* ELF vmlinux loading through kernel_load(), and the file errors every kernel format shares. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "boot/kernel.h"
#include "lib/util.h"
#include "memory/guest_mem.h"

#define RAM (32 * MiB)
#define KVIRT 0xffffffff80000000ULL /* Linux's __START_KERNEL_map */

struct seg {
	uint64_t paddr, vaddr;
	uint32_t filesz;
	uint64_t memsz;
	uint8_t fill;
};

/* An ELF64 x86-64 executable with the given PT_LOADs, each file part filled with seg.fill. */
static uint8_t *build_elf(const struct seg *segs, int n, uint64_t entry, size_t *len)
{
	size_t off = sizeof(Elf64_Ehdr) + (size_t)n * sizeof(Elf64_Phdr);
	size_t total = off;
	for (int i = 0; i < n; i++)
		total += segs[i].filesz;
	uint8_t *buf = calloc(1, total);
	Elf64_Ehdr eh = { .e_type = ET_EXEC, .e_machine = EM_X86_64, .e_version = EV_CURRENT, .e_entry = entry,
			  .e_phoff = sizeof(Elf64_Ehdr), .e_ehsize = sizeof(Elf64_Ehdr),
			  .e_phentsize = sizeof(Elf64_Phdr), .e_phnum = (uint16_t)n };
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	memcpy(buf, &eh, sizeof(eh));
	for (int i = 0; i < n; i++) {
		Elf64_Phdr ph = { .p_type = PT_LOAD, .p_flags = PF_R | PF_X, .p_offset = off,
				  .p_vaddr = segs[i].vaddr, .p_paddr = segs[i].paddr, .p_filesz = segs[i].filesz,
				  .p_memsz = segs[i].memsz, .p_align = 0x1000 };
		memcpy(buf + sizeof(Elf64_Ehdr) + (size_t)i * sizeof(Elf64_Phdr), &ph, sizeof(ph));
		memset(buf + off, segs[i].fill, segs[i].filesz);
		off += segs[i].filesz;
	}
	*len = total;
	return buf;
}

static char tmp_path[64];

static const char *write_temp(const void *data, size_t len)
{
	strcpy(tmp_path, "/tmp/vmon-test-elf-XXXXXX");
	int fd = mkstemp(tmp_path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	return tmp_path;
}

/* Loads an in-memory image through kernel_load(); returns its result. */
static int load_image(struct guest_mem *mem, const void *data, size_t len, struct kernel_image *k, char *err,
		      size_t errlen)
{
	const char *path = write_temp(data, len);
	int rc = kernel_load(mem, path, k, err, errlen);
	unlink(path);
	return rc;
}

static int setup(void **state)
{
	struct guest_mem *mem = calloc(1, sizeof(*mem));
	assert_int_equal(guest_mem_init(mem, RAM), 0);
	*state = mem;
	return 0;
}

static int teardown(void **state)
{
	guest_mem_destroy(*state);
	free(*state);
	return 0;
}

static const struct seg two_segs[] = {
	{ .paddr = 0x200000, .vaddr = KVIRT + 0x200000, .filesz = 0x1000, .memsz = 0x1000, .fill = 0xa1 },
	{ .paddr = 0x400000, .vaddr = KVIRT + 0x400000, .filesz = 0x100, .memsz = 0x3000, .fill = 0xb2 },
};

static bool all_bytes(const struct guest_mem *mem, uint64_t gpa, uint64_t len, uint8_t v)
{
	const uint8_t *p = gpa_to_host(mem, gpa, len);
	assert_non_null(p);
	for (uint64_t i = 0; i < len; i++)
		if (p[i] != v)
			return false;
	return true;
}

static void test_loads_segments_at_paddr_and_zeroes_bss(void **state)
{
	struct guest_mem *mem = *state;
	/* Garbage where the bss goes, to see it cleared. */
	memset(gpa_to_host_write(mem, 0x400000, 0x3000), 0xee, 0x3000);
	size_t len;
	uint8_t *elf = build_elf(two_segs, 2, KVIRT + 0x200010, &len);
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(mem, elf, len, &k, err, sizeof(err)), 0);
	assert_true(all_bytes(mem, 0x200000, 0x1000, 0xa1));
	assert_true(all_bytes(mem, 0x400000, 0x100, 0xb2));
	assert_true(all_bytes(mem, 0x400100, 0x2f00, 0));
	assert_true(all_bytes(mem, 0x201000, 0x1000, 0)); /* nothing written between segments */
	assert_int_equal(k.entry, 0x200010); /* virtual entry turned physical */
	assert_int_equal(k.load_start, 0x200000);
	assert_int_equal(k.load_end, 0x403000);
	assert_false(k.has_setup_header);
	assert_int_equal(k.initrd_addr_max, 0xffffffffULL);
	assert_string_equal(k.format, "ELF vmlinux");
	free(elf);
}

static void test_physical_entry_is_kept(void **state)
{
	/* Linux links vmlinux with e_entry = physical startup_64. */
	size_t len;
	uint8_t *elf = build_elf(two_segs, 2, 0x400020, &len);
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(*state, elf, len, &k, err, sizeof(err)), 0);
	assert_int_equal(k.entry, 0x400020);
	free(elf);
}

static void test_entry_outside_segments(void **state)
{
	size_t len;
	uint8_t *elf = build_elf(two_segs, 2, 0x900000, &len);
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(*state, elf, len, &k, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "entry point 0x900000"));
	free(elf);
}

static void test_32bit_elf_refused(void **state)
{
	size_t len;
	uint8_t *elf = build_elf(two_segs, 2, 0x200000, &len);
	elf[EI_CLASS] = ELFCLASS32;
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(*state, elf, len, &k, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "32-bit ELF"));
	assert_non_null(strstr(err, "/tmp/vmon-test-elf-"));
	free(elf);
}

static void test_other_machine_refused(void **state)
{
	size_t len;
	uint8_t *elf = build_elf(two_segs, 2, 0x200000, &len);
	uint16_t aarch64 = EM_AARCH64;
	memcpy(elf + offsetof(Elf64_Ehdr, e_machine), &aarch64, 2);
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(*state, elf, len, &k, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "another machine"));
	free(elf);
}

static void test_segment_beyond_ram_says_memory_needed(void **state)
{
	struct seg s = { .paddr = 0x3000000, .vaddr = 0x3000000, .filesz = 0x100, .memsz = 0x1000, .fill = 1 };
	size_t len;
	uint8_t *elf = build_elf(&s, 1, 0x3000000, &len);
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(*state, elf, len, &k, err, sizeof(err)), -E2BIG);
	assert_non_null(strstr(err, "--memory of at least 50M")); /* 48M + 4K, in --memory's 2M steps */
	free(elf);
}

/* The advice must be a value --memory accepts: a segment just above 2 GiB needs 2050M, not 2049M. */
static void test_memory_advice_is_a_multiple_of_2m(void **state)
{
	struct seg s = { .paddr = 0x80000000, .vaddr = 0x80000000, .filesz = 0x100, .memsz = 0x1000, .fill = 1 };
	size_t len;
	uint8_t *elf = build_elf(&s, 1, 0x80000000, &len);
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(*state, elf, len, &k, err, sizeof(err)), -E2BIG);
	assert_non_null(strstr(err, "--memory of at least 2050M"));
	free(elf);
}

/* A range that wraps past 2^64 is corrupt: no wrapped range printed, no linking advice. */
static void test_segment_wrapping_past_2_64_is_invalid(void **state)
{
	static const struct seg cases[] = {
		{ .paddr = 0xfffffffffffff000, .vaddr = 0xfffffffffffff000, .filesz = 0x100, .memsz = 0x2000, .fill = 1 },
		{ .paddr = 0x1000000, .vaddr = 0x1000000, .filesz = 0x100, .memsz = 0xffffffffffffff00ULL, .fill = 1 },
	};
	for (size_t i = 0; i < 2; i++) {
		size_t len;
		uint8_t *elf = build_elf(&cases[i], 1, cases[i].paddr, &len);
		struct kernel_image k;
		char err[512] = "";
		assert_int_equal(load_image(*state, elf, len, &k, err, sizeof(err)), -ENOEXEC);
		assert_non_null(strstr(err, "invalid range"));
		assert_null(strstr(err, "3 GiB"));
		assert_null(strstr(err, "--memory"));
		free(elf);
	}
}

/* An address no --memory value can reach is not answered with a --memory value. */
static void test_segment_beyond_supported_ram(void **state)
{
	struct seg s = { .paddr = 0xffff000000000000, .vaddr = 0xffff000000000000, .filesz = 0x100, .memsz = 0x1000,
			 .fill = 1 };
	size_t len;
	uint8_t *elf = build_elf(&s, 1, s.paddr, &len);
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(*state, elf, len, &k, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "beyond the 1T of guest RAM vmon supports"));
	assert_null(strstr(err, "--memory"));
	free(elf);
}

/* A FIFO would block open() until a writer comes; it is refused at once (alarm: a hang fails). */
static void test_fifo_refused_without_blocking(void **state)
{
	char path[] = "/tmp/vmon-test-fifo-XXXXXX";
	assert_non_null(mkdtemp(path));
	char fifo[64];
	snprintf(fifo, sizeof(fifo), "%s/kernel", path);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	struct kernel_image k;
	char err[512] = "";
	alarm(10);
	int rc = kernel_load(*state, fifo, &k, err, sizeof(err));
	alarm(0);
	unlink(fifo);
	rmdir(path);
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(err, "is not a regular file (a FIFO)"));
	assert_non_null(strstr(err, "kernel /tmp/vmon-test-fifo-"));
}

static void test_segment_in_mmio_hole(void **state)
{
	struct seg s = { .paddr = 0xd0000000, .vaddr = 0xd0000000, .filesz = 0x100, .memsz = 0x1000, .fill = 1 };
	size_t len;
	uint8_t *elf = build_elf(&s, 1, 0xd0000000, &len);
	struct kernel_image k;
	char err[512] = "";
	assert_true(load_image(*state, elf, len, &k, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "MMIO hole"));
	free(elf);
}

static void test_segment_in_low_memory_refused(void **state)
{
	struct seg s = { .paddr = 0x8000, .vaddr = 0x8000, .filesz = 0x100, .memsz = 0x1000, .fill = 1 };
	size_t len;
	uint8_t *elf = build_elf(&s, 1, 0x8000, &len);
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(*state, elf, len, &k, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "first MiB"));
	assert_true(all_bytes(*state, 0x8000, 0x100, 0)); /* nothing was written */
	free(elf);
}

static void test_truncated_segment(void **state)
{
	size_t len;
	uint8_t *elf = build_elf(two_segs, 2, 0x200000, &len);
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(*state, elf, len - 0x80, &k, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "truncated"));
	free(elf);
}

static void test_truncated_program_headers(void **state)
{
	size_t len;
	uint8_t *elf = build_elf(two_segs, 2, 0x200000, &len);
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(*state, elf, sizeof(Elf64_Ehdr) + 10, &k, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "program headers"));
	free(elf);
}

static void test_missing_file(void **state)
{
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(kernel_load(*state, "/nonexistent/vmlinux", &k, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/vmlinux"));
	assert_non_null(strstr(err, "does not exist"));
}

/* Checks the result of loading an unreadable file; runs as a user that cannot read it. */
static int unreadable_result(struct guest_mem *mem, const char *path)
{
	struct kernel_image k;
	char err[512] = "";
	int rc = kernel_load(mem, path, &k, err, sizeof(err));
	return rc == -EACCES && strstr(err, "not readable") && strstr(err, path);
}

static void test_unreadable_file(void **state)
{
	size_t len;
	uint8_t *elf = build_elf(two_segs, 2, 0x200000, &len);
	const char *path = write_temp(elf, len);
	assert_int_equal(chmod(path, 0), 0);
	if (geteuid() != 0) {
		assert_true(unreadable_result(*state, path));
	} else {
		/* root reads anything: check as an unprivileged user in a child. */
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			_exit(setuid(65534) == 0 && unreadable_result(*state, path) ? 0 : 1);
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	unlink(path);
	free(elf);
}

static void test_directory(void **state)
{
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(kernel_load(*state, "/tmp", &k, err, sizeof(err)), -EISDIR);
	assert_non_null(strstr(err, "kernel /tmp is a directory"));
}

static void test_empty_file(void **state)
{
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(*state, "", 0, &k, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "is empty"));
}

static void test_not_a_kernel(void **state)
{
	static const char text[] = "#!/bin/sh\necho this is not a kernel, but it is long enough\n";
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(*state, text, sizeof(text), &k, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "not a Linux kernel"));
	assert_non_null(strstr(err, "ELF vmlinux or a bzImage"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_loads_segments_at_paddr_and_zeroes_bss, setup, teardown),
		cmocka_unit_test_setup_teardown(test_physical_entry_is_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_entry_outside_segments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_32bit_elf_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_machine_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_segment_beyond_ram_says_memory_needed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_memory_advice_is_a_multiple_of_2m, setup, teardown),
		cmocka_unit_test_setup_teardown(test_segment_wrapping_past_2_64_is_invalid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_segment_beyond_supported_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_segment_in_mmio_hole, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fifo_refused_without_blocking, setup, teardown),
		cmocka_unit_test_setup_teardown(test_segment_in_low_memory_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated_segment, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated_program_headers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_kernel, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
