/* The migration commands and events on the QMP socket. */
#ifndef VMM_QMP_MIGRATE_H
#define VMM_QMP_MIGRATE_H

#include <stdbool.h>
#include "vmm/log.h"

struct qmp_server;
struct migrate;
struct vm;

/* Adds migrate, migrate-incoming, migrate_cancel, query-migrate and the
 * parameter commands to SRV, and MIGRATION/MIGRATION_PASS events for M.
 * INCOMING_DEFERRED allows migrate-incoming (--incoming defer). 0 or -errno. */
int qmp_migrate_register(struct qmp_server *srv, struct migrate *m, struct vm *vm,
			 bool incoming_deferred) VMM_MUST_CHECK;

#endif
