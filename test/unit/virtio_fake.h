/* A fake virtio driver for unit tests and fuzzing: guest RAM from mem_init()
 * (no KVM), BAR0 register accesses through virtio_bar_access(), and helpers
 * that lay out split rings and requests in that memory. Header-only. */
#ifndef VMM_TEST_VIRTIO_FAKE_H
#define VMM_TEST_VIRTIO_FAKE_H

#include <string.h>
#include "vmm/mem.h"
#include "vmm/virtio.h"
#include "vmm/virtqueue.h"

/* Ring layout used by the fake driver (queue q uses FAKE_RING(q)). */
#define FAKE_RING(q) (0x10000ULL + 0x10000ULL * (q))
#define FAKE_DESC(q) FAKE_RING(q)
#define FAKE_AVAIL(q) (FAKE_RING(q) + 0x4000)
#define FAKE_USED(q) (FAKE_RING(q) + 0x8000)
#define FAKE_DATA 0x100000ULL

static inline void fake_wr(struct virtio_dev *vd, uint32_t off, uint64_t v, uint32_t len)
{
	uint8_t d[8];

	memcpy(d, &v, 8);
	virtio_bar_access(vd, 0, off, d, len, true);
}

static inline uint64_t fake_rd(struct virtio_dev *vd, uint32_t off, uint32_t len)
{
	uint8_t d[8] = { 0 };
	uint64_t v = 0;

	virtio_bar_access(vd, 0, off, d, len, false);
	memcpy(&v, d, len);
	return v;
}

/* Negotiates FEATURES (plus VERSION_1) and sets up queues 0..NQ-1 of SIZE. */
static inline int fake_driver_init(struct virtio_dev *vd, uint64_t features, int nq, uint16_t size)
{
	features |= 1ULL << VIRTIO_F_VERSION_1;
	fake_wr(vd, 20, 0, 1);                       /* reset */
	fake_wr(vd, 20, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
	fake_wr(vd, 8, 0, 4);
	fake_wr(vd, 12, (uint32_t)features, 4);
	fake_wr(vd, 8, 1, 4);
	fake_wr(vd, 12, (uint32_t)(features >> 32), 4);
	fake_wr(vd, 20, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		VIRTIO_STATUS_FEATURES_OK, 1);
	if (!(fake_rd(vd, 20, 1) & VIRTIO_STATUS_FEATURES_OK))
		return -1;
	for (int q = 0; q < nq; q++) {
		fake_wr(vd, 22, (uint64_t)q, 2);
		fake_wr(vd, 24, size, 2);
		fake_wr(vd, 32, FAKE_DESC(q), 4);
		fake_wr(vd, 36, FAKE_DESC(q) >> 32, 4);
		fake_wr(vd, 40, FAKE_AVAIL(q), 8);
		fake_wr(vd, 48, FAKE_USED(q), 8);
		fake_wr(vd, 28, 1, 2);
	}
	fake_wr(vd, 20, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK, 1);
	return (fake_rd(vd, 20, 1) & VIRTIO_STATUS_DRIVER_OK) ? 0 : -1;
}

static inline void fake_desc(struct guest_mem *m, int q, uint16_t i, uint64_t addr, uint32_t len,
			     uint16_t flags, uint16_t next)
{
	struct virtq_desc d = { addr, len, flags, next };

	(void)!mem_write(m, FAKE_DESC(q) + 16ULL * i, &d, sizeof(d));
}

/* Appends HEAD to the avail ring of queue Q (ring SIZE). */
static inline void fake_avail_add(struct guest_mem *m, int q, uint16_t size, uint16_t head)
{
	uint16_t idx;

	(void)!mem_read(m, FAKE_AVAIL(q) + 2, &idx, 2);
	(void)!mem_write(m, FAKE_AVAIL(q) + 4 + 2ULL * (idx % size), &head, 2);
	idx++;
	(void)!mem_write(m, FAKE_AVAIL(q) + 2, &idx, 2);
}

static inline uint16_t fake_used_idx(struct guest_mem *m, int q)
{
	uint16_t idx = 0;

	(void)!mem_read(m, FAKE_USED(q) + 2, &idx, 2);
	return idx;
}

/* Used entry I of queue Q: id and len. */
static inline void fake_used_elem(struct guest_mem *m, int q, uint16_t size, uint16_t i,
				  uint32_t *id, uint32_t *len)
{
	(void)!mem_read(m, FAKE_USED(q) + 4 + 8ULL * (i % size), id, 4);
	(void)!mem_read(m, FAKE_USED(q) + 8 + 8ULL * (i % size), len, 4);
}

#endif
