/* virtio-blk on a raw image file (or block device): a request queue per vCPU, all
 * I/O through io_uring (reads, writes, flush, discard as punch-hole, write
 * zeroes as zero-range), completions reaped on the device's I/O thread. The
 * image is flock()ed (exclusive, shared when read-only) so two VMMs cannot
 * write it by accident. Requests in flight complete before pause returns. */
#ifndef VMM_VIRTIO_BLK_H
#define VMM_VIRTIO_BLK_H

#include <liburing.h>
#include "vmm/virtio.h"

struct device_ops;

#define VIRTIO_BLK_ID 2
#define VIRTIO_BLK_QUEUE_SIZE 256
#define VIRTIO_BLK_SEG_MAX (VIRTIO_BLK_QUEUE_SIZE - 2)
#define VIRTIO_BLK_CONFIG_LEN 60
#define VIRTIO_BLK_SECTOR 512

#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_ID_BYTES 20
#define VIRTIO_BLK_MAX_DISCARD_SECTORS (1u << 22)

struct virtio_blk_config {
	const char *path;
	bool readonly;
	const char *serial;     /* NULL: none */
	bool direct;            /* O_DIRECT */
	bool lock;              /* flock now (false: the caller locks later) */
	int num_queues;         /* virtqueues, one per vCPU (0: 1; at most VIRTIO_MAX_QUEUES) */
};

struct virtio_blk_state {
	struct virtio_state vio;
	uint64_t capacity;      /* sectors; must match the image on load */
};
extern const struct vmstate_desc virtio_blk_vmstate;
extern const struct device_ops virtio_blk_device_ops;

struct virtio_blk_req;

struct virtio_blk {
	struct virtio_dev vd;
	struct virtio_blk_state st;        /* vd.lock guards all below */
	char path[256];
	int fd;
	bool readonly, locked;
	uint64_t capacity;
	char serial[VIRTIO_BLK_ID_BYTES];
	struct io_uring ring;
	bool ring_ok;
	unsigned inflight;
	uint32_t pushed;                   /* queues with used entries not yet signalled */
	bool starved;                      /* a queue waits for a free request */
	struct virtio_blk_req *reqs;       /* VIRTIO_BLK_QUEUE_SIZE of them */
	struct virtio_blk_req *free_list;
	uint64_t nr_reqs, nr_errors;       /* statistics */
	uint64_t nr_merged;                /* requests joined onto another's I/O */
};

/* Opens and locks the image, sets up io_uring and the device (not attached,
 * thread not started); VM may be NULL, VM_FD -1 (unit tests). 0 or -errno
 * with a message printed. */
int virtio_blk_create(struct virtio_blk **out, struct vm *vm, const struct guest_mem *mem,
		      int vm_fd, struct irq_router *router, const struct virtio_blk_config *cfg)
	VMM_MUST_CHECK;
/* Takes / drops the image lock (migration hands the image over); 0 or -errno. */
int virtio_blk_lock(struct virtio_blk *blk) VMM_MUST_CHECK;
void virtio_blk_unlock(struct virtio_blk *blk);
/* Stops the thread, waits for I/O and frees everything. */
void virtio_blk_destroy(struct virtio_blk *blk);

#endif
