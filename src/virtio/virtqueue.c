#include "virtio/virtqueue.h"

#include <errno.h>
#include <string.h>

#include "lib/util.h"

/* Indirect tables may hold more descriptors than the ring (Linux builds them from its sg lists). */
#define VQ_MAX_INDIRECT 1024

/* Byte layout of the split rings (virtio 1.x 2.7). */
#define AVAIL_HDR 4 /* flags, idx */
#define USED_HDR 4
#define USED_ELEM 8 /* le32 id, le32 len */

static uint64_t desc_bytes(uint16_t size) { return 16ull * size; }
static uint64_t avail_bytes(uint16_t size) { return AVAIL_HDR + 2ull * size + 2; }
static uint64_t used_bytes(uint16_t size) { return USED_HDR + (uint64_t)USED_ELEM * size + 2; }

void vq_init(struct virtqueue *vq, uint16_t max_size)
{
	memset(vq, 0, sizeof(*vq));
	vq->max_size = max_size;
	vq->size = max_size;
	vq->msix_vector = 0xffff;
}

void vq_reset(struct virtqueue *vq)
{
	vq_init(vq, vq->max_size);
}

int vq_start(struct virtqueue *vq, const struct guest_mem *mem, bool event_idx, bool indirect)
{
	vq->desc = NULL;
	vq->avail = NULL;
	vq->used = NULL;
	vq->broken = false;
	uint16_t n = vq->size;
	if (n == 0 || n > vq->max_size || (n & (n - 1)))
		return -EINVAL;
	if ((vq->desc_gpa & 15) || (vq->avail_gpa & 1) || (vq->used_gpa & 3))
		return -EINVAL;
	const void *d = gpa_to_host(mem, vq->desc_gpa, desc_bytes(n));
	const void *a = gpa_to_host(mem, vq->avail_gpa, avail_bytes(n));
	void *u = gpa_to_host_write(mem, vq->used_gpa, used_bytes(n));
	if (!d || !a || !u)
		return -EINVAL;
	vq->mem = mem;
	vq->desc = d;
	vq->avail = a;
	vq->used = u;
	vq->event_idx = event_idx;
	vq->indirect = indirect;
	return 0;
}

bool vq_ready(const struct virtqueue *vq)
{
	return vq->desc && !vq->broken;
}

static uint16_t avail_idx(const struct virtqueue *vq)
{
	return __atomic_load_n(&vq->avail[1], __ATOMIC_ACQUIRE);
}

static uint16_t *avail_event(const struct virtqueue *vq)
{
	return (uint16_t *)(vq->used + USED_HDR + (size_t)USED_ELEM * vq->size);
}

/* Stores the used ring's avail_event (the driver reads it to decide when to kick) and marks it. */
static void set_avail_event(struct virtqueue *vq, uint16_t v)
{
	__atomic_store_n(avail_event(vq), v, __ATOMIC_RELAXED);
	guest_mem_wrote(vq->mem, avail_event(vq), sizeof(uint16_t));
}

static int broken(struct virtqueue *vq, int err)
{
	vq->broken = true;
	return err;
}

/* Copies descriptor i of a table once, so the guest cannot change it between check and use. */
static struct virtq_desc read_desc(const void *table, uint32_t i)
{
	struct virtq_desc d;
	memcpy(&d, (const uint8_t *)table + 16ull * i, sizeof(d));
	return d;
}

int vq_pop(struct virtqueue *vq, struct vq_chain *c)
{
	if (vq->broken)
		return -EINVAL;
	if (!vq->desc)
		return 0;
	uint16_t idx = avail_idx(vq);
	uint16_t pending = (uint16_t)(idx - vq->last_avail);
	if (pending == 0)
		return 0;
	if (pending > vq->size)
		return broken(vq, -EINVAL); /* the driver claims more buffers than the ring holds */
	uint16_t head = __atomic_load_n(&vq->avail[2 + vq->last_avail % vq->size], __ATOMIC_RELAXED);
	if (head >= vq->size)
		return broken(vq, -EINVAL);

	c->mem = vq->mem;
	c->head = head;
	c->n_out = c->n_in = 0;
	c->out_len = c->in_len = 0;
	const void *table = vq->desc;
	uint32_t table_len = vq->size;
	uint32_t i = head;
	uint32_t walked = 0; /* descriptors visited in the current table: bounds loops */
	bool in_indirect = false;
	uint64_t total = 0;
	unsigned int n = 0;
	for (;;) {
		if (++walked > table_len)
			return broken(vq, -EINVAL); /* a loop, or a chain longer than its table */
		struct virtq_desc d = read_desc(table, i);
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (!vq->indirect || in_indirect || (d.flags & VIRTQ_DESC_F_NEXT))
				return broken(vq, -EINVAL);
			if (d.len == 0 || d.len % 16 || d.len / 16 > VQ_MAX_INDIRECT)
				return broken(vq, -EINVAL);
			const void *t = gpa_to_host(vq->mem, d.addr, d.len);
			if (!t)
				return broken(vq, -EINVAL);
			table = t;
			table_len = d.len / 16;
			in_indirect = true;
			walked = 0;
			i = 0;
			continue;
		}
		if (d.len == 0)
			return broken(vq, -EINVAL);
		/* iov_base is not const: a readable segment's pointer is only read through, by vq_chain_read(). */
		void *p = (d.flags & VIRTQ_DESC_F_WRITE) ? gpa_to_host_write(vq->mem, d.addr, d.len)
							 : (void *)gpa_to_host(vq->mem, d.addr, d.len);
		if (!p)
			return broken(vq, -EINVAL);
		total += d.len;
		if (total > UINT32_MAX)
			return broken(vq, -EINVAL); /* the used ring's length field could not describe it */
		if (d.flags & VIRTQ_DESC_F_WRITE) {
			c->n_in++;
			c->in_len += d.len;
		} else {
			if (c->n_in)
				return broken(vq, -EINVAL); /* readable after writable */
			c->n_out++;
			c->out_len += d.len;
		}
		if (n >= c->iov_cap)
			return broken(vq, -ENOBUFS);
		c->iov[n].iov_base = p;
		c->iov[n].iov_len = d.len;
		n++;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		i = d.next;
		if (i >= table_len)
			return broken(vq, -EINVAL);
	}
	vq->last_avail++;
	/* With event index, tell the driver how far we got so it kicks only for new buffers. */
	if (vq->event_idx)
		set_avail_event(vq, vq->last_avail);
	return 1;
}

