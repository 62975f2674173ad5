/* The virtio 1.x modern PCI transport (see virtio.h): BAR0 registers,
 * feature/status negotiation, queue setup and validation, ioeventfd kicks,
 * MSI-X interrupts, the per-device I/O thread, pause/drain and the
 * transport's migratable state. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "vmm/irq.h"
#include "vmm/mem.h"
#include "vmm/privilege.h"
#include "vmm/virtio.h"
#include "vmm/vm.h"
#include "vmm/vmstate.h"

#define VIRTIO_STATUS_VALID 0xcf   /* every defined bit */

static int virtio_post_load(void *opaque, uint32_t version)
{
	struct virtio_state *s = opaque;

	if (s->num_queues > VIRTIO_MAX_QUEUES || s->queue_max > VIRTQ_MAX_SIZE ||
	    (s->status & ~VIRTIO_STATUS_VALID) || (s->driver_features & ~s->device_features) ||
	    (s->msix_config != VIRTIO_NO_VECTOR && s->msix_config >= s->pci.msix_nr))
		return -EINVAL;
	for (int i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		const struct virtq_state *q = &s->queues[i];

		if (i >= s->num_queues && (q->enabled || q->size))
			return -EINVAL;
		if (q->size > s->queue_max ||
		    (q->msix_vector != VIRTIO_NO_VECTOR && q->msix_vector >= s->pci.msix_nr))
			return -EINVAL;
	}
	return 0;
}

const struct vmstate_desc virtio_vmstate = {
	.name = "virtio", .version_id = 1, .minimum_version_id = 1,
	.size = sizeof(struct virtio_state), .post_load = virtio_post_load,
	.fields = (const struct vmstate_field[]){
		VMSTATE_U64(struct virtio_state, device_features),
		VMSTATE_U64(struct virtio_state, driver_features),
		VMSTATE_U32(struct virtio_state, device_features_sel),
		VMSTATE_U32(struct virtio_state, driver_features_sel),
		VMSTATE_U8(struct virtio_state, status),
		VMSTATE_U8(struct virtio_state, config_generation),
		VMSTATE_U8(struct virtio_state, isr),
		VMSTATE_U16(struct virtio_state, msix_config),
		VMSTATE_U16(struct virtio_state, queue_sel),
		VMSTATE_U16(struct virtio_state, num_queues),
		VMSTATE_U16(struct virtio_state, queue_max),
		VMSTATE_ARRAY_OF_STRUCT(struct virtio_state, queues, &virtq_vmstate),
		VMSTATE_STRUCT(struct virtio_state, pci, &pci_dev_vmstate),
		VMSTATE_END,
	},
};

bool virtio_has_feature(const struct virtio_dev *vd, unsigned f)
{
	return f < 64 && (vd->st->driver_features >> f) & 1;
}

bool virtio_queue_live(const struct virtio_dev *vd, int q)
{
	return !vd->paused && q >= 0 && q < vd->st->num_queues &&
	       (vd->st->status & (VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_NEEDS_RESET)) ==
		       VIRTIO_STATUS_DRIVER_OK &&
	       vd->vqs[q].ready && !vd->vqs[q].broken;
}

void virtio_notify_queue(struct virtio_dev *vd, int q)
{
	if (virtq_should_notify(&vd->vqs[q]) && vd->st->queues[q].msix_vector != VIRTIO_NO_VECTOR)
		pci_msix_notify(&vd->pci, vd->st->queues[q].msix_vector);
}

void virtio_config_changed(struct virtio_dev *vd)
{
	vd->st->config_generation++;
	vd->st->isr |= 2;
	if (vd->st->msix_config != VIRTIO_NO_VECTOR)
		pci_msix_notify(&vd->pci, vd->st->msix_config);
}

