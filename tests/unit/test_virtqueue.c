/*
 * The split-virtqueue walker against hand-built rings in a fake guest memory: well-formed
 * chains, notification suppression, index wrap-around, and every malformed ring we could
 * think of. A malformed ring must fail cleanly (-EINVAL, queue broken), never crash or loop.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "virtio/virtqueue.h"

#define RAM (1u << 20)
#define QSZ 8
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define DATA 0x10000
#define TABLE 0x8000 /* indirect tables */

struct rig {
	struct guest_mem mem;
	uint8_t *ram;
	struct virtqueue vq;
	struct iovec iov[64];
	struct vq_chain c;
	uint16_t avail_idx;
};

static void *at(struct rig *r, uint64_t gpa) { return r->ram + gpa; }

static void rig_setup(struct rig *r, bool event_idx, bool indirect)
{
	memset(r, 0, sizeof(*r));
	r->ram = calloc(1, RAM);
	assert_non_null(r->ram);
	r->mem.nregions = 1;
	r->mem.regions[0] = (struct guest_mem_region){ .gpa = 0, .size = RAM, .host = r->ram };
	r->mem.ram_size = RAM;
	r->mem.fd = -1;
	vq_init(&r->vq, QSZ);
	r->vq.desc_gpa = DESC;
	r->vq.avail_gpa = AVAIL;
	r->vq.used_gpa = USED;
	assert_int_equal(vq_start(&r->vq, &r->mem, event_idx, indirect), 0);
	r->c.iov = r->iov;
	r->c.iov_cap = 64;
}

static void rig_free(struct rig *r) { free(r->ram); }

static void set_desc(struct rig *r, uint64_t table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	struct virtq_desc d = { .addr = addr, .len = len, .flags = flags, .next = next };
	memcpy(at(r, table + 16u * i), &d, sizeof(d));
}

/* Makes head available and publishes it. */
static void offer(struct rig *r, uint16_t head)
{
	uint16_t *avail = at(r, AVAIL);
	avail[2 + r->avail_idx % QSZ] = head;
	r->avail_idx++;
	avail[1] = r->avail_idx;
}

static uint16_t used_idx(struct rig *r) { return ((uint16_t *)at(r, USED))[1]; }

static void used_elem(struct rig *r, uint16_t slot, uint32_t *id, uint32_t *len)
{
	memcpy(id, at(r, USED + 4 + 8u * slot), 4);
	memcpy(len, at(r, USED + 8 + 8u * slot), 4);
}

static void a_request_chain_pops_as_readable_then_writable(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, false, false);
	assert_int_equal(vq_pop(&r.vq, &r.c), 0); /* empty */
	memcpy(at(&r, DATA), "hello", 5);
	set_desc(&r, DESC, 3, DATA, 5, VIRTQ_DESC_F_NEXT, 5);
	set_desc(&r, DESC, 5, DATA + 0x100, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(&r, DESC, 1, DATA + 0x200, 64, VIRTQ_DESC_F_WRITE, 0);
	offer(&r, 3);
	assert_int_equal(vq_pop(&r.vq, &r.c), 1);
	assert_int_equal(r.c.head, 3);
	assert_int_equal(r.c.n_out, 2);
	assert_int_equal(r.c.n_in, 1);
	assert_int_equal(r.c.out_len, 21);
	assert_int_equal(r.c.in_len, 64);
	assert_ptr_equal(r.iov[0].iov_base, at(&r, DATA));
	assert_ptr_equal(r.iov[2].iov_base, at(&r, DATA + 0x200));
	char buf[32] = { 0 };
	assert_int_equal(vq_chain_read(&r.c, 1, buf, 4), 4);
	assert_string_equal(buf, "ello");
	assert_int_equal(vq_chain_read(&r.c, 0, buf, sizeof(buf)), 21); /* bounded by the readable part */
	assert_int_equal(vq_chain_write(&r.c, 2, "xyz", 3), 3);
	assert_memory_equal(at(&r, DATA + 0x202), "xyz", 3);
	assert_int_equal(vq_pop(&r.vq, &r.c), 0);
	/* Unpopped, the chain comes back whole. */
	vq_unpop(&r.vq, 1);
	assert_int_equal(vq_pop(&r.vq, &r.c), 1);
	assert_int_equal(r.c.head, 3);
	assert_int_equal(r.c.n_out + r.c.n_in, 3);

	vq_push(&r.vq, 3, 7);
	assert_int_equal(used_idx(&r), 1);
	uint32_t id, len;
	used_elem(&r, 0, &id, &len);
	assert_int_equal(id, 3);
	assert_int_equal(len, 7);
	rig_free(&r);
}