void vq_unpop(struct virtqueue *vq, uint16_t n)
{
	vq->last_avail = (uint16_t)(vq->last_avail - n);
	if (vq->event_idx && vq->used)
		set_avail_event(vq, vq->last_avail);
}

void vq_push(struct virtqueue *vq, uint16_t head, uint32_t len)
{
	if (!vq->used || head >= vq->size)
		return;
	uint8_t *e = vq->used + USED_HDR + (size_t)USED_ELEM * (vq->used_idx % vq->size);
	uint32_t id = head;
	memcpy(e, &id, 4);
	memcpy(e + 4, &len, 4);
	vq->used_idx++;
	/* The element must be visible before the index that publishes it. */
	__atomic_store_n((uint16_t *)(vq->used + 2), vq->used_idx, __ATOMIC_RELEASE);
	guest_mem_wrote(vq->mem, e, USED_ELEM);
	guest_mem_wrote(vq->mem, vq->used + 2, sizeof(uint16_t));
}

bool vq_should_notify(struct virtqueue *vq)
{
	if (!vq->avail)
		return false;
	/* Our used-index store must be ordered before reading the driver's suppression state. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx)
		return !(__atomic_load_n(&vq->avail[0], __ATOMIC_RELAXED) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	uint16_t old = vq->signalled_used, now = vq->used_idx;
	bool valid = vq->signalled_valid;
	vq->signalled_used = now;
	vq->signalled_valid = true;
	if (!valid)
		return true;
	uint16_t used_event = __atomic_load_n(&vq->avail[2 + vq->size], __ATOMIC_RELAXED);
	return (uint16_t)(now - used_event - 1) < (uint16_t)(now - old);
}

void vq_disable_notify(struct virtqueue *vq)
{
	if (!vq->used || vq->event_idx)
		return; /* with event index, not advancing avail_event is enough */
	__atomic_store_n((uint16_t *)vq->used, VIRTQ_USED_F_NO_NOTIFY, __ATOMIC_RELAXED);
	guest_mem_wrote(vq->mem, vq->used, sizeof(uint16_t));
}

bool vq_enable_notify(struct virtqueue *vq)
{
	if (!vq->used)
		return false;
	if (vq->event_idx) {
		set_avail_event(vq, vq->last_avail);
	} else {
		__atomic_store_n((uint16_t *)vq->used, 0, __ATOMIC_RELAXED);
		guest_mem_wrote(vq->mem, vq->used, sizeof(uint16_t));
	}
	/* Publish before re-reading avail->idx, or a buffer added meanwhile goes unnoticed. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return avail_idx(vq) != vq->last_avail;
}

size_t vq_chain_read(const struct vq_chain *c, size_t skip, void *dst, size_t len)
{
	size_t done = 0;
	for (unsigned int i = 0; i < c->n_out && done < len; i++) {
		size_t seg = c->iov[i].iov_len;
		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		size_t n = MIN(seg - skip, len - done);
		memcpy((uint8_t *)dst + done, (uint8_t *)c->iov[i].iov_base + skip, n);
		done += n;
		skip = 0;
	}
	return done;
}

size_t vq_chain_write(const struct vq_chain *c, size_t skip, const void *src, size_t len)
{
	size_t done = 0;
	for (unsigned int i = c->n_out; i < (unsigned int)c->n_out + c->n_in && done < len; i++) {
		size_t seg = c->iov[i].iov_len;
		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		size_t n = MIN(seg - skip, len - done);
		memcpy((uint8_t *)c->iov[i].iov_base + skip, (const uint8_t *)src + done, n);
		if (c->mem)
			guest_mem_wrote(c->mem, (uint8_t *)c->iov[i].iov_base + skip, n);
		done += n;
		skip = 0;
	}
	return done;
}

void vq_chain_wrote(const struct vq_chain *c, size_t len)
{
	if (c->mem)
		guest_mem_wrote_iov(c->mem, &c->iov[c->n_out], c->n_in, len);
}
