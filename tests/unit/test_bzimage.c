/* bzImage loading: header checks, host decompression of every payload format, and the fallback. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <elf.h>
#include <errno.h>
#include <lz4.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "boot/bzimage.h"
#include "boot/decompress.h"
#include "boot/kernel.h"
#include "lib/util.h"
#include "memory/guest_mem.h"

#define RAM (64 * MiB)
#define KTEXT_PHYS 0x1000000ULL
#define KDATA_PHYS 0x1200000ULL
#define KVIRT(p) (0xffffffff80000000ULL + (p))
#define TEXT_SIZE 0x3000
#define DATA_FILESZ 0x800
#define DATA_MEMSZ 0x5000 /* the rest is bss */
#define INIT_SIZE 0x800000
#define PM_STUB_SIZE 0x300 /* the decompressor stub before the payload, startup_64 at 0x200 */

/* Compresses like the kernel build (same helper as test_decompress.c). */
static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Compresses like the kernel build does, including the appended le32 uncompressed size. */
static uint8_t *compress_payload(enum payload_format f, const uint8_t *in, size_t len, size_t *out_len)
{
	size_t cap = len + len / 2 + 64 * KiB + 8 * (len / (8 * MiB) + 1);
	uint8_t *out = malloc(cap);
	size_t n = 0;
	switch (f) {
	case PAYLOAD_GZIP: {
		z_stream zs;
		memset(&zs, 0, sizeof(zs));
		assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
		zs.next_in = (Bytef *)in;
		zs.avail_in = (uInt)len;
		zs.next_out = out;
		zs.avail_out = (uInt)cap;
		assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
		n = zs.total_out;
		deflateEnd(&zs);
		*out_len = n; /* gzip's own trailer already ends with the size */
		return out;
	}
	case PAYLOAD_XZ: {
		/* As scripts/xz_wrap.sh: the x86 BCJ filter in front of LZMA2, CRC32 check. */
		lzma_options_lzma opt;
		lzma_lzma_preset(&opt, 1);
		lzma_filter filters[] = { { LZMA_FILTER_X86, NULL }, { LZMA_FILTER_LZMA2, &opt },
					  { LZMA_VLI_UNKNOWN, NULL } };
		assert_int_equal(lzma_stream_buffer_encode(filters, LZMA_CHECK_CRC32, NULL, in, len, out, &n, cap),
				 LZMA_OK);
		break;
	}
	case PAYLOAD_LZMA: {
		lzma_options_lzma opt;
		lzma_lzma_preset(&opt, 1);
		lzma_stream s = LZMA_STREAM_INIT;
		assert_int_equal(lzma_alone_encoder(&s, &opt), LZMA_OK);
		s.next_in = in;
		s.avail_in = len;
		s.next_out = out;
		s.avail_out = cap;
		assert_int_equal(lzma_code(&s, LZMA_FINISH), LZMA_STREAM_END);
		n = s.total_out;
		lzma_end(&s);
		break;
	}
	case PAYLOAD_LZ4: { /* legacy frame: magic, then (le32 size, block) per 8 MiB */
		put_le32(out, 0x184C2102u);
		n = 4;
		for (size_t pos = 0; pos < len; pos += 8 * MiB) {
			int chunk = (int)MIN(len - pos, 8 * MiB);
			int c = LZ4_compress_default((const char *)in + pos, (char *)out + n + 4, chunk,
						     (int)(cap - n - 8));
			assert_true(c > 0);
			put_le32(out + n, (uint32_t)c);
			n += 4 + (size_t)c;
		}
		break;
	}
	case PAYLOAD_ZSTD: {
		/* Like a pipe into zstd: no content size in the frame header, a checksum at its end. */
		ZSTD_CCtx *c = ZSTD_createCCtx();
		ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 3);
		ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0);
		ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
		n = ZSTD_compress2(c, out, cap, in, len);
		assert_false(ZSTD_isError(n));
		ZSTD_freeCCtx(c);
		break;
	}
	default:
		fail();
	}
	put_le32(out + n, (uint32_t)len);
	*out_len = n + 4;
	return out;
}


/* Segment contents that compress, but not to nothing. */
static uint8_t text_byte(size_t i) { return (uint8_t)(i * 7 + (i >> 5)); }
static uint8_t data_byte(size_t i) { return (uint8_t)(0x40 + i % 13); }

/*
 * A vmlinux as the kernel build compresses it: ELF64 with text and data PT_LOADs at 16 MiB,
 * linked high, e_entry physical, and relocation data appended after the ELF.
 */