static void no_interrupt_flag_and_no_notify_flag(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, false, false);
	set_desc(&r, DESC, 0, DATA, 8, 0, 0);
	offer(&r, 0);
	assert_int_equal(vq_pop(&r.vq, &r.c), 1);
	vq_push(&r.vq, 0, 0);
	assert_true(vq_should_notify(&r.vq));
	((uint16_t *)at(&r, AVAIL))[0] = VIRTQ_AVAIL_F_NO_INTERRUPT;
	assert_false(vq_should_notify(&r.vq));

	vq_disable_notify(&r.vq);
	assert_int_equal(((uint16_t *)at(&r, USED))[0], VIRTQ_USED_F_NO_NOTIFY);
	assert_false(vq_enable_notify(&r.vq)); /* nothing new */
	assert_int_equal(((uint16_t *)at(&r, USED))[0], 0);
	offer(&r, 0);
	assert_true(vq_enable_notify(&r.vq)); /* a buffer arrived while disabled */
	rig_free(&r);
}

static void event_index_suppresses_interrupts_and_kicks(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, true, false);
	uint16_t *used_event = (uint16_t *)at(&r, AVAIL + 4 + 2 * QSZ);
	uint16_t *avail_event = (uint16_t *)at(&r, USED + 4 + 8 * QSZ);
	for (uint16_t i = 0; i < 4; i++) {
		set_desc(&r, DESC, i, DATA + 64u * i, 8, 0, 0);
		offer(&r, i);
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(vq_pop(&r.vq, &r.c), 1);
	assert_int_equal(*avail_event, 4); /* the driver need not kick before entry 4 */

	vq_push(&r.vq, 0, 0);
	assert_true(vq_should_notify(&r.vq)); /* first decision always notifies */
	*used_event = 2;                      /* interrupt me when entry 2 is used */
	vq_push(&r.vq, 1, 0);                 /* used idx 2: entry 1 used */
	assert_false(vq_should_notify(&r.vq));
	vq_push(&r.vq, 2, 0);                 /* entry 2 used: crosses the event */
	assert_true(vq_should_notify(&r.vq));
	assert_false(vq_should_notify(&r.vq)); /* nothing new since */
	vq_push(&r.vq, 3, 0);
	assert_false(vq_should_notify(&r.vq)); /* event 2 already passed */

	r.vq.last_avail = 4;
	assert_false(vq_enable_notify(&r.vq));
	offer(&r, 0);
	assert_true(vq_enable_notify(&r.vq));
	rig_free(&r);
}

static void indices_wrap_around_65535(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, false, false);
	r.vq.last_avail = 0xfffe;
	r.vq.used_idx = 0xfffe;
	r.avail_idx = 0xfffe;
	for (uint16_t i = 0; i < 3; i++) {
		set_desc(&r, DESC, i, DATA + 64u * i, 8, 0, 0);
		offer(&r, i);
	}
	assert_int_equal(((uint16_t *)at(&r, AVAIL))[1], 1);
	for (uint16_t i = 0; i < 3; i++) {
		assert_int_equal(vq_pop(&r.vq, &r.c), 1);
		assert_int_equal(r.c.head, i);
		vq_push(&r.vq, r.c.head, i);
	}
	assert_int_equal(vq_pop(&r.vq, &r.c), 0);
	assert_int_equal(used_idx(&r), 1);
	uint32_t id, len;
	used_elem(&r, 0, &id, &len); /* 0x10000 % 8: the third push */
	assert_int_equal(id, 2);
	used_elem(&r, 6, &id, &len); /* 0xfffe % 8 */
	assert_int_equal(id, 0);
	rig_free(&r);
}

