#include "boot/bzimage.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "boot/decompress.h"
#include "boot/elf_loader.h"
#include "lib/log.h"
#include "lib/util.h"

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) { return (uint32_t)le16(p) | (uint32_t)le16(p + 2) << 16; }
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

bool bzimage_has_header(const uint8_t *data, size_t len)
{
	return len >= BZ_HEADER_MAGIC_OFF + 4 && memcmp(data + BZ_HEADER_MAGIC_OFF, "HdrS", 4) == 0;
}

/* What the header tells vmon about the kernel, all checked against the file. */
struct bz_header {
	uint16_t version;
	uint64_t pm_offset; /* file offset of the protected-mode part */
	uint64_t payload_offset; /* file offset of the compressed payload */
	uint32_t payload_length;
	uint64_t pref_address;
	uint32_t init_size;
};

static int parse_header(const uint8_t *data, size_t len, const char *path, struct bz_header *h, char *err,
			size_t errlen)
{
	if (len < SETUP_HEADER_OFFSET + SETUP_HEADER_SIZE) {
		snprintf(err, errlen, "kernel %s is truncated: it is too short to hold a bzImage setup header", path);
		return -ENOEXEC;
	}
	h->version = le16(data + BZ_VERSION);
	if (h->version < 0x208) {
		snprintf(err, errlen,
			 "kernel %s uses boot protocol %u.%02u, but vmon needs 2.08 or later (Linux 2.6.26 or newer)",
			 path, h->version >> 8, h->version & 0xff);
		return -ENOEXEC;
	}
	if (!(le16(data + BZ_XLOADFLAGS) & BZ_XLF_KERNEL_64)) {
		snprintf(err, errlen,
			 "kernel %s is a 32-bit-only kernel (its header announces no 64-bit entry point); "
			 "vmon boots x86-64 kernels",
			 path);
		return -ENOEXEC;
	}
	unsigned setup_sects = data[BZ_SETUP_SECTS] ? data[BZ_SETUP_SECTS] : 4;
	h->pm_offset = (uint64_t)(setup_sects + 1) * 512;
	h->payload_offset = h->pm_offset + le32(data + BZ_PAYLOAD_OFFSET);
	h->payload_length = le32(data + BZ_PAYLOAD_LENGTH);
	uint64_t needed = MAX(h->payload_offset + h->payload_length, h->pm_offset + BZ_PM_ENTRY64_OFF + 1);
	if (needed > len) {
		snprintf(err, errlen,
			 "kernel %s is truncated: its header says the bzImage is at least %" PRIu64
			 " bytes long, but the file has %zu",
			 path, needed, len);
		return -ENOEXEC;
	}
	/* pref_address and init_size arrived with protocol 2.10. */
	h->pref_address = h->version >= 0x20a ? le64(data + BZ_PREF_ADDRESS) : LAYOUT_KERNEL_DEFAULT;
	h->init_size = h->version >= 0x20a ? le32(data + BZ_INIT_SIZE) : 0;
	return 0;
}

/* Checks that [start, start+size) is guest RAM, for memory the kernel will use. */
static int check_in_ram(const struct guest_mem *mem, uint64_t start, uint64_t size, const char *path,
			char *err, size_t errlen)
{
	uint64_t end = start + size;
	if (size == 0)
		return 0;
	if (start < LAYOUT_HIMEM) {
		snprintf(err, errlen,
			 "kernel %s asks for memory at 0x%" PRIx64 " in the first MiB of guest memory, where vmon "
			 "keeps its boot structures; its setup header (pref_address) is corrupt",
			 path, start);
		return -EINVAL;
	}
	if (gpa_to_host(mem, start, size))
		return 0;
	if (end < start || end > GUEST_MEM_LOW_LIMIT) {
		snprintf(err, errlen,
			 "kernel %s asks for memory at 0x%" PRIx64 "-0x%" PRIx64 ", beyond the %llu GiB of low "
			 "RAM a guest has; its setup header (pref_address/init_size) is probably corrupt",
			 path, start, end, GUEST_MEM_LOW_LIMIT / GiB);
		return -EINVAL;
	}
	snprintf(err, errlen,
		 "kernel %s needs guest RAM up to 0x%" PRIx64 " for its image and early memory; "
		 "it needs --memory of at least %" PRIu64 "M",
		 path, end, (uint64_t)(ALIGN_UP(end, MiB) / MiB));
	return -E2BIG;
}

