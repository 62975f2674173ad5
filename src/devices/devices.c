/* Assembles the PCI side of the machine (see devices.h): router, bus, AML,
 * virtio devices from the config, registry entries, I/O threads, and a
 * run-state listener that stops the threads when the guest ends. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "vmm/acpi.h"
#include "vmm/cli.h"
#include "vmm/device.h"
#include "vmm/devices.h"
#include "vmm/irq.h"
#include "vmm/pci.h"
#include "vmm/virtio_blk.h"
#include "vmm/virtio_net.h"
#include "vmm/virtio_rng.h"
#include "vmm/vm.h"

struct devices {
	struct irq_router router;
	struct pci_bus bus;
	uint8_t aml[512];
	int nr_vds;
	struct virtio_dev *vds[CLI_MAX_DISKS + CLI_MAX_NETS + 1];
	struct virtio_rng *rng;
	int nr_blks, nr_nets;
	struct virtio_blk *blks[CLI_MAX_DISKS];
	struct virtio_net *nets[CLI_MAX_NETS];
};

static struct devices *devices;

static void devices_on_event(void *opaque, enum vm_event ev, enum vm_end why)
{
	struct devices *d = opaque;

	if (ev != VM_EV_SHUTDOWN && ev != VM_EV_RESET)
		return;
	for (int i = 0; i < d->nr_vds; i++)
		virtio_request_stop(d->vds[i]);
}

static int devices_add(struct vm *vm, struct devices *d, struct virtio_dev *vd,
		       const struct device_ops *ops, void *opaque, const char *id)
{
	int err = virtio_attach(vd, &d->bus);

	if (!err)
		err = device_register(vm, ops, opaque, id);
	if (err) {
		vmm_err("cannot add %s: %s", id, strerror(-err));
		return err;
	}
	d->vds[d->nr_vds++] = vd;
	return 0;
}

static int devices_build(struct vm *vm, const struct vmm_config *cfg, struct devices *d)
{
	char id[32];
	int err;

	for (int i = 0; i < cfg->nr_disks; i++) {
		const struct cli_disk *cd = &cfg->disks[i];
		struct virtio_blk_config bc = {
			.path = cd->path, .readonly = cd->readonly, .serial = cd->serial,
			.direct = cd->direct,
			.lock = !cfg->incoming, .num_queues = cfg->cpus,
		};

		err = virtio_blk_create(&d->blks[i], vm, &vm->mem, vm->vm_fd, &d->router, &bc);
		if (err)
			return err;     /* virtio_blk_create says why */
		d->nr_blks++;
		snprintf(id, sizeof(id), "virtio-blk%d", i);
		err = devices_add(vm, d, &d->blks[i]->vd, &virtio_blk_device_ops, d->blks[i], id);
		if (err)
			return err;
	}
	for (int i = 0; i < cfg->nr_nets; i++) {
		err = virtio_net_create(&d->nets[i], vm, &vm->mem, vm->vm_fd, &d->router,
					cfg->nets[i].tap, cfg->nets[i].mac);
		if (err)
			return err;
		d->nr_nets++;
		snprintf(id, sizeof(id), "virtio-net%d", i);
		err = devices_add(vm, d, &d->nets[i]->vd, &virtio_net_device_ops, d->nets[i], id);
		if (err)
			return err;
	}
	err = virtio_rng_create(&d->rng, vm, &vm->mem, vm->vm_fd, &d->router);
	if (err) {
		vmm_err("cannot create virtio-rng: %s", strerror(-err));
		return err;
	}
	return devices_add(vm, d, &d->rng->vd, &virtio_rng_device_ops, d->rng, "virtio-rng0");
}

int devices_create(struct vm *vm, const struct vmm_config *cfg, struct acpi_extra *extra)
{
	struct vm_listener l = { devices_on_event, NULL };
	struct devices *d;
	int err, len;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	devices = d;
	l.opaque = d;
	err = irq_router_init(&d->router, vm->vm_fd);
	if (!err)
		err = pci_bus_init(&d->bus);
	if (!err)
		err = pci_bus_attach(&d->bus, &vm->pio, &vm->mmio);
	if (err) {
		vmm_err("cannot set up the PCI bus: %s", strerror(-err));
		return err;
	}
	err = devices_build(vm, cfg, d);
	if (err)
		return err;
	len = pci_aml_root_bridge(d->aml, sizeof(d->aml));
	if (len < 0)
		return len;
	extra->sb_aml = d->aml;
	extra->sb_aml_len = (size_t)len;
	err = vm_add_listener(vm, &l);
	for (int i = 0; !err && i < d->nr_vds; i++)
		err = virtio_start(d->vds[i]);
	if (err)
		vmm_err("cannot start the device threads: %s", strerror(-err));
	return err;
}

int devices_lock_images(void)
{
	for (int i = 0; devices && i < devices->nr_blks; i++) {
		int err = virtio_blk_lock(devices->blks[i]);

		if (err)
			return err;
	}
	return 0;
}

void devices_unlock_images(void)
{
	for (int i = 0; devices && i < devices->nr_blks; i++)
		virtio_blk_unlock(devices->blks[i]);
}

void devices_announce(int rounds)
{
	for (int r = 0; devices && devices->nr_nets && r < rounds; r++) {
		if (r)
			nanosleep(&(struct timespec){ 0, (50 + 100L * (r - 1)) * 1000000L }, NULL);
		for (int i = 0; i < devices->nr_nets; i++) {
			int err = virtio_net_announce(devices->nets[i]);

			if (err && r == 0)
				vmm_warn("cannot announce the guest on its network: %s", strerror(-err));
		}
	}
}

void devices_destroy(void)
{
	struct devices *d = devices;

	if (!d)
		return;
	for (int i = 0; i < d->nr_blks; i++)
		virtio_blk_destroy(d->blks[i]);
	for (int i = 0; i < d->nr_nets; i++)
		virtio_net_destroy(d->nets[i]);
	virtio_rng_destroy(d->rng);
	irq_router_destroy(&d->router);
	free(d);
	devices = NULL;
}