static void indirect_tables_are_walked(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, false, true);
	set_desc(&r, TABLE, 0, DATA, 16, VIRTQ_DESC_F_NEXT, 2);
	set_desc(&r, TABLE, 2, DATA + 0x100, 32, VIRTQ_DESC_F_NEXT, 1);
	set_desc(&r, TABLE, 1, DATA + 0x200, 48, VIRTQ_DESC_F_WRITE, 0);
	/* A direct descriptor may come first; the indirect one ends the ring chain. */
	set_desc(&r, DESC, 4, DATA + 0x300, 8, VIRTQ_DESC_F_NEXT, 6);
	set_desc(&r, DESC, 6, TABLE, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(&r, 4);
	assert_int_equal(vq_pop(&r.vq, &r.c), 1);
	assert_int_equal(r.c.head, 4);
	assert_int_equal(r.c.n_out, 3);
	assert_int_equal(r.c.n_in, 1);
	assert_int_equal(r.c.out_len, 8 + 16 + 32);
	assert_int_equal(r.c.in_len, 48);
	assert_ptr_equal(r.iov[3].iov_base, at(&r, DATA + 0x200));
	rig_free(&r);
}

static void full_length_chain_is_accepted(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, false, false);
	for (uint16_t i = 0; i < QSZ; i++)
		set_desc(&r, DESC, i, DATA + 64u * i, 8, i + 1 < QSZ ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	offer(&r, 0);
	assert_int_equal(vq_pop(&r.vq, &r.c), 1);
	assert_int_equal(r.c.n_out, QSZ);
	rig_free(&r);
}

/* Builds one malformed case on a fresh rig and checks the walker refuses it and stays refused. */
typedef void (*corrupt_fn)(struct rig *r);

static void expect_malformed(corrupt_fn corrupt, bool indirect, int err)
{
	struct rig r;
	rig_setup(&r, false, indirect);
	corrupt(&r);
	assert_int_equal(vq_pop(&r.vq, &r.c), err);
	assert_false(vq_ready(&r.vq));
	/* Broken until reset, even if the guest repairs the ring. */
	set_desc(&r, DESC, 0, DATA, 8, 0, 0);
	assert_int_equal(vq_pop(&r.vq, &r.c), -EINVAL);
	vq_reset(&r.vq);
	r.vq.desc_gpa = DESC;
	r.vq.avail_gpa = AVAIL;
	r.vq.used_gpa = USED;
	assert_int_equal(vq_start(&r.vq, &r.mem, false, indirect), 0);
	assert_true(vq_ready(&r.vq));
	rig_free(&r);
}

