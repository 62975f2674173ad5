/* The virtio 1.x modern PCI transport shared by every virtio device: the
 * capabilities and BAR0 layout (common config, ISR, device config, notify,
 * MSI-X table and PBA), device status and feature negotiation, queue setup,
 * queue kicks through ioeventfds, interrupts through MSI-X irqfds, one I/O
 * thread per device, pause/resume (drain) and the migratable transport state.
 *
 * Threads: vCPU threads access BAR0 and config space; the device's I/O thread
 * runs the device callbacks. vd->lock guards vd->st, the virtqs and
 * everything the device callbacks touch; it is held around every callback. */
#ifndef VMM_VIRTIO_H
#define VMM_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "vmm/log.h"
#include "vmm/pci.h"
#include "vmm/virtqueue.h"

struct vm;
struct irq_router;
struct vmstate_desc;

#define VIRTIO_MAX_QUEUES 8
#define VIRTIO_MAX_FDS 4

#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_F_RING_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

/* BAR0 layout. */
#define VIRTIO_BAR_SIZE 0x8000
#define VIRTIO_COMMON_OFF 0x0000
#define VIRTIO_COMMON_LEN 0x38
#define VIRTIO_ISR_OFF 0x1000
#define VIRTIO_DEVCFG_OFF 0x2000
#define VIRTIO_DEVCFG_MAX 0x1000
#define VIRTIO_NOTIFY_OFF 0x3000
#define VIRTIO_NOTIFY_MULT 4
#define VIRTIO_MSIX_TABLE_OFF 0x4000
#define VIRTIO_MSIX_PBA_OFF 0x5000

/* Migratable transport state; a device's state struct starts with it. */
struct virtio_state {
	uint64_t device_features;      /* fixed per device; checked on load */
	uint64_t driver_features;
	uint32_t device_features_sel;
	uint32_t driver_features_sel;
	uint8_t status;
	uint8_t config_generation;
	uint8_t isr;
	uint16_t msix_config;
	uint16_t queue_sel;
	uint16_t num_queues;           /* fixed per device; checked on load */
	uint16_t queue_max;            /* fixed per device; checked on load */
	struct virtq_state queues[VIRTIO_MAX_QUEUES];
	struct pci_dev_state pci;
};
extern const struct vmstate_desc virtio_vmstate;

struct virtio_dev;

/* Device callbacks; all run with vd->lock held. */
struct virtio_dev_ops {
	const char *name;
	/* Reads/writes device config bytes [off, off+len) (bounds checked). */
	void (*config_read)(struct virtio_dev *vd, uint32_t off, uint8_t *data, uint32_t len);
	void (*config_write)(struct virtio_dev *vd, uint32_t off, const uint8_t *data, uint32_t len);
	/* Queue Q was kicked (or must be looked at); I/O thread. */
	void (*queue_notify)(struct virtio_dev *vd, int q);
	/* Extra fd I (virtio_add_fd) is ready with EVENTS; I/O thread. */
	void (*fd_event)(struct virtio_dev *vd, int i, uint32_t events);
	/* Waits for in-flight work to complete into the rings (pause, reset). */
	void (*drain)(struct virtio_dev *vd);
	/* The driver set DRIVER_OK (features final). Optional. */
	void (*driver_ok)(struct virtio_dev *vd);
	/* Device reset (after drain); forget per-request state. Optional. */
	void (*reset)(struct virtio_dev *vd);
};

struct virtio_dev {
	const struct virtio_dev_ops *ops;
	void *priv;                     /* the device */
	struct virtio_state *st;        /* inside the device's state struct */
	struct vm *vm;                  /* NULL in unit tests */
	const struct guest_mem *mem;
	int vm_fd;
	struct pci_dev pci;
	uint32_t config_len;
	struct virtq vqs[VIRTIO_MAX_QUEUES];
	int kick_fd[VIRTIO_MAX_QUEUES];  /* ioeventfds, immutable after init */
	uint64_t notify_addr;           /* guest address of the notify area, 0 if unmapped */
	uint32_t kick_len;              /* the ioeventfds' write length (0: any) */
	uint64_t features_built;        /* what this device offers; immutable */
	uint16_t nq_built, qmax_built;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool paused;                    /* no guest memory access while set */
	bool stopping;
	unsigned nr_guest_errors;        /* NEEDS_RESET events, for rate-limited logs */
	int nr_fds;
	int fds[VIRTIO_MAX_FDS];
	uint32_t fd_events[VIRTIO_MAX_FDS];
	int epfd;
	int stop_fd;
	pthread_t thread;
	bool thread_started;
};

