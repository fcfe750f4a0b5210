#include "boot/elf_loader.h"

#include <elf.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "lib/util.h"

bool elf_has_magic(const uint8_t *data, size_t len)
{
	return len >= SELFMAG && memcmp(data, ELFMAG, SELFMAG) == 0;
}

/* Memory a guest needs so that RAM covers [0, end), given the MMIO hole below 4 GiB. */
static uint64_t memory_needed_for(uint64_t end)
{
	if (end <= GUEST_MEM_LOW_LIMIT)
		return end;
	return GUEST_MEM_LOW_LIMIT + (end - GUEST_MEM_HIGH_BASE);
}

/* The most RAM --memory accepts (config.c); a segment above it cannot be fixed with --memory. */
#define MEMORY_OPTION_MAX (1024 * GiB)

static int segment_outside_ram(uint64_t start, uint64_t end, const char *what, char *err, size_t errlen)
{
	bool in_hole = start < GUEST_MEM_HIGH_BASE && end > GUEST_MEM_LOW_LIMIT;
	if (in_hole) {
		snprintf(err, errlen,
			 "%s has a segment at 0x%" PRIx64 "-0x%" PRIx64 " that overlaps the MMIO hole at "
			 "3-4 GiB, where there is no guest RAM; link it below 3 GiB",
			 what, start, end);
		return -EINVAL;
	}
	if (memory_needed_for(end) > MEMORY_OPTION_MAX) {
		snprintf(err, errlen,
			 "%s has a segment at 0x%" PRIx64 "-0x%" PRIx64 ", beyond the 1T of guest RAM vmon "
			 "supports; link it lower (Linux uses 16 MiB)",
			 what, start, end);
		return -EINVAL;
	}
	snprintf(err, errlen,
		 "%s has a segment at 0x%" PRIx64 "-0x%" PRIx64 " beyond the end of guest RAM; "
		 "it needs --memory of at least %" PRIu64 "M",
		 what, start, end, (uint64_t)MEMORY_OPTION_MIB(memory_needed_for(end)));
	return -E2BIG;
}

/* Checks one PT_LOAD against the file and guest RAM; 0 or a negative errno with err set. */
static int check_segment(const struct guest_mem *mem, const Elf64_Phdr *ph, size_t len, const char *what,
			 char *err, size_t errlen)
{
	if (ph->p_filesz > ph->p_memsz || ph->p_offset > len || ph->p_filesz > len - ph->p_offset) {
		snprintf(err, errlen,
			 "%s is truncated or corrupt: a segment at file offset 0x%" PRIx64 " of 0x%" PRIx64
			 " bytes runs past the end of the file",
			 what, (uint64_t)ph->p_offset, (uint64_t)ph->p_filesz);
		return -ENOEXEC;
	}
	uint64_t start = ph->p_paddr;
	uint64_t end;
	if (__builtin_add_overflow(start, ph->p_memsz, &end)) {
		snprintf(err, errlen,
			 "%s is corrupt: a segment at 0x%" PRIx64 " of 0x%" PRIx64 " bytes has an invalid "
			 "range (it runs past the end of the 64-bit address space)",
			 what, start, (uint64_t)ph->p_memsz);
		return -ENOEXEC;
	}
	if (start < LAYOUT_HIMEM) {
		snprintf(err, errlen,
			 "%s has a segment at 0x%" PRIx64 "-0x%" PRIx64 " in the first MiB of guest memory, "
			 "where vmon keeps its boot structures; link it at 1 MiB or above (Linux uses 16 MiB)",
			 what, start, end);
		return -EINVAL;
	}
	if (!gpa_to_host(mem, start, ph->p_memsz))
		return segment_outside_ram(start, end, what, err, errlen);
	return 0;
}

/*
 * e_entry is a virtual address in most executables but Linux links vmlinux with a physical
 * one; a virtual entry is translated with the offset of the segment that contains it.
 */