/* The kernel decompresses itself: load the protected-mode part and enter its startup_64. */
static int load_for_kernel_decompressor(struct guest_mem *mem, const uint8_t *data, size_t len,
					const char *path, const struct bz_header *h,
					enum payload_format fmt, const char *why, struct kernel_image *out,
					char *err, size_t errlen)
{
	uint64_t pm_len = len - h->pm_offset;
	int rc = check_in_ram(mem, BZ_PM_LOAD_ADDR, pm_len, path, err, errlen);
	if (rc < 0)
		return rc;
	/* It decompresses to pref_address and uses init_size bytes from there. */
	if ((rc = check_in_ram(mem, h->pref_address, h->init_size, path, err, errlen)) < 0)
		return rc;
	guest_mem_write(mem, BZ_PM_LOAD_ADDR, data + h->pm_offset, pm_len);
	out->entry = BZ_PM_LOAD_ADDR + BZ_PM_ENTRY64_OFF;
	out->load_start = BZ_PM_LOAD_ADDR;
	out->load_end = BZ_PM_LOAD_ADDR + pm_len;
	/* With no init_size, pref_address was never checked against RAM: it claims nothing. */
	if (h->init_size)
		out->load_end = MAX(out->load_end, h->pref_address + h->init_size);
	snprintf(out->format, sizeof(out->format), "bzImage (%s payload, decompressed by the kernel)",
		 payload_format_name(fmt));
	log_info("boot", "kernel %s: %s, so the kernel's own decompressor will run in the guest (slower to boot)",
		 path, why);
	return 0;
}

int bzimage_load(struct guest_mem *mem, const uint8_t *data, size_t len, const char *path,
		 struct kernel_image *out, char *err, size_t errlen)
{
	struct bz_header h;
	int rc = parse_header(data, len, path, &h, err, errlen);
	if (rc < 0)
		return rc;
	out->has_setup_header = true;
	memcpy(out->setup_header, data + SETUP_HEADER_OFFSET, SETUP_HEADER_SIZE);
	out->initrd_addr_max = le32(data + BZ_INITRD_ADDR_MAX);

	const uint8_t *payload = data + h.payload_offset;
	enum payload_format fmt = payload_detect(payload, h.payload_length);
	if (!payload_format_supported(fmt)) {
		char why[128];
		if (fmt == PAYLOAD_UNKNOWN)
			snprintf(why, sizeof(why), "vmon does not recognise the compression of its payload");
		else
			snprintf(why, sizeof(why), "vmon cannot decompress its %s payload", payload_format_name(fmt));
		return load_for_kernel_decompressor(mem, data, len, path, &h, fmt, why, out, err, errlen);
	}

	uint8_t *vmlinux;
	size_t vmlinux_len;
	char why[256];
	rc = payload_decompress(fmt, payload, h.payload_length, &vmlinux, &vmlinux_len, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, errlen, "kernel %s cannot be loaded: %s", path, why);
		return rc;
	}
	/* The x86 payload is an ELF vmlinux; anything else is left to the kernel to handle. */
	if (!elf_has_magic(vmlinux, vmlinux_len)) {
		free(vmlinux);
		return load_for_kernel_decompressor(mem, data, len, path, &h, fmt,
						    "its decompressed payload is not an ELF vmlinux", out, err, errlen);
	}
	char what[PATH_MAX + 64];
	snprintf(what, sizeof(what), "kernel %s (its decompressed %s payload)", path, payload_format_name(fmt));
	rc = elf_load(mem, vmlinux, vmlinux_len, what, out, err, errlen);
	free(vmlinux);
	if (rc < 0)
		return rc;
	/*
	 * Loaded at its link address, the kernel needs no relocation; it still uses init_size bytes
	 * from pref_address early on, before it knows the memory map well.
	 */
	if ((rc = check_in_ram(mem, h.pref_address, h.init_size, path, err, errlen)) < 0)
		return rc;
	if (h.init_size) {
		out->load_start = MIN(out->load_start, h.pref_address);
		out->load_end = MAX(out->load_end, h.pref_address + h.init_size);
	}
	snprintf(out->format, sizeof(out->format), "bzImage (%s payload, decompressed by vmon)",
		 payload_format_name(fmt));
	return 0;
}
