/*
 * A migration's switch of a writable disk, raw and qcow2: while the source vmon has the image,
 * a second vmon (the destination) cannot open it for writing; once the source hands it over the
 * destination can; the source cannot take it back while the destination has it (so a failed
 * migration never leaves two VMs writing one disk), and can once the destination is gone.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/disk_image.h"
#include "backends/qcow2.h"
#include "lib/util.h"

struct dir {
	char path[64];
	char base[96], top[96];
};

static int setup(void **state)
{
	struct dir *d = calloc(1, sizeof(*d));
	snprintf(d->path, sizeof(d->path), "/tmp/vmon-handover-XXXXXX");
	assert_non_null(mkdtemp(d->path));
	snprintf(d->base, sizeof(d->base), "%s/base.raw", d->path);
	snprintf(d->top, sizeof(d->top), "%s/top.qcow2", d->path);
	int fd = open(d->base, O_CREAT | O_RDWR, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	assert_int_equal(qcow2_create_overlay(d->top, d->base, "raw"), 0);
	*state = d;
	return 0;
}

static int teardown(void **state)
{
	struct dir *d = *state;
	unlink(d->top);
	unlink(d->base);
	rmdir(d->path);
	free(d);
	return 0;
}

static void hand_over_and_take_back(const char *path, enum disk_format format)
{
	struct disk_image *source, *dest = NULL;
	assert_int_equal(disk_image_open(path, format, false, 8, &source), 0);
	assert_int_equal(disk_image_open(path, format, false, 8, &dest), -EBUSY);

	assert_int_equal(disk_image_flush(source), 0);
	assert_int_equal(disk_image_hand_over(source), 0);
	assert_int_equal(disk_image_open(path, format, false, 8, &dest), 0);
	assert_int_equal(disk_image_take_back(source), -EWOULDBLOCK);

	disk_image_close(dest);
	assert_int_equal(disk_image_take_back(source), 0);
	assert_int_equal(disk_image_open(path, format, false, 8, &dest), -EBUSY);
	disk_image_close(source);
}

static void a_raw_disk_is_handed_over_and_taken_back(void **state)
{
	struct dir *d = *state;
	hand_over_and_take_back(d->base, DISK_FORMAT_RAW);
}

static void a_qcow2_disk_is_handed_over_and_taken_back(void **state)
{
	struct dir *d = *state;
	hand_over_and_take_back(d->top, DISK_FORMAT_QCOW2);
}

static void a_read_only_disk_is_left_shared(void **state)
{
	struct dir *d = *state;
	struct disk_image *a, *b;
	assert_int_equal(disk_image_open(d->base, DISK_FORMAT_RAW, true, 8, &a), 0);
	assert_int_equal(disk_image_hand_over(a), 0);
	assert_int_equal(disk_image_open(d->base, DISK_FORMAT_RAW, true, 8, &b), 0);
	assert_int_equal(disk_image_take_back(a), 0);
	disk_image_close(b);
	disk_image_close(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(a_raw_disk_is_handed_over_and_taken_back, setup, teardown),
		cmocka_unit_test_setup_teardown(a_qcow2_disk_is_handed_over_and_taken_back, setup, teardown),
		cmocka_unit_test_setup_teardown(a_read_only_disk_is_left_shared, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
