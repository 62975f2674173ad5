/* virtio-rng (device id 4): fills each posted buffer from getrandom(). */
#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>
#include "vmm/device.h"
#include "vmm/virtio_rng.h"
#include "vmm/vmstate.h"

const struct vmstate_desc virtio_rng_vmstate = {
	.name = "virtio-rng", .version_id = 1, .minimum_version_id = 1,
	.size = sizeof(struct virtio_rng_state),
	.fields = (const struct vmstate_field[]){
		VMSTATE_STRUCT(struct virtio_rng_state, vio, &virtio_vmstate),
		VMSTATE_END,
	},
};

static void rng_queue_notify(struct virtio_dev *vd, int q)
{
	struct virtio_rng *rng = vd->priv;
	struct virtq *vq = &vd->vqs[0];
	struct virtq_elem e = { .iov = rng->iov, .iov_cap = VIRTQ_MAX_SIZE };
	bool pushed = false;

	do {
		virtq_disable_notify(vq);
		while (virtq_pop(vq, &e) == 1) {
			uint32_t done = 0;

			for (unsigned i = e.nr_out; i < (unsigned)e.nr_out + e.nr_in; i++) {
				size_t want = e.iov[i].iov_len;

				if (want > VIRTIO_RNG_MAX_REQ - done)
					want = VIRTIO_RNG_MAX_REQ - done;
				ssize_t n = want ? getrandom(e.iov[i].iov_base, want, 0) : 0;

				if (n <= 0)
					break;
				done += (uint32_t)n;
			}
			virtq_written(vq, e.iov + e.nr_out, e.nr_in, done);
			rng->bytes += done;
			virtq_push(vq, e.head, done);
			pushed = true;
		}
	} while (!vq->broken && virtq_enable_notify(vq));
	if (pushed)
		virtio_notify_queue(vd, 0);
}

static const struct virtio_dev_ops rng_vops = {
	.name = "virtio-rng",
	.queue_notify = rng_queue_notify,
};

int virtio_rng_create(struct virtio_rng **out, struct vm *vm, const struct guest_mem *mem,
		      int vm_fd, struct irq_router *router)
{
	struct virtio_rng *rng = calloc(1, sizeof(*rng));
	int err;

	if (!rng)
		return -ENOMEM;
	err = virtio_init(&rng->vd, vm, mem, vm_fd, router, &rng_vops, rng, &rng->st.vio, 4,
			  0x00ff00, 1, VIRTIO_RNG_QUEUE_SIZE, 0, 0);
	if (err) {
		free(rng);
		return err;
	}
	*out = rng;
	return 0;
}

void virtio_rng_destroy(struct virtio_rng *rng)
{
	if (!rng)
		return;
	virtio_stop(&rng->vd);
	free(rng);
}

static void *rng_state(void *opaque)
{
	return &((struct virtio_rng *)opaque)->st;
}

static int rng_apply(void *opaque)
{
	return virtio_apply_state(&((struct virtio_rng *)opaque)->vd);
}

static void rng_pause(void *opaque)
{
	virtio_pause(&((struct virtio_rng *)opaque)->vd);
}

static void rng_resume(void *opaque)
{
	virtio_resume(&((struct virtio_rng *)opaque)->vd);
}

const struct device_ops virtio_rng_device_ops = {
	.name = "virtio-rng",
	.vmsd = &virtio_rng_vmstate,
	.state = rng_state,
	.apply_state = rng_apply,
	.pause = rng_pause,
	.resume = rng_resume,
};