static uint8_t *build_vmlinux(size_t *len, uint8_t elf_class)
{
	size_t off = sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr);
	size_t total = off + TEXT_SIZE + DATA_FILESZ + 256;
	uint8_t *buf = calloc(1, total);
	Elf64_Ehdr eh = { .e_type = ET_EXEC, .e_machine = EM_X86_64, .e_version = EV_CURRENT,
			  .e_entry = KTEXT_PHYS, .e_phoff = sizeof(Elf64_Ehdr), .e_ehsize = sizeof(Elf64_Ehdr),
			  .e_phentsize = sizeof(Elf64_Phdr), .e_phnum = 2 };
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = elf_class;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	memcpy(buf, &eh, sizeof(eh));
	Elf64_Phdr ph[2] = {
		{ .p_type = PT_LOAD, .p_offset = off, .p_vaddr = KVIRT(KTEXT_PHYS), .p_paddr = KTEXT_PHYS,
		  .p_filesz = TEXT_SIZE, .p_memsz = TEXT_SIZE },
		{ .p_type = PT_LOAD, .p_offset = off + TEXT_SIZE, .p_vaddr = KVIRT(KDATA_PHYS),
		  .p_paddr = KDATA_PHYS, .p_filesz = DATA_FILESZ, .p_memsz = DATA_MEMSZ },
	};
	memcpy(buf + sizeof(Elf64_Ehdr), ph, sizeof(ph));
	for (size_t i = 0; i < TEXT_SIZE; i++)
		buf[off + i] = text_byte(i);
	for (size_t i = 0; i < DATA_FILESZ; i++)
		buf[off + TEXT_SIZE + i] = data_byte(i);
	memset(buf + off + TEXT_SIZE + DATA_FILESZ, 0x77, 256); /* relocs */
	*len = total;
	return buf;
}

struct bz_opts {
	uint8_t setup_sects_field; /* 0 means 4, as in the boot protocol */
	uint16_t version;
	uint16_t xloadflags;
	uint32_t init_size;
};

static const struct bz_opts default_opts = { .setup_sects_field = 4, .version = 0x020f, .xloadflags = 0x7f,
					     .init_size = INIT_SIZE };

static void put_le16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

/* A bzImage: setup sectors with the header, then the protected-mode part (stub + payload). */
static uint8_t *build_bzimage(const uint8_t *payload, size_t plen, const struct bz_opts *o, size_t *len)
{
	size_t setup = (size_t)((o->setup_sects_field ? o->setup_sects_field : 4) + 1) * 512;
	size_t total = setup + PM_STUB_SIZE + plen + 64;
	uint8_t *b = calloc(1, total);
	b[BZ_SETUP_SECTS] = o->setup_sects_field;
	put_le16(b + 0x1fe, 0xaa55);
	memcpy(b + BZ_HEADER_MAGIC_OFF, "HdrS", 4);
	put_le16(b + BZ_VERSION, o->version);
	b[0x211] = 0x01; /* loadflags: LOADED_HIGH */
	put_le32(b + BZ_INITRD_ADDR_MAX, 0x7fffffff);
	put_le32(b + 0x230, 0x200000); /* kernel_alignment */
	put_le16(b + BZ_XLOADFLAGS, o->xloadflags);
	put_le32(b + BZ_PAYLOAD_OFFSET, PM_STUB_SIZE);
	put_le32(b + BZ_PAYLOAD_LENGTH, (uint32_t)plen);
	put_le32(b + BZ_PREF_ADDRESS, (uint32_t)KTEXT_PHYS);
	put_le32(b + BZ_INIT_SIZE, o->init_size);
	memset(b + setup, 0xcc, PM_STUB_SIZE);
	memcpy(b + setup + BZ_PM_ENTRY64_OFF, "startup_64", 10);
	memcpy(b + setup + PM_STUB_SIZE, payload, plen);
	memset(b + setup + PM_STUB_SIZE + plen, 0xdd, 64);
	*len = total;
	return b;
}

static char tmp_path[64];

