/* Split virtqueue operations on guest memory (see virtqueue.h). Ring fields
 * are read with single atomic loads and descriptors are copied before they
 * are checked, so a guest changing them concurrently cannot slip anything
 * past the checks. */
#include <errno.h>
#include <string.h>
#include "vmm/mem.h"
#include "vmm/virtqueue.h"
#include "vmm/vmstate.h"

static int virtq_post_load(void *opaque, uint32_t version)
{
	struct virtq_state *s = opaque;

	if (s->enabled > 1 || s->size > VIRTQ_MAX_SIZE || (s->size & (s->size - 1)))
		return -EINVAL;
	if (s->enabled && (!s->size || (s->desc & 15) || (s->avail & 1) || (s->used & 3)))
		return -EINVAL;
	if (s->size && (uint16_t)(s->last_avail_idx - s->used_idx) > s->size)
		return -EINVAL;
	return 0;
}

const struct vmstate_desc virtq_vmstate = {
	.name = "virtq", .version_id = 1, .minimum_version_id = 1,
	.size = sizeof(struct virtq_state), .post_load = virtq_post_load,
	.fields = (const struct vmstate_field[]){
		VMSTATE_U16(struct virtq_state, size),
		VMSTATE_U16(struct virtq_state, enabled),
		VMSTATE_U16(struct virtq_state, msix_vector),
		VMSTATE_U64(struct virtq_state, desc),
		VMSTATE_U64(struct virtq_state, avail),
		VMSTATE_U64(struct virtq_state, used),
		VMSTATE_U16(struct virtq_state, last_avail_idx),
		VMSTATE_U16(struct virtq_state, used_idx),
		VMSTATE_U16(struct virtq_state, signalled_used),
		VMSTATE_BOOL(struct virtq_state, signalled_used_valid),
		VMSTATE_END,
	},
};

#define LOAD16(p) __atomic_load_n((p), __ATOMIC_RELAXED)

void virtq_init(struct virtq *vq, struct virtq_state *st, const struct guest_mem *mem)
{
	memset(vq, 0, sizeof(*vq));
	vq->st = st;
	vq->mem = mem;
}

int virtq_start(struct virtq *vq, uint16_t max_size)
{
	const struct virtq_state *s = vq->st;
	uint64_t n = s->size;

	vq->ready = false;
	vq->broken = false;
	if (!n || n > max_size || n > VIRTQ_MAX_SIZE || (n & (n - 1)) || (s->desc & 15) ||
	    (s->avail & 1) || (s->used & 3))
		return -EINVAL;
	vq->desc = mem_gpa_ptr(vq->mem, s->desc, 16 * n);
	vq->avail = mem_gpa_ptr(vq->mem, s->avail, 6 + 2 * n);
	vq->used = mem_gpa_ptr(vq->mem, s->used, 6 + 8 * n);
	if (!vq->desc || !vq->avail || !vq->used)
		return -EINVAL;
	vq->ready = true;
	return 0;
}

void virtq_stop(struct virtq *vq)
{
	vq->ready = false;
	vq->broken = false;
	vq->desc = NULL;
	vq->avail = NULL;
	vq->used = NULL;
}

static uint16_t *virtq_used_idx_ptr(struct virtq *vq)
{
	return (uint16_t *)(vq->used + 2);
}

uint16_t virtq_pending(struct virtq *vq)
{
	uint16_t n;

	if (!vq->ready || vq->broken)
		return 0;
	n = (uint16_t)(LOAD16(&vq->avail[1]) - vq->st->last_avail_idx);
	return n > vq->st->size ? 0 : n;
}

static int virtq_fail(struct virtq *vq)
{
	vq->broken = true;
	return -EIO;
}

int virtq_pop(struct virtq *vq, struct virtq_elem *e)
{
	struct virtq_state *s = vq->st;
	uint16_t avail_idx, idx, n = 0;
	bool seen_write = false;
	struct virtq_desc d;

	if (!vq->ready)
		return 0;
	if (vq->broken)
		return -EIO;
	avail_idx = LOAD16(&vq->avail[1]);
	if (avail_idx == s->last_avail_idx)
		return 0;
	if ((uint16_t)(avail_idx - s->last_avail_idx) > s->size)
		return virtq_fail(vq);
	/* Read the ring entry only after seeing the index (pairs with the
	 * driver's write barrier). */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	idx = LOAD16(&vq->avail[2 + (s->last_avail_idx & (s->size - 1))]);
	s->last_avail_idx++;
	e->head = idx;
	e->nr_out = e->nr_in = 0;
	e->out_len = e->in_len = 0;
	for (;;) {
		void *p = NULL;

		if (idx >= s->size || ++n > s->size)
			return virtq_fail(vq);      /* out of the table, or a loop */
		memcpy(&d, (void *)&vq->desc[idx], sizeof(d));
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return virtq_fail(vq);      /* not offered */
		if (d.len) {
			p = mem_gpa_ptr(vq->mem, d.addr, d.len);
			if (!p)
				return virtq_fail(vq);
			if (e->nr_out + e->nr_in >= e->iov_cap)
				return virtq_fail(vq);
		}
		if (d.flags & VIRTQ_DESC_F_WRITE) {
			seen_write = true;
			if (d.len) {
				e->iov[e->nr_out + e->nr_in++] = (struct iovec){ p, d.len };
				e->in_len += d.len;
			}
		} else {
			if (seen_write)
				return virtq_fail(vq);  /* readable after writable */
			if (d.len) {
				e->iov[e->nr_out++] = (struct iovec){ p, d.len };
				e->out_len += d.len;
			}
		}
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		idx = d.next;
	}
	return 1;
}

