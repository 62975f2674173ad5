/* Builds the machine's PCI devices from the config: the GSI router, the PCI
 * host bridge (and its ACPI AML), one virtio-blk per --disk, one virtio-net
 * per --net and one virtio-rng; registers each in the device registry and
 * starts their I/O threads. One machine per process. */
#ifndef VMM_DEVICES_H
#define VMM_DEVICES_H

#include "vmm/log.h"

struct vm;
struct vmm_config;
struct acpi_extra;

/* Creates everything on VM (before vCPUs start) and fills EXTRA with the AML
 * for acpi_build; 0 or -errno with a message printed. */
int devices_create(struct vm *vm, const struct vmm_config *cfg, struct acpi_extra *extra)
	VMM_MUST_CHECK;
/* Takes the disk image locks (flock) that devices_create skipped because
 * cfg->incoming was set: the destination calls it when it takes over the
 * guest (after the source dropped them); 0 or -errno with a message. */
int devices_lock_images(void) VMM_MUST_CHECK;
/* Drops the disk image locks (the source, once the destination may run). */
void devices_unlock_images(void);
/* Self-announce after an incoming migration: every NIC sends ROUNDS RARP
 * broadcasts from the guest's MAC, 50 ms apart and then 100 ms more each
 * time (as QEMU's defaults), so the network finds the guest here. */
void devices_announce(int rounds);
/* Stops the I/O threads and releases the devices; call after the vCPUs
 * have been joined and before vm_destroy (guest RAM must still be mapped).
 * Safe if devices_create failed or never ran. */
void devices_destroy(void);

#endif