void virtio_set_needs_reset(struct virtio_dev *vd, const char *reason)
{
	if (vd->st->status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	/* A guest can repeat this at will: say it a few times only. */
	if (vd->nr_guest_errors++ < 3)
		vmm_warn("%s: guest driver error (%s): device needs reset", vd->ops->name, reason);
	vd->st->status |= VIRTIO_STATUS_NEEDS_RESET;
	if (vd->st->status & VIRTIO_STATUS_DRIVER_OK)
		virtio_config_changed(vd);
}

/* --- ioeventfds follow BAR0 --- */

static void virtio_map(void *opaque, int bar, uint64_t old, uint64_t addr)
{
	struct virtio_dev *vd = opaque;

	if (bar != 0)
		return;
	for (int q = 0; q < vd->st->num_queues; q++) {
		uint64_t off = VIRTIO_NOTIFY_OFF + (uint64_t)VIRTIO_NOTIFY_MULT * q;

		if (old)
			(void)!irq_ioeventfd(vd->vm_fd, vd->kick_fd[q], old + off, vd->kick_len,
					     false, false);
		if (!addr)
			continue;
		/* Any length first: KVM then serves the kick on its fast MMIO
		 * path, without decoding the guest's instruction. */
		vd->kick_len = 0;
		if (irq_ioeventfd(vd->vm_fd, vd->kick_fd[q], addr + off, 0, false, true) == 0)
			continue;
		vd->kick_len = 2;
		if (irq_ioeventfd(vd->vm_fd, vd->kick_fd[q], addr + off, 2, false, true))
			vmm_warn("%s: no ioeventfd for queue %d; kicks will exit", vd->ops->name, q);
	}
	vd->notify_addr = addr ? addr + VIRTIO_NOTIFY_OFF : 0;
}

/* --- reset and status --- */

static void virtio_reset(struct virtio_dev *vd)
{
	struct virtio_state *s = vd->st;

	if (vd->ops->drain)
		vd->ops->drain(vd);
	if (vd->ops->reset)
		vd->ops->reset(vd);
	for (int q = 0; q < s->num_queues; q++) {
		virtq_stop(&vd->vqs[q]);
		s->queues[q] = (struct virtq_state){ .size = s->queue_max,
						     .msix_vector = VIRTIO_NO_VECTOR };
	}
	s->driver_features = 0;
	s->device_features_sel = s->driver_features_sel = 0;
	s->status = 0;
	s->isr = 0;
	s->msix_config = VIRTIO_NO_VECTOR;
	s->queue_sel = 0;
}

static void virtio_write_status(struct virtio_dev *vd, uint8_t v)
{
	struct virtio_state *s = vd->st;

	if (v == 0) {
		virtio_reset(vd);
		return;
	}
	v &= VIRTIO_STATUS_VALID;
	if ((v & VIRTIO_STATUS_FEATURES_OK) && !(s->status & VIRTIO_STATUS_FEATURES_OK)) {
		/* Refuse (leave FEATURES_OK clear) what we did not offer, or legacy. */
		if ((s->driver_features & ~s->device_features) ||
		    !virtio_has_feature(vd, VIRTIO_F_VERSION_1))
			v &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
	}
	if ((v & VIRTIO_STATUS_DRIVER_OK) && !(v & VIRTIO_STATUS_FEATURES_OK))
		v &= (uint8_t)~VIRTIO_STATUS_DRIVER_OK;
	/* The driver cannot clear bits (other than by reset) nor set NEEDS_RESET. */
	v = (uint8_t)((v & ~VIRTIO_STATUS_NEEDS_RESET) | s->status);
	if ((v & VIRTIO_STATUS_DRIVER_OK) && !(s->status & VIRTIO_STATUS_DRIVER_OK)) {
		s->status = v;
		for (int q = 0; q < s->num_queues; q++)
			vd->vqs[q].event_idx = virtio_has_feature(vd, VIRTIO_F_RING_EVENT_IDX);
		if (vd->ops->driver_ok)
			vd->ops->driver_ok(vd);
		for (int q = 0; q < s->num_queues; q++) {
			uint64_t one = 1;

			if (s->queues[q].enabled &&
			    write(vd->kick_fd[q], &one, sizeof(one)) < 0) { /* already pending */ }
		}
		return;
	}
	s->status = v;
}

/* --- common config --- */

struct virtio_common {
	uint32_t dfselect, df, gfselect, gf;
	uint16_t msix_config, num_queues;
	uint8_t status, generation;
	uint16_t q_select, q_size, q_msix, q_enable, q_notify_off;
	uint64_t q_desc, q_avail, q_used;
} __attribute__((packed));
_Static_assert(sizeof(struct virtio_common) == VIRTIO_COMMON_LEN, "common cfg layout");

static void virtio_common_image(struct virtio_dev *vd, struct virtio_common *c)
{
	struct virtio_state *s = vd->st;
	uint16_t q = s->queue_sel;

	memset(c, 0, sizeof(*c));
	c->dfselect = s->device_features_sel;
	c->df = s->device_features_sel < 2 ?
		(uint32_t)(s->device_features >> (32 * s->device_features_sel)) : 0;
	c->gfselect = s->driver_features_sel;
	c->gf = s->driver_features_sel < 2 ?
		(uint32_t)(s->driver_features >> (32 * s->driver_features_sel)) : 0;
	c->msix_config = s->msix_config;
	c->num_queues = s->num_queues;
	c->status = s->status;
	c->generation = s->config_generation;
	c->q_select = q;
	if (q < s->num_queues) {
		const struct virtq_state *qs = &s->queues[q];

		c->q_size = qs->size;
		c->q_msix = qs->msix_vector;
		c->q_enable = qs->enabled;
		c->q_notify_off = q;
		c->q_desc = qs->desc;
		c->q_avail = qs->avail;
		c->q_used = qs->used;
	}
}

static uint16_t virtio_check_vector(struct virtio_dev *vd, uint16_t v)
{
	return v < vd->pci.st->msix_nr ? v : VIRTIO_NO_VECTOR;
}

#define FIELD_HIT(f) (off < offsetof(struct virtio_common, f) + sizeof(c.f) && \
		      offsetof(struct virtio_common, f) < off + len)