static void bad_head(struct rig *r) { offer(r, QSZ); }
static void avail_idx_runs_ahead(struct rig *r)
{
	set_desc(r, DESC, 0, DATA, 8, 0, 0);
	((uint16_t *)at(r, AVAIL))[1] = QSZ + 1; /* more buffers than the ring has */
}
static void two_desc_loop(struct rig *r)
{
	set_desc(r, DESC, 0, DATA, 8, VIRTQ_DESC_F_NEXT, 1);
	set_desc(r, DESC, 1, DATA, 8, VIRTQ_DESC_F_NEXT, 0);
	offer(r, 0);
}
static void self_loop(struct rig *r)
{
	set_desc(r, DESC, 2, DATA, 8, VIRTQ_DESC_F_NEXT, 2);
	offer(r, 2);
}
static void next_out_of_range(struct rig *r)
{
	set_desc(r, DESC, 0, DATA, 8, VIRTQ_DESC_F_NEXT, 0xffff);
	offer(r, 0);
}
static void addr_outside_ram(struct rig *r)
{
	set_desc(r, DESC, 0, RAM, 8, 0, 0);
	offer(r, 0);
}
static void addr_straddles_end_of_ram(struct rig *r)
{
	set_desc(r, DESC, 0, RAM - 4, 8, 0, 0);
	offer(r, 0);
}
static void addr_wraps_around(struct rig *r)
{
	set_desc(r, DESC, 0, UINT64_MAX - 3, 8, 0, 0);
	offer(r, 0);
}
static void zero_length(struct rig *r)
{
	set_desc(r, DESC, 0, DATA, 0, 0, 0);
	offer(r, 0);
}
static void readable_after_writable(struct rig *r)
{
	set_desc(r, DESC, 0, DATA, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(r, DESC, 1, DATA, 8, 0, 0);
	offer(r, 0);
}
static void indirect_not_negotiated(struct rig *r)
{
	set_desc(r, TABLE, 0, DATA, 8, 0, 0);
	set_desc(r, DESC, 0, TABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(r, 0);
}
static void indirect_with_next(struct rig *r)
{
	set_desc(r, TABLE, 0, DATA, 8, 0, 0);
	set_desc(r, DESC, 0, TABLE, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	set_desc(r, DESC, 1, DATA, 8, 0, 0);
	offer(r, 0);
}
static void nested_indirect(struct rig *r)
{
	set_desc(r, TABLE + 0x100, 0, DATA, 8, 0, 0);
	set_desc(r, TABLE, 0, TABLE + 0x100, 16, VIRTQ_DESC_F_INDIRECT, 0);
	set_desc(r, DESC, 0, TABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(r, 0);
}
static void indirect_len_not_multiple(struct rig *r)
{
	set_desc(r, TABLE, 0, DATA, 8, 0, 0);
	set_desc(r, DESC, 0, TABLE, 20, VIRTQ_DESC_F_INDIRECT, 0);
	offer(r, 0);
}
static void indirect_len_zero(struct rig *r)
{
	set_desc(r, DESC, 0, TABLE, 0, VIRTQ_DESC_F_INDIRECT, 0);
	offer(r, 0);
}
static void indirect_table_outside_ram(struct rig *r)
{
	set_desc(r, DESC, 0, RAM - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer(r, 0);
}
static void indirect_table_too_big(struct rig *r)
{
	set_desc(r, DESC, 0, 0, 1025 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(r, 0);
}
static void indirect_loop(struct rig *r)
{
	set_desc(r, TABLE, 0, DATA, 8, VIRTQ_DESC_F_NEXT, 1);
	set_desc(r, TABLE, 1, DATA, 8, VIRTQ_DESC_F_NEXT, 0);
	set_desc(r, DESC, 0, TABLE, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer(r, 0);
}
static void indirect_next_out_of_table(struct rig *r)
{
	set_desc(r, TABLE, 0, DATA, 8, VIRTQ_DESC_F_NEXT, 2); /* table has 2 entries */
	set_desc(r, DESC, 0, TABLE, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer(r, 0);
}
static void bad_desc_inside_indirect(struct rig *r)
{
	set_desc(r, TABLE, 0, RAM + 0x1000, 8, 0, 0);
	set_desc(r, DESC, 0, TABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(r, 0);
}
static void more_segments_than_the_device_takes(struct rig *r)
{
	r->c.iov_cap = 2;
	for (uint16_t i = 0; i < 3; i++)
		set_desc(r, DESC, i, DATA, 8, i < 2 ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	offer(r, 0);
}

static void malformed_rings_are_refused(void **state)
{
	(void)state;
	expect_malformed(bad_head, false, -EINVAL);
	expect_malformed(avail_idx_runs_ahead, false, -EINVAL);
	expect_malformed(two_desc_loop, false, -EINVAL);
	expect_malformed(self_loop, false, -EINVAL);
	expect_malformed(next_out_of_range, false, -EINVAL);
	expect_malformed(addr_outside_ram, false, -EINVAL);
	expect_malformed(addr_straddles_end_of_ram, false, -EINVAL);
	expect_malformed(addr_wraps_around, false, -EINVAL);
	expect_malformed(zero_length, false, -EINVAL);
	expect_malformed(readable_after_writable, false, -EINVAL);
	expect_malformed(more_segments_than_the_device_takes, false, -ENOBUFS);
}

static void malformed_indirect_tables_are_refused(void **state)
{
	(void)state;
	expect_malformed(indirect_not_negotiated, false, -EINVAL);
	expect_malformed(indirect_with_next, true, -EINVAL);
	expect_malformed(nested_indirect, true, -EINVAL);
	expect_malformed(indirect_len_not_multiple, true, -EINVAL);
	expect_malformed(indirect_len_zero, true, -EINVAL);
	expect_malformed(indirect_table_outside_ram, true, -EINVAL);
	expect_malformed(indirect_table_too_big, true, -EINVAL);
	expect_malformed(indirect_loop, true, -EINVAL);
	expect_malformed(indirect_next_out_of_table, true, -EINVAL);
	expect_malformed(bad_desc_inside_indirect, true, -EINVAL);
}

static void chains_over_4gib_are_refused(void **state)
{
	(void)state;
	/* A sparse 8 GiB "guest": only the first MiB is backed; the walker never touches data. */
	size_t big = 8ull << 30;
	uint8_t *ram = mmap(NULL, big, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (ram == MAP_FAILED)
		skip();
	assert_int_equal(mprotect(ram, RAM, PROT_READ | PROT_WRITE), 0);
	struct guest_mem mem = { .nregions = 1, .ram_size = big, .fd = -1 };
	mem.regions[0] = (struct guest_mem_region){ .gpa = 0, .size = big, .host = ram };
	struct virtqueue vq;
	vq_init(&vq, QSZ);
	vq.desc_gpa = DESC;
	vq.avail_gpa = AVAIL;
	vq.used_gpa = USED;
	assert_int_equal(vq_start(&vq, &mem, false, false), 0);
	struct virtq_desc d0 = { .addr = 1ull << 30, .len = 0xc0000000u, .flags = VIRTQ_DESC_F_NEXT, .next = 1 };
	struct virtq_desc d1 = { .addr = 4ull << 30, .len = 0x40000000u, .flags = 0 };
	memcpy(ram + DESC, &d0, 16);
	memcpy(ram + DESC + 16, &d1, 16);
	uint16_t *avail = (uint16_t *)(ram + AVAIL);
	avail[2] = 0;
	avail[1] = 1;
	struct iovec iov[4];
	struct vq_chain c = { .iov = iov, .iov_cap = 4 };
	assert_int_equal(vq_pop(&vq, &c), -EINVAL);
	munmap(ram, big);
}

static void start_validates_the_ring_layout(void **state)
{
	(void)state;
	struct rig r;
	rig_setup(&r, false, false);
	struct virtqueue *vq = &r.vq;
	vq->size = 6; /* not a power of two */
	assert_int_equal(vq_start(vq, &r.mem, false, false), -EINVAL);
	assert_false(vq_ready(vq));
	assert_int_equal(vq_pop(vq, &r.c), 0); /* not started: nothing to pop, no crash */
	vq->size = 16; /* above the device's maximum */
	assert_int_equal(vq_start(vq, &r.mem, false, false), -EINVAL);
	vq->size = 0;
	assert_int_equal(vq_start(vq, &r.mem, false, false), -EINVAL);
	vq->size = QSZ;
	vq->desc_gpa = DESC + 8; /* descriptors need 16-byte alignment */
	assert_int_equal(vq_start(vq, &r.mem, false, false), -EINVAL);
	vq->desc_gpa = DESC;
	vq->used_gpa = USED + 2; /* used ring: 4 */
	assert_int_equal(vq_start(vq, &r.mem, false, false), -EINVAL);
	vq->used_gpa = RAM - 16; /* runs past the end of RAM */
	assert_int_equal(vq_start(vq, &r.mem, false, false), -EINVAL);
	vq->used_gpa = USED;
	vq->avail_gpa = RAM + 0x1000;
	assert_int_equal(vq_start(vq, &r.mem, false, false), -EINVAL);
	vq->avail_gpa = AVAIL;
	assert_int_equal(vq_start(vq, &r.mem, false, false), 0);
	vq_push(vq, QSZ, 0); /* a head the ring cannot hold is ignored */
	assert_int_equal(used_idx(&r), 0);
	rig_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_request_chain_pops_as_readable_then_writable),
		cmocka_unit_test(no_interrupt_flag_and_no_notify_flag),
		cmocka_unit_test(event_index_suppresses_interrupts_and_kicks),
		cmocka_unit_test(indices_wrap_around_65535),
		cmocka_unit_test(indirect_tables_are_walked),
		cmocka_unit_test(full_length_chain_is_accepted),
		cmocka_unit_test(malformed_rings_are_refused),
		cmocka_unit_test(malformed_indirect_tables_are_refused),
		cmocka_unit_test(chains_over_4gib_are_refused),
		cmocka_unit_test(start_validates_the_ring_layout),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
