/* `vmm migrate`: live migration from the command line over QMP. */
#ifndef VMM_MIGRATE_CLI_H
#define VMM_MIGRATE_CLI_H

#include "vmm/cli.h"

/* Runs `vmm migrate` as described by CFG; returns the exit status (0 only
 * when the migration completed). */
int migrate_cli_main(const struct vmm_config *cfg);

#endif