static void virtio_common_write(struct virtio_dev *vd, uint32_t off, const uint8_t *data,
				uint32_t len)
{
	struct virtio_state *s = vd->st;
	struct virtio_common c;
	struct virtq_state *qs;
	bool q_ok, q_locked;

	virtio_common_image(vd, &c);
	memcpy((uint8_t *)&c + off, data, len);
	qs = s->queue_sel < s->num_queues ? &s->queues[s->queue_sel] : NULL;
	q_ok = qs != NULL;
	q_locked = !qs || qs->enabled;   /* queue registers are fixed once enabled */
	if (FIELD_HIT(dfselect))
		s->device_features_sel = c.dfselect;
	if (FIELD_HIT(gfselect))
		s->driver_features_sel = c.gfselect;
	if (FIELD_HIT(gf) && s->driver_features_sel < 2 &&
	    !(s->status & VIRTIO_STATUS_FEATURES_OK)) {
		unsigned sh = 32 * s->driver_features_sel;

		s->driver_features = (s->driver_features & ~(0xffffffffULL << sh)) |
				     (uint64_t)c.gf << sh;
	}
	if (FIELD_HIT(msix_config))
		s->msix_config = virtio_check_vector(vd, c.msix_config);
	if (FIELD_HIT(status))
		virtio_write_status(vd, c.status);
	if (FIELD_HIT(q_select))
		s->queue_sel = c.q_select;
	if (!q_ok || s->queue_sel != (uint16_t)(qs - s->queues))
		return;
	if (FIELD_HIT(q_msix))
		qs->msix_vector = virtio_check_vector(vd, c.q_msix);
	if (q_locked)
		return;
	if (FIELD_HIT(q_size))
		qs->size = c.q_size;
	if (FIELD_HIT(q_desc))
		qs->desc = c.q_desc;
	if (FIELD_HIT(q_avail))
		qs->avail = c.q_avail;
	if (FIELD_HIT(q_used))
		qs->used = c.q_used;
	if (FIELD_HIT(q_enable) && c.q_enable == 1) {
		struct virtq *vq = &vd->vqs[qs - s->queues];

		qs->enabled = 1;
		qs->last_avail_idx = qs->used_idx = 0;
		qs->signalled_used_valid = false;
		if (virtq_start(vq, s->queue_max))
			virtio_set_needs_reset(vd, "queue rings outside RAM or bad size");
	}
}

static void virtio_notify_write(struct virtio_dev *vd, uint32_t off)
{
	uint32_t q = off / VIRTIO_NOTIFY_MULT;
	uint64_t one = 1;

	if (q < vd->st->num_queues && write(vd->kick_fd[q], &one, sizeof(one)) < 0) {
		/* counter already non-zero: the kick is pending */
	}
}