void virtq_unpop(struct virtq *vq, uint16_t n)
{
	vq->st->last_avail_idx -= n;
}

void virtq_push(struct virtq *vq, uint16_t head, uint32_t len)
{
	struct virtq_state *s = vq->st;
	uint8_t *ent;

	if (!vq->ready)
		return;
	ent = vq->used + 4 + 8 * (size_t)(s->used_idx & (s->size - 1));
	memcpy(ent, &(uint32_t){ head }, 4);
	memcpy(ent + 4, &len, 4);
	s->used_idx++;
	__atomic_store_n(virtq_used_idx_ptr(vq), s->used_idx, __ATOMIC_RELEASE);
	mem_mark_dirty(vq->mem, ent, 8);
	mem_mark_dirty(vq->mem, virtq_used_idx_ptr(vq), 2);
}

void virtq_written(const struct virtq *vq, const struct iovec *iov, unsigned n, size_t len)
{
	for (unsigned i = 0; i < n && len; i++) {
		size_t c = iov[i].iov_len < len ? iov[i].iov_len : len;

		mem_mark_dirty(vq->mem, iov[i].iov_base, c);
		len -= c;
	}
}

bool virtq_should_notify(struct virtq *vq)
{
	struct virtq_state *s = vq->st;
	uint16_t old, new_idx, event;
	bool valid;

	if (!vq->ready)
		return false;
	/* Our used->idx store must be visible before we read the driver's flags. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	old = s->signalled_used;
	valid = s->signalled_used_valid;
	new_idx = s->used_idx;
	if (!vq->event_idx) {
		if (LOAD16(&vq->avail[0]) & VIRTQ_AVAIL_F_NO_INTERRUPT)
			return false;
		s->signalled_used = new_idx;
		s->signalled_used_valid = true;
		return true;
	}
	s->signalled_used = new_idx;
	s->signalled_used_valid = true;
	if (!valid)
		return true;
	event = LOAD16(&vq->avail[2 + s->size]);
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

void virtq_disable_notify(struct virtq *vq)
{
	uint16_t *flags;

	if (!vq->ready || vq->event_idx)
		return;
	flags = (uint16_t *)vq->used;
	__atomic_store_n(flags, (uint16_t)(LOAD16(flags) | VIRTQ_USED_F_NO_NOTIFY),
			 __ATOMIC_RELAXED);
	mem_mark_dirty(vq->mem, flags, 2);
}

bool virtq_enable_notify(struct virtq *vq)
{
	return virtq_enable_notify_after(vq, 0);
}

bool virtq_enable_notify_after(struct virtq *vq, uint16_t seen)
{
	uint16_t want = (uint16_t)(vq->st->last_avail_idx + seen);

	if (!vq->ready || vq->broken)
		return false;
	if (vq->event_idx) {
		uint16_t *ev = (uint16_t *)(vq->used + 4 + 8 * (size_t)vq->st->size);

		__atomic_store_n(ev, want, __ATOMIC_RELAXED);
		mem_mark_dirty(vq->mem, ev, 2);
	} else {
		uint16_t *flags = (uint16_t *)vq->used;

		__atomic_store_n(flags, (uint16_t)(LOAD16(flags) & ~VIRTQ_USED_F_NO_NOTIFY),
				 __ATOMIC_RELAXED);
		mem_mark_dirty(vq->mem, flags, 2);
	}
	/* Publish the request before re-reading avail->idx (pairs with the
	 * driver's barrier between avail->idx and reading our flags). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return (uint16_t)(LOAD16(&vq->avail[1]) - vq->st->last_avail_idx) > seen;
}

/* Copies between BUF and the LEN bytes at OFF of IOV[0..N): into the iovecs
 * when TO_IOV, out of them otherwise; returns the bytes copied. */
static size_t virtq_iov_copy(const struct iovec *iov, unsigned n, size_t off, void *buf,
			     size_t len, bool to_iov)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		const struct iovec *v = &iov[i];
		size_t c;

		if (off >= v->iov_len) {
			off -= v->iov_len;
			continue;
		}
		c = v->iov_len - off < len - done ? v->iov_len - off : len - done;
		if (to_iov)
			memcpy((uint8_t *)v->iov_base + off, (uint8_t *)buf + done, c);
		else
			memcpy((uint8_t *)buf + done, (uint8_t *)v->iov_base + off, c);
		done += c;
		off = 0;
	}
	return done;
}

size_t virtq_elem_read(const struct virtq_elem *e, size_t off, void *buf, size_t len)
{
	return virtq_iov_copy(e->iov, e->nr_out, off, buf, len, false);
}

size_t virtq_elem_write(const struct virtq_elem *e, size_t off, const void *buf, size_t len)
{
	return virtq_iov_copy(e->iov + e->nr_out, e->nr_in, off, (void *)buf, len, true);
}
