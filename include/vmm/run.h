/* `vmm run`: builds the machine from a parsed config (VM, legacy devices,
 * ACPI, boot), runs the main loop until the guest ends, tears it down and
 * returns the process exit status. */
#ifndef VMM_RUN_H
#define VMM_RUN_H

#include <stddef.h>
#include "vmm/cli.h"

/* Fills in the default guest (newest /boot/vmlinuz-*, the project's
 * initramfs, console=ttyS0) where CFG leaves them unset; 0 or -ENOENT with
 * the reason in ERR. BUF/BUFLEN hold the strings it makes. */
int run_resolve_defaults(struct vmm_config *cfg, char *buf, size_t buflen, char *err,
			 size_t errlen) VMM_MUST_CHECK;
/* Runs the guest described by CFG; returns the process exit status. */
int run_main(struct vmm_config *cfg);

#endif