void virtio_bar_access(void *opaque, int bar, uint64_t off, uint8_t *data, uint32_t len,
		       bool is_write)
{
	struct virtio_dev *vd = opaque;

	if (pci_msix_access(&vd->pci, bar, off, data, len, is_write))
		return;
	if (!is_write)
		memset(data, 0, len);
	if (bar != 0 || len > 8)
		return;
	pthread_mutex_lock(&vd->lock);
	if (off + len <= VIRTIO_COMMON_OFF + VIRTIO_COMMON_LEN) {
		if (is_write) {
			virtio_common_write(vd, (uint32_t)off, data, len);
		} else {
			struct virtio_common c;

			virtio_common_image(vd, &c);
			memcpy(data, (uint8_t *)&c + off, len);
		}
	} else if (off == VIRTIO_ISR_OFF) {
		if (!is_write) {
			data[0] = vd->st->isr;
			vd->st->isr = 0;
		}
	} else if (off >= VIRTIO_DEVCFG_OFF && off + len <= VIRTIO_DEVCFG_OFF + vd->config_len) {
		if (is_write && vd->ops->config_write)
			vd->ops->config_write(vd, (uint32_t)(off - VIRTIO_DEVCFG_OFF), data, len);
		else if (!is_write && vd->ops->config_read)
			vd->ops->config_read(vd, (uint32_t)(off - VIRTIO_DEVCFG_OFF), data, len);
	} else if (is_write && off >= VIRTIO_NOTIFY_OFF &&
		   off < VIRTIO_NOTIFY_OFF + VIRTIO_NOTIFY_MULT * (uint64_t)vd->st->num_queues) {
		virtio_notify_write(vd, (uint32_t)(off - VIRTIO_NOTIFY_OFF));
	}
	pthread_mutex_unlock(&vd->lock);
}

/* --- capabilities --- */

static int virtio_add_cap(struct virtio_dev *vd, uint8_t type, uint32_t off, uint32_t len,
			  bool notify)
{
	uint8_t cap[20] = { PCI_CAP_ID_VNDR, 0, notify ? 20 : 16, type, 0 };
	uint32_t mult = VIRTIO_NOTIFY_MULT;

	memcpy(cap + 8, &off, 4);
	memcpy(cap + 12, &len, 4);
	memcpy(cap + 16, &mult, 4);
	return pci_dev_add_cap(&vd->pci, cap, notify ? 20 : 16, NULL);
}

int virtio_init(struct virtio_dev *vd, struct vm *vm, const struct guest_mem *mem, int vm_fd,
		struct irq_router *router, const struct virtio_dev_ops *ops, void *priv,
		struct virtio_state *st, uint16_t device_id, uint32_t class_code,
		uint16_t num_queues, uint16_t queue_max, uint64_t device_features,
		uint32_t config_len)
{
	int err;

	if (num_queues < 1 || num_queues > VIRTIO_MAX_QUEUES || config_len > VIRTIO_DEVCFG_MAX ||
	    !queue_max || queue_max > VIRTQ_MAX_SIZE || (queue_max & (queue_max - 1)))
		return -EINVAL;
	memset(vd, 0, sizeof(*vd));
	vd->ops = ops;
	vd->priv = priv;
	vd->st = st;
	vd->vm = vm;
	vd->mem = mem;
	vd->vm_fd = vm_fd;
	vd->config_len = config_len;
	vd->epfd = vd->stop_fd = -1;
	for (int i = 0; i < VIRTIO_MAX_QUEUES; i++)
		vd->kick_fd[i] = -1;
	pthread_mutex_init(&vd->lock, NULL);
	pthread_cond_init(&vd->cond, NULL);
	memset(st, 0, sizeof(*st));
	st->device_features = device_features | 1ULL << VIRTIO_F_VERSION_1 |
			      1ULL << VIRTIO_F_RING_EVENT_IDX;
	st->num_queues = num_queues;
	st->queue_max = queue_max;
	vd->features_built = st->device_features;
	vd->nq_built = num_queues;
	vd->qmax_built = queue_max;
	for (int q = 0; q < num_queues; q++) {
		virtq_init(&vd->vqs[q], &st->queues[q], mem);
		vd->kick_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vd->kick_fd[q] < 0)
			return -errno;
	}
	pci_dev_init(&vd->pci, &st->pci, 0x1af4, (uint16_t)(0x1040 + device_id), class_code, 1,
		     0x1af4, (uint16_t)(0x1040 + device_id));
	err = pci_dev_set_bar(&vd->pci, 0, VIRTIO_BAR_SIZE, virtio_bar_access, vd);
	if (!err)
		err = virtio_add_cap(vd, 1, VIRTIO_COMMON_OFF, VIRTIO_COMMON_LEN, false) < 0;
	if (!err)
		err = virtio_add_cap(vd, 2, VIRTIO_NOTIFY_OFF, VIRTIO_NOTIFY_MULT * num_queues,
				     true) < 0;
	if (!err)
		err = virtio_add_cap(vd, 3, VIRTIO_ISR_OFF, 1, false) < 0;
	if (!err && config_len)
		err = virtio_add_cap(vd, 4, VIRTIO_DEVCFG_OFF, config_len, false) < 0;
	if (err)
		return -ENOSPC;
	err = pci_msix_init(&vd->pci, num_queues + 1, 0, VIRTIO_MSIX_TABLE_OFF,
			    VIRTIO_MSIX_PBA_OFF, router, vm_fd);
	if (err)
		return err;
	pci_dev_seal(&vd->pci);
	pthread_mutex_lock(&vd->lock);
	virtio_reset(vd);
	pthread_mutex_unlock(&vd->lock);
	return 0;
}

