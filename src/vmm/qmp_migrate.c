/* QMP commands and events for live migration, with QEMU's names and fields:
 * migrate, migrate-incoming, migrate_cancel, query-migrate,
 * migrate-set-parameters, query-migrate-parameters; events MIGRATION and
 * MIGRATION_PASS. Extensions carry QEMU's "x-" prefix. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "vmm/migrate.h"
#include "vmm/qmp.h"
#include "vmm/qmp_migrate.h"
#include "vmm/vm.h"

struct qmp_mig {
	struct qmp_server *srv;
	struct migrate *m;
	struct vm *vm;
	bool incoming_deferred;    /* --incoming defer: migrate-incoming allowed */
};

static struct qmp_mig qmp_mig_ctx;

static void qm_on_status(void *opaque, enum migrate_status st)
{
	struct qmp_mig *q = opaque;
	struct json_object *d = json_object_new_object();

	json_object_object_add(d, "status", json_object_new_string(migrate_status_name(st)));
	qmp_server_event(q->srv, "MIGRATION", d);
}

static void qm_on_pass(void *opaque, uint32_t pass)
{
	struct qmp_mig *q = opaque;
	struct json_object *d = json_object_new_object();

	json_object_object_add(d, "pass", json_object_new_int64(pass));
	qmp_server_event(q->srv, "MIGRATION_PASS", d);
}

static int cmd_migrate(struct qmp_call *call, struct json_object *args,
		       struct json_object **ret)
{
	struct qmp_mig *q = call->opaque;
	struct json_object *uri;
	char err[256];

	if (!json_object_object_get_ex(args, "uri", &uri))
		return qmp_call_error(call, QMP_ERR_GENERIC, "Parameter 'uri' is missing");
	if (migrate_start(q->m, json_object_get_string(uri), err, sizeof(err)))
		return qmp_call_error(call, QMP_ERR_GENERIC, "%s", err);
	return 0;
}

static int cmd_migrate_incoming(struct qmp_call *call, struct json_object *args,
				struct json_object **ret)
{
	struct qmp_mig *q = call->opaque;
	struct json_object *uri;
	char err[256];

	if (!q->incoming_deferred)
		return qmp_call_error(call, QMP_ERR_GENERIC,
				      "The incoming migration has not been enabled with '--incoming defer'");
	if (!json_object_object_get_ex(args, "uri", &uri))
		return qmp_call_error(call, QMP_ERR_GENERIC, "Parameter 'uri' is missing");
	if (migrate_incoming(q->m, json_object_get_string(uri), err, sizeof(err)))
		return qmp_call_error(call, QMP_ERR_GENERIC, "%s", err);
	q->incoming_deferred = false;
	return 0;
}

static int cmd_migrate_cancel(struct qmp_call *call, struct json_object *args,
			      struct json_object **ret)
{
	struct qmp_mig *q = call->opaque;
	int r = migrate_cancel(q->m);

	if (r == -EPERM)
		return qmp_call_error(call, QMP_ERR_GENERIC,
				      "the guest is being handed over; it can no longer be cancelled");
	return 0;   /* QEMU answers {} when nothing runs */
}

static void qm_add_u64(struct json_object *o, const char *k, uint64_t v)
{
	json_object_object_add(o, k, json_object_new_int64((int64_t)v));
}

static struct json_object *qm_ram(const struct migrate_info *i)
{
	struct json_object *r = json_object_new_object();

	qm_add_u64(r, "transferred", i->transferred);
	qm_add_u64(r, "remaining", i->remaining);
	qm_add_u64(r, "total", i->total);
	qm_add_u64(r, "duplicate", i->duplicate);
	qm_add_u64(r, "skipped", 0);
	qm_add_u64(r, "normal", i->normal);
	qm_add_u64(r, "normal-bytes", i->normal_bytes);
	qm_add_u64(r, "dirty-pages-rate", i->dirty_pages_rate);
	json_object_object_add(r, "mbps", json_object_new_double(i->mbps));
	qm_add_u64(r, "dirty-sync-count", i->dirty_sync_count);
	qm_add_u64(r, "postcopy-requests", 0);
	qm_add_u64(r, "page-size", 4096);
	qm_add_u64(r, "pages-per-second", i->pages_per_second);
	return r;
}

