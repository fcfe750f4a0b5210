/*
 * The state a live migration received, opened for a restore (snapshot_open_received): the VM's
 * configuration comes from it and its RAM is the stream's; a state that names a memory file or
 * snapshot disk layers (never in a migration), or disagrees with the RAM the stream carried, is
 * refused with a sentence, and nothing of it is kept.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "memory/guest_mem.h"
#include "state/snapshot.h"
#include "state/snapshot_disks.h"

#define RAM (16u << 20)

static const struct snap_cpu cpu = { .vendor = "GenuineIntel" };

/* A state as a source builds it: configuration, memory section (file "" unless given), optional layers. */
static void make_state(struct snap_file *f, uint64_t ram, const char *mem_file, bool layers)
{
	char config[256];
	snprintf(config, sizeof(config), "{\"kernel\": \"/boot/vmlinuz\", \"cpus\": 2, \"memory\": \"%lluM\"}",
		 (unsigned long long)(ram >> 20));
	struct mem_section ms;
	memset(&ms, 0, sizeof(ms));
	ms.ram_size = ram;
	snprintf(ms.file, sizeof(ms.file), "%s", mem_file);
	struct snap_writer w;
	snap_writer_init(&w);
	assert_int_equal(snap_writer_add(&w, "config", config, strlen(config)), 0);
	assert_int_equal(snap_writer_add(&w, "memory", &ms, sizeof(ms)), 0);
	if (layers)
		assert_int_equal(snap_writer_add(&w, SNAPSHOT_DISK_LAYERS, "[]", 2), 0);
	uint8_t *buf;
	size_t len;
	assert_int_equal(snap_writer_build(&w, 0, &cpu, &buf, &len), 0);
	snap_writer_free(&w);
	char err[256];
	assert_int_equal(snap_file_parse(f, buf, len, err, sizeof(err)), 0);
	f->buf = buf;
}

static void a_received_state_gives_the_configuration_and_keeps_the_ram(void **state)
{
	(void)state;
	struct guest_mem ram;
	assert_int_equal(guest_mem_init(&ram, RAM), 0);
	struct snap_file f;
	make_state(&f, RAM, "", false);
	struct vm_config cfg;
	config_init_defaults(&cfg);
	struct snapshot_image img;
	char err[256] = "";
	assert_int_equal(snapshot_open_received(&img, &f, &ram, &cfg, err, sizeof(err)), 0);
	assert_null(f.buf); /* taken over */
	assert_ptr_equal(img.ram, &ram);
	assert_int_equal(img.ram_size, RAM);
	assert_int_equal(cfg.cpus, 2);
	assert_int_equal(cfg.memory, RAM);
	assert_string_equal(cfg.kernel_path, "/boot/vmlinuz");
	assert_string_equal(img.mem_path, "");
	snapshot_close(&img);
	config_free(&cfg);
	guest_mem_destroy(&ram);
}

static void refused(uint64_t state_ram, const char *mem_file, bool layers, const char *why)
{
	struct guest_mem ram;
	assert_int_equal(guest_mem_init(&ram, RAM), 0);
	struct snap_file f;
	make_state(&f, state_ram, mem_file, layers);
	struct vm_config cfg;
	config_init_defaults(&cfg);
	struct snapshot_image img;
	char err[256] = "";
	assert_int_equal(snapshot_open_received(&img, &f, &ram, &cfg, err, sizeof(err)), -EINVAL);
	if (!strstr(err, why))
		print_message("error: %s\n", err);
	assert_non_null(strstr(err, why));
	assert_non_null(strstr(err, "the migration stream's state record"));
	assert_null(img.f.buf); /* released */
	config_free(&cfg);
	guest_mem_destroy(&ram);
}

static void a_state_naming_a_memory_file_is_refused(void **state)
{
	(void)state;
	refused(RAM, "memory-1234", false, "names a memory file");
}

static void a_state_with_disk_layers_is_refused(void **state)
{
	(void)state;
	refused(RAM, "", true, "disk layers");
}

static void a_state_for_other_ram_is_refused(void **state)
{
	(void)state;
	refused(2 * RAM, "", false, "the stream carried 16777216");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_received_state_gives_the_configuration_and_keeps_the_ram),
		cmocka_unit_test(a_state_naming_a_memory_file_is_refused),
		cmocka_unit_test(a_state_with_disk_layers_is_refused),
		cmocka_unit_test(a_state_for_other_ram_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
