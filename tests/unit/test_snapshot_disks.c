/*
 * The file-level half of disks captured with snapshots: the state file's disk-layers section
 * written and read back (old snapshots without it restore as before; malformed ones are refused)
 * and the new overlays a restore starts on a snapshot's layer, judged by qemu-img.
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
#include <unistd.h>

#include "config/config.h"
#include "state/snapshot.h"
#include "state/snapshot_disks.h"

static const struct snap_cpu cpu = { .vendor = "GenuineIntel" };

/* img->f parsed from a state file holding the given disk-layers text (NULL: no section). */
static void make_image(struct snapshot_image *img, const char *layers_text)
{
	memset(img, 0, sizeof(*img));
	snprintf(img->state_path, sizeof(img->state_path), "DIR/state");
	struct snap_writer w;
	snap_writer_init(&w);
	assert_int_equal(snap_writer_add(&w, "config", "{}", 2), 0);
	if (layers_text)
		assert_int_equal(snap_writer_add(&w, SNAPSHOT_DISK_LAYERS, layers_text, strlen(layers_text)), 0);
	uint8_t *buf;
	size_t len;
	assert_int_equal(snap_writer_build(&w, 1, &cpu, &buf, &len), 0);
	snap_writer_free(&w);
	char err[256];
	assert_int_equal(snap_file_parse(&img->f, buf, len, err, sizeof(err)), 0);
	img->f.buf = buf; /* owned now: snap_file_free releases it */
}

static void layers_section_round_trip(void **state)
{
	(void)state;
	struct disk_plan plan = { .n = 3 };
	plan.freeze[0] = plan.freeze[2] = true;
	plan.layer[0] = strdup("/images/root.qcow2");
	plan.format[0] = DISK_FORMAT_QCOW2;
	plan.layer[2] = strdup("/images/data.raw");
	plan.format[2] = DISK_FORMAT_RAW;
	struct snap_writer w;
	snap_writer_init(&w);
	assert_int_equal(snapshot_disks_add_section(&plan, &w), 0);
	assert_int_equal(w.n, 1);
	uint8_t *buf;
	size_t len;
	assert_int_equal(snap_writer_build(&w, 1, &cpu, &buf, &len), 0);
	snap_writer_free(&w);
	snapshot_disks_plan_free(&plan);

	struct snapshot_image img;
	memset(&img, 0, sizeof(img));
	char err[256];
	assert_int_equal(snap_file_parse(&img.f, buf, len, err, sizeof(err)), 0);
	img.f.buf = buf;
	assert_int_equal(snapshot_disks_load(&img, 3, err, sizeof(err)), 0);
	assert_string_equal(img.layers[0], "/images/root.qcow2");
	assert_true(img.layer_is_qcow2[0]);
	assert_null(img.layers[1]);
	assert_string_equal(img.layers[2], "/images/data.raw");
	assert_false(img.layer_is_qcow2[2]);
	snapshot_close(&img);

	/* Nothing frozen (--disks=none, read-only disks): no section at all. */
	struct disk_plan none = { .n = 2 };
	snap_writer_init(&w);
	assert_int_equal(snapshot_disks_add_section(&none, &w), 0);
	assert_int_equal(w.n, 0);
	snap_writer_free(&w);
}

static void snapshot_without_layers_restores_as_before(void **state)
{
	(void)state;
	struct snapshot_image img;
	make_image(&img, NULL);
	char err[256];
	assert_int_equal(snapshot_disks_load(&img, 2, err, sizeof(err)), 0);
	assert_null(img.layers[0]);
	assert_null(img.layers[1]);
	struct vm_config cfg;
	config_init_defaults(&cfg);
	cfg.ndisks = 1;
	cfg.disks[0].path = strdup("/images/root.raw");
	bool keep[CONFIG_MAX_DISKS] = { false };
	assert_int_equal(snapshot_disks_new_overlays(&img, &cfg, "/nonexistent", keep, err, sizeof(err)), 0);
	assert_string_equal(cfg.disks[0].path, "/images/root.raw");
	config_free(&cfg);
	snapshot_close(&img);
}

static void malformed_layers_are_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"[null]",                                     /* one entry for two disks */
		"{\"path\": \"/a\"}",                         /* not an array */
		"[{\"path\": \"rel.qcow2\", \"format\": \"qcow2\"}, null]",
		"[{\"path\": \"/a.vmdk\", \"format\": \"vmdk\"}, null]",
		"[{\"format\": \"raw\"}, null]",
		"[not json",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct snapshot_image img;
		make_image(&img, bad[i]);
		char err[256] = "";
		assert_int_equal(snapshot_disks_load(&img, 2, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "DIR/state"));
		snapshot_close(&img);
	}
}