int virtio_attach(struct virtio_dev *vd, struct pci_bus *bus)
{
	return pci_add_dev(bus, &vd->pci, virtio_map, vd);
}

int virtio_add_fd(struct virtio_dev *vd, int fd, uint32_t events)
{
	if (vd->nr_fds == VIRTIO_MAX_FDS)
		return -ENOSPC;
	vd->fds[vd->nr_fds] = fd;
	vd->fd_events[vd->nr_fds] = events;
	return vd->nr_fds++;
}

/* --- the I/O thread --- */

#define VIRTIO_EV_QUEUE 0x000
#define VIRTIO_EV_FD 0x100
#define VIRTIO_EV_STOP 0x200

void virtio_watch_fd(struct virtio_dev *vd, int i, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.u32 = VIRTIO_EV_FD + (uint32_t)i };

	if (vd->epfd >= 0 && i >= 0 && i < vd->nr_fds)
		(void)!epoll_ctl(vd->epfd, EPOLL_CTL_MOD, vd->fds[i], &ev);
}

static void virtio_handle_queue(struct virtio_dev *vd, int q)
{
	uint64_t v;

	if (read(vd->kick_fd[q], &v, sizeof(v)) < 0) { /* spurious */ }
	if (virtio_queue_live(vd, q))
		vd->ops->queue_notify(vd, q);
	if (vd->vqs[q].broken)
		virtio_set_needs_reset(vd, "malformed virtqueue");
}

static void *virtio_thread(void *opaque)
{
	struct virtio_dev *vd = opaque;
	struct epoll_event evs[16];

	privilege_seccomp(THREAD_IO);
	for (;;) {
		int n = epoll_wait(vd->epfd, evs, 16, -1);

		if (n < 0 && errno != EINTR)
			break;
		pthread_mutex_lock(&vd->lock);
		while (vd->paused && !__atomic_load_n(&vd->stopping, __ATOMIC_SEQ_CST))
			pthread_cond_wait(&vd->cond, &vd->lock);
		if (__atomic_load_n(&vd->stopping, __ATOMIC_SEQ_CST)) {
			pthread_mutex_unlock(&vd->lock);
			break;
		}
		for (int i = 0; i < n; i++) {
			uint32_t tag = evs[i].data.u32;

			if (tag >= VIRTIO_EV_FD && tag < VIRTIO_EV_STOP) {
				if (vd->ops->fd_event)
					vd->ops->fd_event(vd, (int)(tag - VIRTIO_EV_FD), evs[i].events);
			} else if (tag < VIRTIO_EV_FD) {
				virtio_handle_queue(vd, (int)tag);
			}
		}
		pthread_mutex_unlock(&vd->lock);
	}
	return NULL;
}

int virtio_start(struct virtio_dev *vd)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int err;

	vd->epfd = epoll_create1(EPOLL_CLOEXEC);
	vd->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vd->epfd < 0 || vd->stop_fd < 0)
		return -errno;
	for (int q = 0; q < vd->st->num_queues; q++) {
		ev.data.u32 = VIRTIO_EV_QUEUE + (uint32_t)q;
		if (epoll_ctl(vd->epfd, EPOLL_CTL_ADD, vd->kick_fd[q], &ev) < 0)
			return -errno;
	}
	for (int i = 0; i < vd->nr_fds; i++) {
		ev.data.u32 = VIRTIO_EV_FD + (uint32_t)i;
		ev.events = vd->fd_events[i];
		if (epoll_ctl(vd->epfd, EPOLL_CTL_ADD, vd->fds[i], &ev) < 0)
			return -errno;
	}
	ev.events = EPOLLIN;
	ev.data.u32 = VIRTIO_EV_STOP;
	if (epoll_ctl(vd->epfd, EPOLL_CTL_ADD, vd->stop_fd, &ev) < 0)
		return -errno;
	err = pthread_create(&vd->thread, NULL, virtio_thread, vd);
	if (err)
		return -err;
	vd->thread_started = true;
	return 0;
}