static int entry_to_physical(const Elf64_Ehdr *eh, const Elf64_Phdr *phs, const char *what, uint64_t *entry,
			     char *err, size_t errlen)
{
	uint64_t e = eh->e_entry;
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned i = 0; i < eh->e_phnum; i++) {
			const Elf64_Phdr *ph = &phs[i];
			if (ph->p_type != PT_LOAD || ph->p_memsz == 0)
				continue;
			uint64_t base = pass == 0 ? ph->p_vaddr : ph->p_paddr;
			if (e >= base && e - base < ph->p_memsz) {
				*entry = ph->p_paddr + (e - base);
				return 0;
			}
		}
	}
	snprintf(err, errlen, "%s has its entry point 0x%" PRIx64 " outside all of its loadable segments",
		 what, e);
	return -ENOEXEC;
}

static int read_headers(const uint8_t *data, size_t len, const char *what, Elf64_Ehdr *eh, char *err,
			size_t errlen)
{
	if (!elf_has_magic(data, len)) {
		snprintf(err, errlen, "%s is not an ELF file", what);
		return -ENOEXEC;
	}
	if (len < EI_NIDENT || data[EI_CLASS] != ELFCLASS64) {
		snprintf(err, errlen,
			 "%s is a 32-bit ELF file; vmon boots 64-bit x86 kernels (an x86-64 vmlinux or bzImage)",
			 what);
		return -ENOEXEC;
	}
	if (len < sizeof(*eh)) {
		snprintf(err, errlen, "%s is truncated: it is too short for an ELF header", what);
		return -ENOEXEC;
	}
	memcpy(eh, data, sizeof(*eh));
	if (data[EI_DATA] != ELFDATA2LSB || eh->e_machine != EM_X86_64) {
		snprintf(err, errlen,
			 "%s is an ELF file for another machine (e_machine %u); vmon boots x86-64 kernels",
			 what, eh->e_machine);
		return -ENOEXEC;
	}
	if (eh->e_type != ET_EXEC) {
		snprintf(err, errlen, "%s is an ELF file but not an executable (e_type %u)", what, eh->e_type);
		return -ENOEXEC;
	}
	if (eh->e_phnum == 0 || eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phoff > len ||
	    (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > len - eh->e_phoff) {
		snprintf(err, errlen, "%s is truncated or corrupt: its program headers are missing or cut off",
			 what);
		return -ENOEXEC;
	}
	return 0;
}

int elf_load(struct guest_mem *mem, const uint8_t *data, size_t len, const char *what,
	     struct kernel_image *out, char *err, size_t errlen)
{
	Elf64_Ehdr eh;
	int rc = read_headers(data, len, what, &eh, err, errlen);
	if (rc < 0)
		return rc;

	/* Copied out: program headers in the file need not be aligned for direct access. */
	Elf64_Phdr *phs = malloc((size_t)eh.e_phnum * sizeof(*phs));
	if (!phs) {
		snprintf(err, errlen, "out of host memory while loading %s", what);
		return -ENOMEM;
	}
	memcpy(phs, data + eh.e_phoff, (size_t)eh.e_phnum * sizeof(*phs));

	uint64_t lo = UINT64_MAX, hi = 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		if (phs[i].p_type != PT_LOAD || phs[i].p_memsz == 0)
			continue;
		if ((rc = check_segment(mem, &phs[i], len, what, err, errlen)) < 0)
			goto out;
		lo = MIN(lo, (uint64_t)phs[i].p_paddr);
		hi = MAX(hi, (uint64_t)(phs[i].p_paddr + phs[i].p_memsz));
	}
	if (hi == 0) {
		snprintf(err, errlen, "%s has no loadable segments", what);
		rc = -ENOEXEC;
		goto out;
	}
	uint64_t entry;
	if ((rc = entry_to_physical(&eh, phs, what, &entry, err, errlen)) < 0)
		goto out;

	for (unsigned i = 0; i < eh.e_phnum; i++) {
		const Elf64_Phdr *ph = &phs[i];
		if (ph->p_type != PT_LOAD || ph->p_memsz == 0)
			continue;
		uint8_t *dst = gpa_to_host_write(mem, ph->p_paddr, ph->p_memsz); /* checked above */
		memcpy(dst, data + ph->p_offset, ph->p_filesz);
		memset(dst + ph->p_filesz, 0, ph->p_memsz - ph->p_filesz);
		guest_mem_wrote(mem, dst, ph->p_memsz);
	}
	out->entry = entry;
	out->load_start = lo;
	out->load_end = hi;
out:
	free(phs);
	return rc;
}