static int load_image(const void *data, size_t len, struct guest_mem *mem, struct kernel_image *k, char *err,
		      size_t errlen)
{
	strcpy(tmp_path, "/tmp/vmon-test-bz-XXXXXX");
	int fd = mkstemp(tmp_path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	int rc = kernel_load(mem, tmp_path, k, err, errlen);
	unlink(tmp_path);
	return rc;
}

/* A bzImage whose payload is the synthetic vmlinux compressed as f. */
static uint8_t *bzimage_with(enum payload_format f, const struct bz_opts *o, size_t *len)
{
	size_t vlen, plen;
	uint8_t *vmlinux = build_vmlinux(&vlen, ELFCLASS64);
	uint8_t *payload = compress_payload(f, vmlinux, vlen, &plen);
	uint8_t *bz = build_bzimage(payload, plen, o, len);
	free(payload);
	free(vmlinux);
	return bz;
}

static void assert_vmlinux_loaded(const struct guest_mem *mem)
{
	const uint8_t *text = gpa_to_host(mem, KTEXT_PHYS, TEXT_SIZE);
	const uint8_t *data = gpa_to_host(mem, KDATA_PHYS, DATA_MEMSZ);
	for (size_t i = 0; i < TEXT_SIZE; i++)
		assert_int_equal(text[i], text_byte(i));
	for (size_t i = 0; i < DATA_FILESZ; i++)
		assert_int_equal(data[i], data_byte(i));
	for (size_t i = DATA_FILESZ; i < DATA_MEMSZ; i++)
		assert_int_equal(data[i], 0);
}

static const enum payload_format supported[] = { PAYLOAD_GZIP, PAYLOAD_XZ, PAYLOAD_LZMA, PAYLOAD_LZ4,
						  PAYLOAD_ZSTD };

static void test_every_payload_format_loads_the_same(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(supported); i++) {
		struct guest_mem mem;
		assert_int_equal(guest_mem_init(&mem, RAM), 0);
		/* Garbage where the bss goes, to see it cleared. */
		memset(gpa_to_host_write(&mem, KDATA_PHYS, DATA_MEMSZ), 0xee, DATA_MEMSZ);
		size_t len;
		uint8_t *bz = bzimage_with(supported[i], &default_opts, &len);
		struct kernel_image k;
		char err[512] = "";
		int rc = load_image(bz, len, &mem, &k, err, sizeof(err));
		if (rc != 0)
			fail_msg("%s: %s", payload_format_name(supported[i]), err);
		assert_vmlinux_loaded(&mem);
		assert_int_equal(k.entry, KTEXT_PHYS);
		assert_int_equal(k.load_start, KTEXT_PHYS);
		assert_int_equal(k.load_end, KTEXT_PHYS + INIT_SIZE); /* init_size reaches past the bss */
		assert_true(k.has_setup_header);
		assert_memory_equal(k.setup_header, bz + SETUP_HEADER_OFFSET, SETUP_HEADER_SIZE);
		assert_int_equal(k.initrd_addr_max, 0x7fffffff);
		char want[64];
		snprintf(want, sizeof(want), "bzImage (%s payload, decompressed by vmon)",
			 payload_format_name(supported[i]));
		assert_string_equal(k.format, want);
		/* Nothing of the bzImage itself is placed where the kernel's decompressor would go. */
		const uint8_t *pm = gpa_to_host(&mem, BZ_PM_LOAD_ADDR, 0x1000);
		for (size_t j = 0; j < 0x1000; j++)
			assert_int_equal(pm[j], 0);
		free(bz);
		guest_mem_destroy(&mem);
	}
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

static void test_setup_sects_zero_means_four(void **state)
{
	struct bz_opts o = default_opts;
	o.setup_sects_field = 0;
	size_t len;
	uint8_t *bz = bzimage_with(PAYLOAD_GZIP, &o, &len);
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(bz, len, *state, &k, err, sizeof(err)), 0);
	assert_vmlinux_loaded(*state);
	free(bz);
}

static void test_small_init_size_keeps_segment_end(void **state)
{
	struct bz_opts o = default_opts;
	o.init_size = 0x1000;
	size_t len;
	uint8_t *bz = bzimage_with(PAYLOAD_ZSTD, &o, &len);
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(bz, len, *state, &k, err, sizeof(err)), 0);
	assert_int_equal(k.load_end, KDATA_PHYS + DATA_MEMSZ);
	free(bz);
}

static void test_truncated_file(void **state)
{
	size_t len;
	uint8_t *bz = bzimage_with(PAYLOAD_XZ, &default_opts, &len);
	struct kernel_image k;
	char err[512] = "";
	/* Cut inside the payload. */
	size_t cut = 5 * 512 + PM_STUB_SIZE + 40;
	assert_int_equal(load_image(bz, cut, *state, &k, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, tmp_path));
	assert_non_null(strstr(err, "truncated"));
	/* Cut inside the setup header. */
	assert_int_equal(load_image(bz, 0x220, *state, &k, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "truncated"));
	free(bz);
}