static int cmd_query_migrate(struct qmp_call *call, struct json_object *args,
			     struct json_object **ret)
{
	struct qmp_mig *q = call->opaque;
	struct migrate_info i;
	struct json_object *o = json_object_new_object(), *b;

	migrate_query(q->m, &i);
	*ret = o;
	if (i.status == MIG_NONE)
		return 0;
	json_object_object_add(o, "status", json_object_new_string(migrate_status_name(i.status)));
	qm_add_u64(o, "setup-time", i.setup_ms);
	qm_add_u64(o, "total-time", i.total_ms);
	if (i.status == MIG_COMPLETED) {
		qm_add_u64(o, "downtime", i.downtime_ms);
		b = json_object_new_object();
		qm_add_u64(b, "ram", i.down_ram_ms);
		qm_add_u64(b, "vcpu", i.down_cpu_ms);
		qm_add_u64(b, "device", i.down_dev_ms);
		qm_add_u64(b, "handoff", i.down_handoff_ms);
		json_object_object_add(o, "x-downtime-breakdown", b);
		/* what the model promised when it switched over */
		qm_add_u64(o, "x-expected-downtime", i.expected_downtime_ms);
	} else {
		qm_add_u64(o, "expected-downtime", i.expected_downtime_ms);
	}
	if (i.status == MIG_FAILED || i.status == MIG_CANCELLED)
		json_object_object_add(o, "error-desc", json_object_new_string(i.error));
	if (i.restore_rehearsed_us) {   /* the destination's state load, timed */
		b = json_object_new_object();
		qm_add_u64(b, "rehearsed", i.restore_rehearsed_us);
		qm_add_u64(b, "actual", i.restore_us);
		json_object_object_add(o, "x-restore-us", b);
	}
	qm_add_u64(o, "x-pass", i.pass);
	if (i.throttle_pct)
		qm_add_u64(o, "cpu-throttle-percentage", i.throttle_pct);
	json_object_object_add(o, "ram", qm_ram(&i));
	return 0;
}

static int cmd_set_params(struct qmp_call *call, struct json_object *args,
			  struct json_object **ret)
{
	struct qmp_mig *q = call->opaque;
	struct migrate_params p;
	struct json_object *v;
	char err[256];

	migrate_get_params(q->m, &p);
	if (json_object_object_get_ex(args, "downtime-limit", &v))
		p.downtime_limit_ms = (uint64_t)json_object_get_int64(v);
	if (json_object_object_get_ex(args, "max-bandwidth", &v)) {
		if (json_object_get_int64(v) < 0)
			return qmp_call_error(call, QMP_ERR_GENERIC,
					      "Parameter 'max-bandwidth' expects a non-negative value");
		p.max_bandwidth = (uint64_t)json_object_get_int64(v);
	}
	if (json_object_object_get_ex(args, "multifd-channels", &v))
		p.multifd_channels = (uint32_t)json_object_get_int64(v);
	if (json_object_object_get_ex(args, "x-iteration-cap", &v))
		p.max_passes = (uint32_t)json_object_get_int64(v);
	if (json_object_object_get_ex(args, "x-switchover-on-stall", &v))
		p.switchover_on_stall = json_object_get_boolean(v);
	if (json_object_object_get_ex(args, "x-auto-converge", &v))
		p.auto_converge = json_object_get_boolean(v);
	if (json_object_object_get_ex(args, "max-cpu-throttle", &v))
		p.max_cpu_throttle = (uint32_t)json_object_get_int64(v);
	if (migrate_set_params(q->m, &p, err, sizeof(err)))
		return qmp_call_error(call, QMP_ERR_GENERIC, "%s", err);
	return 0;
}

static int cmd_query_params(struct qmp_call *call, struct json_object *args,
			    struct json_object **ret)
{
	struct qmp_mig *q = call->opaque;
	struct migrate_params p;
	struct json_object *o = json_object_new_object();

