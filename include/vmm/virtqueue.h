/* Split virtqueues (virtio 1.x) over guest memory, with event-idx. Every
 * descriptor chain is copied out of guest memory and validated before use:
 * ring addresses and every buffer go through mem_gpa_ptr, chains that loop or
 * run past the queue size, device-readable after device-writable buffers,
 * indirect descriptors (not offered) and bogus avail indices all make
 * virtq_pop() report the ring broken (the device then sets NEEDS_RESET).
 * A virtq is used by one thread at a time (its device's lock). */
#ifndef VMM_VIRTQUEUE_H
#define VMM_VIRTQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "vmm/log.h"

struct guest_mem;
struct vmstate_desc;

#define VIRTQ_MAX_SIZE 1024
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1
#define VIRTIO_NO_VECTOR 0xffff

/* Migratable state of one queue (the transport's registers + ring indices). */
struct virtq_state {
	uint16_t size;              /* entries, a power of two <= the device maximum */
	uint16_t enabled;           /* queue_enable, 0 or 1 */
	uint16_t msix_vector;       /* VIRTIO_NO_VECTOR or < vector count */
	uint64_t desc;              /* guest addresses of the three parts */
	uint64_t avail;
	uint64_t used;
	uint16_t last_avail_idx;    /* next avail entry the device reads */
	uint16_t used_idx;          /* next used entry the device writes */
	uint16_t signalled_used;    /* used_idx at the last interrupt */
	bool signalled_used_valid;
};
extern const struct vmstate_desc virtq_vmstate;

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq {
	struct virtq_state *st;
	const struct guest_mem *mem;
	bool event_idx;             /* VIRTIO_F_RING_EVENT_IDX negotiated */
	bool ready;                 /* host pointers below are valid */
	bool broken;                /* a malformed ring was seen */
	struct virtq_desc *desc;
	uint16_t *avail;            /* flags, idx, ring[size], used_event */
	uint8_t *used;              /* flags, idx, {u32 id, u32 len}[size], avail_event */
};

/* One popped chain: out (device-readable) segments first, then in (writable). */
struct virtq_elem {
	uint16_t head;
	uint16_t nr_out, nr_in;
	uint64_t out_len, in_len;   /* bytes in each direction */
	uint32_t iov_cap;           /* entries in iov */
	struct iovec *iov;
};

/* Binds VQ to its state ST and guest memory MEM (not started). */
void virtq_init(struct virtq *vq, struct virtq_state *st, const struct guest_mem *mem);
/* Checks the rings described by vq->st (size a power of two <= MAX_SIZE,
 * alignment, all three parts inside guest RAM) and makes the queue ready;
 * 0 or -EINVAL. */
int virtq_start(struct virtq *vq, uint16_t max_size) VMM_MUST_CHECK;
/* Forgets host pointers (queue reset or device reset). */
void virtq_stop(struct virtq *vq);
/* Takes the next available chain into ELEM: 1 if one was taken, 0 if the ring
 * is empty, -EIO if the ring or chain is malformed (vq->broken set; the head,
 * if any, is consumed). */
int virtq_pop(struct virtq *vq, struct virtq_elem *elem) VMM_MUST_CHECK;
/* Gives back the last N popped chains (unused), e.g. when a packet does not fit. */
void virtq_unpop(struct virtq *vq, uint16_t n);
/* Returns a used chain HEAD with LEN bytes written. The device must have
 * reported what it wrote into the chain's buffers with virtq_written() first. */
void virtq_push(struct virtq *vq, uint16_t head, uint32_t len);
/* Tells a running migration that the device wrote the first LEN bytes of
 * IOV[0..N) (guest buffers): call after the write, before virtq_push(). */
void virtq_written(const struct virtq *vq, const struct iovec *iov, unsigned n, size_t len);
/* Whether the driver wants an interrupt for what was pushed since the last
 * call that returned true (event-idx or NO_INTERRUPT). */
bool virtq_should_notify(struct virtq *vq);
/* Asks the driver not to kick (no-op with event-idx). */
void virtq_disable_notify(struct virtq *vq);
/* Asks for kicks again; returns true if entries arrived meanwhile (process
 * them before sleeping). */
bool virtq_enable_notify(struct virtq *vq);
/* The same for a device that has looked at the next SEEN avail entries and
 * needs more than those (a packet they cannot hold): asks for a kick when
 * entry SEEN + 1 arrives; true if it already has. */
bool virtq_enable_notify_after(struct virtq *vq, uint16_t seen);
/* Number of avail entries not yet popped (0 when not ready or broken). */
uint16_t virtq_pending(struct virtq *vq);

/* Copies up to LEN bytes at byte OFF of the ELEM's out segments into BUF;
 * returns the bytes copied. */
size_t virtq_elem_read(const struct virtq_elem *elem, size_t off, void *buf, size_t len);
/* Copies up to LEN bytes from BUF into the in segments at byte OFF; returns
 * the bytes copied. Callers report the bytes with virtq_written(). */
size_t virtq_elem_write(const struct virtq_elem *elem, size_t off, const void *buf, size_t len);

#endif