void virtio_request_stop(struct virtio_dev *vd)
{
	uint64_t one = 1;

	__atomic_store_n(&vd->stopping, true, __ATOMIC_SEQ_CST);
	if (vd->stop_fd >= 0 && write(vd->stop_fd, &one, sizeof(one)) < 0) { /* pending */ }
}

void virtio_stop(struct virtio_dev *vd)
{
	uint64_t one = 1;

	pthread_mutex_lock(&vd->lock);
	vd->stopping = true;
	pthread_cond_broadcast(&vd->cond);
	pthread_mutex_unlock(&vd->lock);
	if (vd->stop_fd >= 0 && write(vd->stop_fd, &one, sizeof(one)) < 0) { /* pending */ }
	if (vd->thread_started) {
		pthread_join(vd->thread, NULL);
		vd->thread_started = false;
	}
	for (int q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		if (vd->kick_fd[q] >= 0)
			close(vd->kick_fd[q]);
		vd->kick_fd[q] = -1;
	}
	for (int i = 0; i < PCI_MSIX_MAX; i++) {
		if (vd->pci.msix_fd[i] >= 0)
			close(vd->pci.msix_fd[i]);
		vd->pci.msix_fd[i] = -1;
	}
	if (vd->epfd >= 0)
		close(vd->epfd);
	if (vd->stop_fd >= 0)
		close(vd->stop_fd);
	vd->epfd = vd->stop_fd = -1;
}

void virtio_poll_once(struct virtio_dev *vd)
{
	pthread_mutex_lock(&vd->lock);
	for (int q = 0; q < vd->st->num_queues; q++)
		virtio_handle_queue(vd, q);
	for (int i = 0; i < vd->nr_fds && vd->ops->fd_event; i++)
		vd->ops->fd_event(vd, i, EPOLLIN | EPOLLOUT);
	pthread_mutex_unlock(&vd->lock);
}

/* --- pause, resume, restore --- */

void virtio_pause(struct virtio_dev *vd)
{
	pthread_mutex_lock(&vd->lock);
	vd->paused = true;
	if (vd->ops->drain)
		vd->ops->drain(vd);
	pthread_mutex_unlock(&vd->lock);
}

void virtio_resume(struct virtio_dev *vd)
{
	uint64_t one = 1;

	pthread_mutex_lock(&vd->lock);
	vd->paused = false;
	pthread_cond_broadcast(&vd->cond);
	/* Look at every queue once: kicks may have been missed while paused
	 * or the state may have been loaded. */
	for (int q = 0; q < vd->st->num_queues; q++)
		if (write(vd->kick_fd[q], &one, sizeof(one)) < 0) { /* pending */ }
	pthread_mutex_unlock(&vd->lock);
}

int virtio_apply_state(struct virtio_dev *vd)
{
	struct virtio_state *s = vd->st;
	int err;

	pthread_mutex_lock(&vd->lock);
	err = -EINVAL;
	if (s->num_queues != vd->nq_built || s->queue_max != vd->qmax_built ||
	    s->device_features != vd->features_built)
		goto out;
	err = pci_dev_apply_state(&vd->pci);
	if (err)
		goto out;
	for (int q = 0; q < s->num_queues; q++) {
		virtq_stop(&vd->vqs[q]);
		vd->vqs[q].event_idx = virtio_has_feature(vd, VIRTIO_F_RING_EVENT_IDX);
		if (s->queues[q].enabled && virtq_start(&vd->vqs[q], s->queue_max)) {
			err = -EINVAL;
			goto out;
		}
	}
	if ((s->status & VIRTIO_STATUS_DRIVER_OK) && vd->ops->driver_ok)
		vd->ops->driver_ok(vd);
out:
	pthread_mutex_unlock(&vd->lock);
	return err;
}