	migrate_get_params(q->m, &p);
	qm_add_u64(o, "downtime-limit", p.downtime_limit_ms);
	qm_add_u64(o, "max-bandwidth", p.max_bandwidth);
	qm_add_u64(o, "multifd-channels", p.multifd_channels);
	qm_add_u64(o, "x-iteration-cap", p.max_passes);
	json_object_object_add(o, "x-switchover-on-stall",
			       json_object_new_boolean(p.switchover_on_stall));
	json_object_object_add(o, "x-auto-converge", json_object_new_boolean(p.auto_converge));
	qm_add_u64(o, "max-cpu-throttle", p.max_cpu_throttle);
	*ret = o;
	return 0;
}

/* QEMU's pmemsave: writes guest physical memory to a file (the migration
 * tests check a migrated guest's memory with it). */
static int cmd_pmemsave(struct qmp_call *call, struct json_object *args,
			struct json_object **ret)
{
	struct qmp_mig *q = call->opaque;
	struct json_object *v;
	uint64_t gpa, size;
	const char *path;
	const uint8_t *p;
	FILE *f;
	size_t n;

	json_object_object_get_ex(args, "val", &v);
	gpa = (uint64_t)json_object_get_int64(v);
	json_object_object_get_ex(args, "size", &v);
	size = (uint64_t)json_object_get_int64(v);
	json_object_object_get_ex(args, "filename", &v);
	path = json_object_get_string(v);
	p = mem_gpa_ptr(&q->vm->mem, gpa, size);
	if (!p)
		return qmp_call_error(call, QMP_ERR_GENERIC,
				      "[0x%llx, +0x%llx) is not guest RAM", (unsigned long long)gpa,
				      (unsigned long long)size);
	f = fopen(path, "wbx");
	if (!f)
		return qmp_call_error(call, QMP_ERR_GENERIC, "cannot create '%s': %s", path,
				      strerror(errno));
	n = fwrite(p, 1, size, f);
	if (fclose(f) || n != size)
		return qmp_call_error(call, QMP_ERR_GENERIC, "cannot write '%s'", path);
	return 0;
}

static const struct qmp_param pmemsave_params[] = {
	{ "val", json_type_int, false },
	{ "size", json_type_int, false },
	{ "filename", json_type_string, false },
	{ NULL },
};

static const struct qmp_param migrate_params[] = {
	{ "uri", json_type_string, false },
	{ "blk", json_type_boolean, true },
	{ "inc", json_type_boolean, true },
	{ "detach", json_type_boolean, true },
	{ "resume", json_type_boolean, true },
	{ NULL },
};

static const struct qmp_param incoming_params[] = {
	{ "uri", json_type_string, false },
	{ NULL },
};

static const struct qmp_param set_params[] = {
	{ "downtime-limit", json_type_int, true },
	{ "max-bandwidth", json_type_int, true },
	{ "multifd-channels", json_type_int, true },
	{ "x-iteration-cap", json_type_int, true },
	{ "x-switchover-on-stall", json_type_boolean, true },
	{ "x-auto-converge", json_type_boolean, true },
	{ "max-cpu-throttle", json_type_int, true },
	{ NULL },
};

static const struct qmp_command qmp_migrate_cmds[] = {
	{ "migrate", cmd_migrate, migrate_params },
	{ "migrate-incoming", cmd_migrate_incoming, incoming_params },
	{ "migrate_cancel", cmd_migrate_cancel, NULL },
	{ "query-migrate", cmd_query_migrate, NULL },
	{ "migrate-set-parameters", cmd_set_params, set_params },
	{ "query-migrate-parameters", cmd_query_params, NULL },
	{ "pmemsave", cmd_pmemsave, pmemsave_params },
};

int qmp_migrate_register(struct qmp_server *srv, struct migrate *m, struct vm *vm,
			 bool incoming_deferred)
{
	struct qmp_mig *q = &qmp_mig_ctx;
	struct migrate_listener l = { qm_on_status, qm_on_pass, q };

	*q = (struct qmp_mig){ srv, m, vm, incoming_deferred };
	migrate_set_listener(m, &l);
	return qmp_server_add_commands(srv, qmp_migrate_cmds, ARRAY_SIZE(qmp_migrate_cmds), q);
}
