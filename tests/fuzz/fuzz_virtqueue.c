/*
 * libFuzzer target for the split-virtqueue walker: the input is a guest's view of the world
 * (queue configuration plus the raw bytes of guest RAM holding the rings, descriptor tables
 * and indirect tables); the device pops, inspects, fills and pushes whatever chains it finds.
 * Any read or write outside the fake RAM is caught by AddressSanitizer; a hang by libFuzzer.
 *
 * Build and run: make fuzz && build/fuzz/fuzz_virtqueue -max_total_time=60
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/virtqueue.h"

#define RAM_SIZE 0x10000
#define HDR 8
#define DESC_GPA 0x0000
#define AVAIL_GPA 0x1000
#define USED_GPA 0x2000
#define MAX_POPS 64
#define IOV_CAP 300

static void check(int cond)
{
	if (!cond)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < HDR)
		return 0;
	/* Header: log2 queue size, feature bits, starting indices, iov capacity, ring offsets. */
	uint16_t qsize = (uint16_t)(1u << (data[0] % 9)); /* 1..256: the rings fit below 0x3000 */
	bool event_idx = data[1] & 1, indirect = data[1] & 2, misalign = data[1] & 4;
	uint16_t last_avail = (uint16_t)(data[2] | data[3] << 8);
	uint16_t iov_cap = (uint16_t)(1 + (data[4] | data[5] << 8) % IOV_CAP);
	uint8_t *ram = calloc(1, RAM_SIZE);
	check(ram != NULL);
	memcpy(ram, data + HDR, size - HDR < RAM_SIZE ? size - HDR : RAM_SIZE);

	struct guest_mem mem = { .nregions = 1, .ram_size = RAM_SIZE, .fd = -1 };
	/* Some inputs place RAM elsewhere than 0 so that small addresses fall outside it. */
	uint64_t base = (data[6] & 1) ? 0x100000 : 0;
	mem.regions[0] = (struct guest_mem_region){ .gpa = base, .size = RAM_SIZE, .host = ram };

	struct virtqueue vq;
	vq_init(&vq, 256);
	vq.size = qsize;
	vq.desc_gpa = base + DESC_GPA + (misalign ? data[7] % 16 : 0);
	vq.avail_gpa = base + AVAIL_GPA;
	vq.used_gpa = base + USED_GPA;
	vq.last_avail = last_avail;
	vq.used_idx = last_avail;
	if (vq_start(&vq, &mem, event_idx, indirect) == 0) {
		struct iovec *iov = calloc(IOV_CAP, sizeof(*iov));
		check(iov != NULL);
		struct vq_chain c = { .iov = iov, .iov_cap = iov_cap };
		vq_disable_notify(&vq);
		for (int pops = 0; pops < MAX_POPS; pops++) {
			int rc = vq_pop(&vq, &c);
			if (rc <= 0) {
				check(rc == 0 || !vq_ready(&vq));
				if (rc == 0 && vq_enable_notify(&vq))
					continue;
				break;
			}
			check(c.head < qsize);
			check((unsigned int)c.n_out + c.n_in <= iov_cap);
			uint64_t out = 0, in = 0;
			for (unsigned int i = 0; i < (unsigned int)c.n_out + c.n_in; i++) {
				const uint8_t *p = iov[i].iov_base;
				check(p >= ram && iov[i].iov_len > 0 && iov[i].iov_len <= RAM_SIZE &&
				      (size_t)(p - ram) + iov[i].iov_len <= RAM_SIZE);
				*(i < c.n_out ? &out : &in) += iov[i].iov_len;
			}
			check(out == c.out_len && in == c.in_len);
			/* Act like a device: read the request, fill the reply. */
			uint8_t buf[256];
			size_t got = vq_chain_read(&c, 1, buf, sizeof(buf));
			check(got <= sizeof(buf));
			vq_chain_write(&c, 0, buf, got);
			vq_push(&vq, c.head, c.in_len);
			(void)vq_should_notify(&vq);
		}
		free(iov);
	}
	free(ram);
	return 0;
}
