/* The device registry: every device that has state to migrate or work to
 * quiesce registers here with an ops table. Migration and pause/resume reach
 * devices only through this registry, in registration order.
 *
 * A device keeps its migratable state in a plain struct described by a
 * vmstate_desc (see vmstate.h). Saving: sync_state() copies live state into
 * that struct (optional), then the struct is saved. Loading: the struct is
 * loaded (validated, all-or-nothing), then apply_state() rebuilds live
 * objects (irqfds, io_uring queues, ...) from it and may still refuse. */
#ifndef VMM_DEVICE_H
#define VMM_DEVICE_H

#include "vmm/log.h"

struct vm;
struct vmstate_desc;

struct device_ops {
	const char *name;                       /* section name prefix */
	const struct vmstate_desc *vmsd;        /* NULL: no migratable state */
	void *(*state)(void *opaque);           /* the struct vmsd describes */
	int (*sync_state)(void *opaque);        /* live -> state; optional */
	int (*apply_state)(void *opaque);       /* state -> live; optional */
	void (*pause)(void *opaque);            /* drain in-flight work; optional */
	void (*resume)(void *opaque);           /* optional */
};

#define DEVICE_MAX 32

struct device {
	const struct device_ops *ops;
	void *opaque;
	char id[32];                            /* unique, e.g. "virtio-blk0" */
};

/* Adds a device to VM's registry (and its pause/resume to the VM's pause
 * hooks); 0, -EEXIST for a duplicate id, -ENOSPC when full. */
int device_register(struct vm *vm, const struct device_ops *ops, void *opaque,
		    const char *id) VMM_MUST_CHECK;
/* Returns the number of registered devices. */
int device_count(const struct vm *vm);
/* Returns device I (0-based, registration order) or NULL. */
struct device *device_get(struct vm *vm, int i);
/* Returns the device with ID or NULL. */
struct device *device_find(struct vm *vm, const char *id);

#endif