static void test_corrupt_payload(void **state)
{
	static const enum payload_format checked[] = { PAYLOAD_GZIP, PAYLOAD_XZ, PAYLOAD_ZSTD };
	for (size_t i = 0; i < ARRAY_SIZE(checked); i++) {
		size_t len;
		uint8_t *bz = bzimage_with(checked[i], &default_opts, &len);
		size_t payload = 5 * 512 + PM_STUB_SIZE;
		for (size_t j = payload + 40; j < payload + 80; j++)
			bz[j] ^= 0x33;
		struct kernel_image k;
		char err[512] = "";
		assert_int_equal(load_image(bz, len, *state, &k, err, sizeof(err)), -EBADMSG);
		char want[64];
		snprintf(want, sizeof(want), "the %s payload is corrupt", payload_format_name(checked[i]));
		if (!strstr(err, want) || !strstr(err, tmp_path))
			fail_msg("got \"%s\"", err);
		free(bz);
	}
}

static void test_payload_not_64bit_elf(void **state)
{
	size_t vlen, plen, len;
	uint8_t *vmlinux = build_vmlinux(&vlen, ELFCLASS32);
	uint8_t *payload = compress_payload(PAYLOAD_GZIP, vmlinux, vlen, &plen);
	uint8_t *bz = build_bzimage(payload, plen, &default_opts, &len);
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(bz, len, *state, &k, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "decompressed gzip payload"));
	assert_non_null(strstr(err, "32-bit ELF"));
	free(bz);
	free(payload);
	free(vmlinux);
}

static void expect_fallback(struct guest_mem *mem, const uint8_t *payload, size_t plen, const char *fmt_name)
{
	size_t len;
	uint8_t *bz = build_bzimage(payload, plen, &default_opts, &len);
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(bz, len, mem, &k, err, sizeof(err)), 0);
	size_t setup = 5 * 512;
	assert_int_equal(k.entry, BZ_PM_LOAD_ADDR + 0x200);
	assert_memory_equal(gpa_to_host(mem, BZ_PM_LOAD_ADDR, len - setup), bz + setup, len - setup);
	assert_memory_equal(gpa_to_host(mem, k.entry, 10), "startup_64", 10);
	assert_int_equal(k.load_start, BZ_PM_LOAD_ADDR);
	assert_int_equal(k.load_end, KTEXT_PHYS + INIT_SIZE);
	assert_true(k.has_setup_header);
	char want[64];
	snprintf(want, sizeof(want), "bzImage (%s payload, decompressed by the kernel)", fmt_name);
	assert_string_equal(k.format, want);
	free(bz);
}

static void test_bzip2_payload_falls_back_to_kernel_decompressor(void **state)
{
	static const uint8_t bz2[] = "BZh91AY&SY\x01\x02\x03 not really bzip2 data";
	expect_fallback(*state, bz2, sizeof(bz2), "bzip2");
}

static void test_lzo_payload_falls_back_to_kernel_decompressor(void **state)
{
	static const uint8_t lzo[] = "\x89LZO\0\r\n\x1a\n not really lzo data";
	expect_fallback(*state, lzo, sizeof(lzo), "lzo");
}

static void test_unknown_payload_falls_back_to_kernel_decompressor(void **state)
{
	static const uint8_t junk[] = "\x42\x13\x37 whatever this is";
	expect_fallback(*state, junk, sizeof(junk), "unknown");
}

static void test_fallback_without_init_size_claims_only_its_image(void **state)
{
	/* init_size 0: pref_address (junk here, far beyond RAM) is not where the kernel goes. */
	static const uint8_t junk[] = "\x42\x13\x37 whatever this is";
	struct bz_opts o = default_opts;
	o.init_size = 0;
	size_t len;
	uint8_t *bz = build_bzimage(junk, sizeof(junk), &o, &len);
	put_le32(bz + BZ_PREF_ADDRESS + 4, 0x5a);
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(bz, len, *state, &k, err, sizeof(err)), 0);
	assert_int_equal(k.load_end, BZ_PM_LOAD_ADDR + (len - 5 * 512));
	free(bz);
}