static void mode_names(void **state)
{
	(void)state;
	enum snapshot_disks m;
	assert_int_equal(snapshot_disks_parse("overlay", &m), 0);
	assert_int_equal(m, SNAPSHOT_DISKS_OVERLAY);
	assert_int_equal(snapshot_disks_parse("none", &m), 0);
	assert_int_equal(m, SNAPSHOT_DISKS_NONE);
	assert_int_equal(snapshot_disks_parse("copy", &m), -EINVAL);
}

static int sh(const char *cmd) { int st = system(cmd); return WIFEXITED(st) ? WEXITSTATUS(st) : -1; }

/* Two restores of one snapshot: each gets its own overlay on the layer, which nobody writes. */
static void each_restore_gets_its_own_overlay(void **state)
{
	(void)state;
	if (sh("command -v qemu-img >/dev/null"))
		skip();
	char dir[] = "/tmp/vmon-snapdisks-XXXXXX", layer[128], cmd[10000];
	assert_non_null(mkdtemp(dir));
	snprintf(layer, sizeof(layer), "%s/layer.raw", dir);
	snprintf(cmd, sizeof(cmd), "head -c 1048576 /dev/urandom >%s && sha256sum <%s >%s/sum", layer, layer, dir);
	assert_int_equal(sh(cmd), 0);
	char text[256];
	snprintf(text, sizeof(text), "[null, {\"path\": \"%s\", \"format\": \"raw\"}]", layer);
	char paths[2][4096];
	for (int round = 0; round < 2; round++) {
		struct snapshot_image img;
		make_image(&img, text);
		char err[256];
		assert_int_equal(snapshot_disks_load(&img, 2, err, sizeof(err)), 0);
		struct vm_config cfg;
		config_init_defaults(&cfg);
		cfg.ndisks = 2;
		cfg.disks[0].path = strdup("/images/readonly.raw");
		cfg.disks[1].path = strdup(layer);
		bool keep[CONFIG_MAX_DISKS] = { false };
		assert_int_equal(snapshot_disks_new_overlays(&img, &cfg, dir, keep, err, sizeof(err)), 0);
		assert_string_equal(cfg.disks[0].path, "/images/readonly.raw");
		assert_false(img.on_layer[0]);
		assert_true(img.on_layer[1]);
		assert_int_equal(cfg.disks[1].format, DISK_FORMAT_QCOW2);
		assert_non_null(strstr(cfg.disks[1].path, "/disk1-restore-"));
		snprintf(paths[round], sizeof(paths[round]), "%s", cfg.disks[1].path);
		snprintf(cmd, sizeof(cmd), "qemu-img check -q %s && qemu-img info %s | grep -q '^backing file: layer.raw' && "
					   "qemu-io -c 'write -q -P %d 0 64k' %s >/dev/null",
			 paths[round], paths[round], 0x40 + round, paths[round]);
		assert_int_equal(sh(cmd), 0);
		config_free(&cfg);
		snapshot_close(&img);
	}
	assert_string_not_equal(paths[0], paths[1]);
	/* Each restore's writes are in its own overlay only; the layer is unchanged. */
	snprintf(cmd, sizeof(cmd), "qemu-io -c 'read -q -P 64 0 64k' %s >/dev/null && "
				   "qemu-io -c 'read -q -P 65 0 64k' %s >/dev/null && sha256sum <%s | cmp -s - %s/sum",
		 paths[0], paths[1], layer, dir);
	assert_int_equal(sh(cmd), 0);

	/* --disk given: the user's images stand, no overlay is made. */
	struct snapshot_image img;
	make_image(&img, text);
	char err[256];
	assert_int_equal(snapshot_disks_load(&img, 2, err, sizeof(err)), 0);
	struct vm_config cfg;
	config_init_defaults(&cfg);
	cfg.ndisks = 2;
	cfg.disks[0].path = strdup("/a");
	cfg.disks[1].path = strdup("/mine.raw");
	bool keep[CONFIG_MAX_DISKS] = { true, true };
	assert_int_equal(snapshot_disks_new_overlays(&img, &cfg, dir, keep, err, sizeof(err)), 0);
	assert_string_equal(cfg.disks[1].path, "/mine.raw");
	config_free(&cfg);
	snapshot_close(&img);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	sh(cmd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(layers_section_round_trip),
		cmocka_unit_test(snapshot_without_layers_restores_as_before),
		cmocka_unit_test(malformed_layers_are_refused),
		cmocka_unit_test(mode_names),
		cmocka_unit_test(each_restore_gets_its_own_overlay),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