/* Sets up the transport for a device with DEVICE_ID, PCI CLASS_CODE,
 * NUM_QUEUES queues of at most QUEUE_MAX entries, DEVICE_FEATURES (VERSION_1
 * and EVENT_IDX are added) and CONFIG_LEN bytes of device config. ST is the
 * transport part of the device's state struct. VM may be NULL (unit tests:
 * no KVM, no bus). 0 or -errno. */
int virtio_init(struct virtio_dev *vd, struct vm *vm, const struct guest_mem *mem, int vm_fd,
		struct irq_router *router, const struct virtio_dev_ops *ops, void *priv,
		struct virtio_state *st, uint16_t device_id, uint32_t class_code,
		uint16_t num_queues, uint16_t queue_max, uint64_t device_features,
		uint32_t config_len) VMM_MUST_CHECK;
/* Puts the device on BUS (after virtio_init, before virtio_start); 0 or -errno. */
int virtio_attach(struct virtio_dev *vd, struct pci_bus *bus) VMM_MUST_CHECK;
/* Watches FD on the device's I/O thread for EVENTS (ops->fd_event gets its
 * index); call before virtio_start. Returns the index or -errno. */
int virtio_add_fd(struct virtio_dev *vd, int fd, uint32_t events) VMM_MUST_CHECK;
/* Changes the events watched on extra fd I (I/O thread, lock held). */
void virtio_watch_fd(struct virtio_dev *vd, int i, uint32_t events);
/* Starts the I/O thread; 0 or -errno. */
int virtio_start(struct virtio_dev *vd) VMM_MUST_CHECK;
/* Stops and joins the I/O thread (idempotent) and closes the eventfds. */
void virtio_stop(struct virtio_dev *vd);
/* Asks the I/O thread to finish soon without waiting (never blocks: safe
 * from a run-state listener). */
void virtio_request_stop(struct virtio_dev *vd);

/* BAR0 access handler (registered by virtio_init; public for tests). */
void virtio_bar_access(void *opaque, int bar, uint64_t off, uint8_t *data, uint32_t len,
		       bool is_write);
/* Runs the I/O thread's work for one wakeup without a thread: handles kicks
 * on every queue and every extra fd as ready (tests, fuzzing). */
void virtio_poll_once(struct virtio_dev *vd);

/* With vd->lock held: whether feature bit F was negotiated. */
bool virtio_has_feature(const struct virtio_dev *vd, unsigned f);
/* With vd->lock held: whether the driver is running the device (DRIVER_OK
 * and not NEEDS_RESET) and queue Q is usable. */
bool virtio_queue_live(const struct virtio_dev *vd, int q);
/* With vd->lock held: interrupts the driver for queue Q if it wants one. */
void virtio_notify_queue(struct virtio_dev *vd, int q);
/* With vd->lock held: marks the device broken (NEEDS_RESET) and tells the
 * driver with a config interrupt; REASON goes to the log once. */
void virtio_set_needs_reset(struct virtio_dev *vd, const char *reason);
/* With vd->lock held: signals a config change to the driver. */
void virtio_config_changed(struct virtio_dev *vd);

/* Device-registry glue: drains and blocks the I/O thread / unblocks it. */
void virtio_pause(struct virtio_dev *vd);
void virtio_resume(struct virtio_dev *vd);
/* After the state was loaded: checks it against this device (fixed fields,
 * ring addresses inside RAM) and rebuilds live objects; 0 or -EINVAL. */
int virtio_apply_state(struct virtio_dev *vd) VMM_MUST_CHECK;

#endif