static void test_payload_that_is_not_elf_falls_back(void **state)
{
	/* Decompresses fine, but is not a vmlinux: leave it to the kernel's own decompressor. */
	static const uint8_t raw[4096] = { 0x90, 0x90 };
	size_t plen;
	uint8_t *payload = compress_payload(PAYLOAD_GZIP, raw, sizeof(raw), &plen);
	expect_fallback(*state, payload, plen, "gzip");
	free(payload);
}

static void test_32bit_only_kernel(void **state)
{
	struct bz_opts o = default_opts;
	o.xloadflags = 0; /* no XLF_KERNEL_64 */
	size_t len;
	uint8_t *bz = bzimage_with(PAYLOAD_GZIP, &o, &len);
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(bz, len, *state, &k, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "is a 32-bit-only kernel"));
	assert_non_null(strstr(err, tmp_path));
	free(bz);
}

static void test_old_boot_protocol(void **state)
{
	struct bz_opts o = default_opts;
	o.version = 0x0206;
	size_t len;
	uint8_t *bz = bzimage_with(PAYLOAD_GZIP, &o, &len);
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(bz, len, *state, &k, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "boot protocol 2.06"));
	assert_non_null(strstr(err, "2.08 or later"));
	free(bz);
}

static void test_init_size_beyond_ram(void **state)
{
	struct bz_opts o = default_opts;
	o.init_size = 64 * MiB; /* from 16 MiB: needs 80 MiB of RAM */
	size_t len;
	uint8_t *bz = bzimage_with(PAYLOAD_LZ4, &o, &len);
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(bz, len, *state, &k, err, sizeof(err)), -E2BIG);
	assert_non_null(strstr(err, "--memory of at least 80M"));
	free(bz);
}

static void test_pref_address_in_low_memory(void **state)
{
	size_t len;
	uint8_t *bz = bzimage_with(PAYLOAD_GZIP, &default_opts, &len);
	put_le32(bz + BZ_PREF_ADDRESS, 0x10000);
	struct kernel_image k;
	char err[512] = "";
	assert_int_equal(load_image(bz, len, *state, &k, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "first MiB"));
	free(bz);
}

/* Debian's or any real kernel: VMON_TEST_REAL_BZIMAGE=/path/to/vmlinuz. */
static void test_real_bzimage(void **state)
{
	(void)state;
	const char *path = getenv("VMON_TEST_REAL_BZIMAGE");
	if (!path || !*path)
		skip();
	struct guest_mem mem;
	assert_int_equal(guest_mem_init(&mem, 512 * MiB), 0);
	struct kernel_image k;
	char err[512] = "";
	int rc = kernel_load(&mem, path, &k, err, sizeof(err));
	if (rc != 0)
		fail_msg("%s", err);
	print_message("%s: %s, entry 0x%llx, 0x%llx-0x%llx\n", path, k.format, (unsigned long long)k.entry,
		      (unsigned long long)k.load_start, (unsigned long long)k.load_end);
	assert_true(k.has_setup_header);
	assert_non_null(strstr(k.format, "decompressed by vmon"));
	uint64_t pref = 0, init_size = 0;
	memcpy(&pref, k.setup_header + (BZ_PREF_ADDRESS - SETUP_HEADER_OFFSET), 8);
	memcpy(&init_size, k.setup_header + (BZ_INIT_SIZE - SETUP_HEADER_OFFSET), 4);
	assert_int_equal(k.entry, pref); /* startup_64 at the link address */
	assert_true(k.load_end >= pref + init_size);
	/* The decompressed kernel is there: its version banner is in the loaded image. */
	const uint8_t *img = gpa_to_host(&mem, k.load_start, k.load_end - k.load_start);
	assert_non_null(memmem(img, k.load_end - k.load_start, "Linux version ", 14));
	guest_mem_destroy(&mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_payload_format_loads_the_same),
		cmocka_unit_test_setup_teardown(test_setup_sects_zero_means_four, setup, teardown),
		cmocka_unit_test_setup_teardown(test_small_init_size_keeps_segment_end, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_payload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_payload_not_64bit_elf, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bzip2_payload_falls_back_to_kernel_decompressor, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_lzo_payload_falls_back_to_kernel_decompressor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_payload_falls_back_to_kernel_decompressor, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fallback_without_init_size_claims_only_its_image, setup, teardown),
		cmocka_unit_test_setup_teardown(test_payload_that_is_not_elf_falls_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_32bit_only_kernel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_old_boot_protocol, setup, teardown),
		cmocka_unit_test_setup_teardown(test_init_size_beyond_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pref_address_in_low_memory, setup, teardown),
		cmocka_unit_test(test_real_bzimage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
