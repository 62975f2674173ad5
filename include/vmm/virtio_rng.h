/* virtio-rng: one queue; every writable buffer the guest posts is filled
 * from getrandom(). */
#ifndef VMM_VIRTIO_RNG_H
#define VMM_VIRTIO_RNG_H

#include "vmm/virtio.h"

struct device_ops;

struct virtio_rng_state {
	struct virtio_state vio;
};
extern const struct vmstate_desc virtio_rng_vmstate;
extern const struct device_ops virtio_rng_device_ops;

struct virtio_rng {
	struct virtio_dev vd;
	struct virtio_rng_state st;     /* vd.lock */
	struct iovec iov[VIRTQ_MAX_SIZE];
	uint64_t bytes;                 /* handed out, for tests */
};

#define VIRTIO_RNG_QUEUE_SIZE 64
#define VIRTIO_RNG_MAX_REQ 65536    /* bytes filled per request at most */

/* Creates the device (not attached, thread not started); VM may be NULL and
 * VM_FD -1 for unit tests. 0 or -errno. */
int virtio_rng_create(struct virtio_rng **out, struct vm *vm, const struct guest_mem *mem,
		      int vm_fd, struct irq_router *router) VMM_MUST_CHECK;
/* Stops the thread and frees the device. */
void virtio_rng_destroy(struct virtio_rng *rng);

#endif
