/* The device registry (see device.h): a fixed array in registration order. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vmm/device.h"
#include "vmm/vm.h"

int device_register(struct vm *vm, const struct device_ops *ops, void *opaque, const char *id)
{
	struct device *d;

	if (!vm->devices) {
		vm->devices = calloc(DEVICE_MAX, sizeof(*vm->devices));
		if (!vm->devices)
			return -ENOMEM;
	}
	if (device_find(vm, id))
		return -EEXIST;
	if (vm->nr_devices == DEVICE_MAX || strlen(id) >= sizeof(d->id))
		return -ENOSPC;
	if (ops->pause || ops->resume) {
		struct vm_pause_hook h = { ops->pause, ops->resume, opaque };
		int err;

		if (!h.pause)
			return -EINVAL;
		err = vm_add_pause_hook(vm, &h);
		if (err)
			return err;
	}
	d = &vm->devices[vm->nr_devices++];
	d->ops = ops;
	d->opaque = opaque;
	snprintf(d->id, sizeof(d->id), "%s", id);
	return 0;
}

int device_count(const struct vm *vm)
{
	return vm->nr_devices;
}

struct device *device_get(struct vm *vm, int i)
{
	return i >= 0 && i < vm->nr_devices ? &vm->devices[i] : NULL;
}

struct device *device_find(struct vm *vm, const char *id)
{
	for (int i = 0; i < vm->nr_devices; i++)
		if (!strcmp(vm->devices[i].id, id))
			return &vm->devices[i];
	return NULL;
}
