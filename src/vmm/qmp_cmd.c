/* QMP dispatcher and built-in commands: QEMU's request checks and error
 * texts (qmp_dispatch_check_obj, parameter checks, capability negotiation),
 * the command table (adding a command is one entry + one function) and the
 * handlers, which reach the VM only through struct qmp_backend_ops. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vmm/qmp.h"
#include "qmp_int.h"

#ifndef VMM_VERSION
#define VMM_VERSION "0.0.0"
#endif

#define QMP_MAX_CPUS 512

static const char *const qmp_class_names[] = {
	[QMP_ERR_GENERIC] = "GenericError",
	[QMP_ERR_COMMAND_NOT_FOUND] = "CommandNotFound",
	[QMP_ERR_DEVICE_NOT_ACTIVE] = "DeviceNotActive",
	[QMP_ERR_DEVICE_NOT_FOUND] = "DeviceNotFound",
	[QMP_ERR_KVM_MISSING_CAP] = "KVMMissingCap",
};

int qmp_call_error(struct qmp_call *call, enum qmp_err_class cls, const char *fmt, ...)
{
	va_list ap;

	call->failed = true;
	call->err_class = cls;
	va_start(ap, fmt);
	vsnprintf(call->desc, sizeof(call->desc), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* QEMU's qmp_dispatch_check_obj(): only execute, arguments and id. */
static int check_request(struct qmp_call *call, struct json_object *req,
			 const char **name, struct json_object **args)
{
	*name = NULL;
	*args = NULL;
	json_object_object_foreach(req, key, val) {
		if (!strcmp(key, "execute")) {
			if (!json_object_is_type(val, json_type_string))
				return qmp_call_error(call, QMP_ERR_GENERIC,
					"QMP input member 'execute' must be a string");
			*name = json_object_get_string(val);
		} else if (!strcmp(key, "arguments")) {
			if (!json_object_is_type(val, json_type_object))
				return qmp_call_error(call, QMP_ERR_GENERIC,
					"QMP input member 'arguments' must be an object");
			*args = val;
		} else if (strcmp(key, "id")) {
			return qmp_call_error(call, QMP_ERR_GENERIC,
				"QMP input member '%.64s' is unexpected", key);
		}
	}
	if (!*name)
		return qmp_call_error(call, QMP_ERR_GENERIC,
				      "QMP input lacks member 'execute'");
	return 0;
}

static const struct qmp_command *find_command(struct qmp_server *srv, const char *name,
					      void **opaque)
{
	for (int t = 0; t < srv->nr_tables; t++)
		for (size_t i = 0; i < srv->tables[t].n; i++)
			if (!strcmp(srv->tables[t].cmds[i].name, name)) {
				*opaque = srv->tables[t].opaque;
				return &srv->tables[t].cmds[i];
			}
	return NULL;
}

static const char *type_name(enum json_type t)
{
	switch (t) {
	case json_type_boolean: return "boolean";
	case json_type_double: return "number";
	case json_type_int: return "integer";
	case json_type_object: return "object";
	case json_type_array: return "array";
	case json_type_string: return "string";
	default: return "null";
	}
}

static int check_args(struct qmp_call *call, const struct qmp_command *cmd,
		      struct json_object *args)
{
	const struct qmp_param *p;

	json_object_object_foreach(args, key, val) {
		enum json_type t = json_object_get_type(val);

		for (p = cmd->params; p && p->name && strcmp(p->name, key); p++)
			;
		if (!p || !p->name)
			return qmp_call_error(call, QMP_ERR_GENERIC,
					      "Parameter '%.64s' is unexpected", key);
		if (t != p->type && !(p->type == json_type_double && t == json_type_int))
			return qmp_call_error(call, QMP_ERR_GENERIC,
				"Invalid parameter type for '%s', expected: %s",
				p->name, type_name(p->type));
	}
	for (p = cmd->params; p && p->name; p++)
		if (!p->optional && !json_object_object_get_ex(args, p->name, NULL))
			return qmp_call_error(call, QMP_ERR_GENERIC,
					      "Parameter '%s' is missing", p->name);
	return 0;
}

/* Runs the request's command, or records in CALL why not. */
static void qmp_dispatch(struct qmp_call *call, struct json_object *req,
			 struct json_object **ret)
{
	struct qmp_client *c = call->client;
	const struct qmp_command *cmd;
	struct json_object *args, *empty = NULL;
	const char *name;
	int r;

	if (check_request(call, req, &name, &args) < 0)
		return;
	cmd = find_command(call->srv, name, &call->opaque);
	if (!c->negotiated && strcmp(name, "qmp_capabilities")) {
		qmp_call_error(call, QMP_ERR_COMMAND_NOT_FOUND,
			       "Expecting capabilities negotiation with 'qmp_capabilities'");
		return;
	}
	if (c->negotiated && !strcmp(name, "qmp_capabilities")) {
		qmp_call_error(call, QMP_ERR_COMMAND_NOT_FOUND,
			       "Capabilities negotiation is already complete, command ignored");
		return;
	}
	if (!cmd) {
		qmp_call_error(call, QMP_ERR_COMMAND_NOT_FOUND,
			       "The command %.128s has not been found", name);
		return;
	}
	if (!args)
		args = empty = json_object_new_object();
	if (check_args(call, cmd, args) == 0) {
		r = cmd->fn(call, args, ret);
		if (r < 0 && !call->failed)
			qmp_call_error(call, QMP_ERR_GENERIC, "%s", strerror(-r));
	}
	json_object_put(empty);
}

void qmp_client_request(struct qmp_client *c, struct json_object *req)
{
	struct qmp_call call = { .srv = c->srv, .client = c };
	struct json_object *ret = NULL, *id = NULL, *resp;
	bool has_id = false;

	if (!json_object_is_type(req, json_type_object)) {
		qmp_call_error(&call, QMP_ERR_GENERIC, "QMP input must be a JSON object");
	} else {
		has_id = json_object_object_get_ex(req, "id", &id);
		qmp_dispatch(&call, req, &ret);
	}
	/* events the command raised (STOP, ...) go first, as in QEMU */
	qmp_deliver_events(c->srv);
	resp = json_object_new_object();
	if (call.failed) {
		struct json_object *e = json_object_new_object();

		json_object_object_add(e, "class",
			json_object_new_string(qmp_class_names[call.err_class]));
		json_object_object_add(e, "desc", json_object_new_string(call.desc));
		json_object_object_add(resp, "error", e);
		json_object_put(ret);
	} else {
		json_object_object_add(resp, "return", ret ? ret : json_object_new_object());
	}
	if (has_id)
		json_object_object_add(resp, "id", json_object_get(id));
	qmp_client_send(c, resp);
	json_object_put(resp);
}

/* --- built-in commands ---------------------------------------------------- */

struct json_object *qmp_version_obj(void)
{
	struct json_object *v = json_object_new_object(), *q = json_object_new_object();
	int major = 0, minor = 0, micro = 0;

	sscanf(VMM_VERSION, "%d.%d.%d", &major, &minor, &micro);
	json_object_object_add(q, "major", json_object_new_int(major));
	json_object_object_add(q, "minor", json_object_new_int(minor));
	json_object_object_add(q, "micro", json_object_new_int(micro));
	json_object_object_add(v, "qemu", q);
	json_object_object_add(v, "package", json_object_new_string("vmm " VMM_VERSION));
	return v;
}

static int cmd_qmp_capabilities(struct qmp_call *call, struct json_object *args,
				struct json_object **ret)
{
	struct json_object *enable;

	if (json_object_object_get_ex(args, "enable", &enable)) {
		for (size_t i = 0; i < json_object_array_length(enable); i++) {
			struct json_object *cap = json_object_array_get_idx(enable, i);

			if (!json_object_is_type(cap, json_type_string))
				return qmp_call_error(call, QMP_ERR_GENERIC,
					"Invalid parameter type for 'enable', expected: string");
			return qmp_call_error(call, QMP_ERR_GENERIC,
				"Capability '%.64s' not available",
				json_object_get_string(cap));
		}
	}
	call->client->negotiated = true;
	return 0;
}

static int cmd_query_version(struct qmp_call *call, struct json_object *args,
			     struct json_object **ret)
{
	*ret = qmp_version_obj();
	return 0;
}

static int cmd_query_commands(struct qmp_call *call, struct json_object *args,
			      struct json_object **ret)
{
	struct qmp_server *srv = call->srv;

	*ret = json_object_new_array();
	for (int t = 0; t < srv->nr_tables; t++)
		for (size_t i = 0; i < srv->tables[t].n; i++) {
			struct json_object *o = json_object_new_object();

			json_object_object_add(o, "name",
				json_object_new_string(srv->tables[t].cmds[i].name));
			json_object_array_add(*ret, o);
		}
	return 0;
}

static int cmd_query_status(struct qmp_call *call, struct json_object *args,
			    struct json_object **ret)
{
	const char *st = call->srv->ops->status(call->opaque);

	*ret = json_object_new_object();
	json_object_object_add(*ret, "running",
			       json_object_new_boolean(!strcmp(st, "running")));
	json_object_object_add(*ret, "singlestep", json_object_new_boolean(false));
	json_object_object_add(*ret, "status", json_object_new_string(st));
	return 0;
}

static int cmd_stop(struct qmp_call *call, struct json_object *args,
		    struct json_object **ret)
{
	int r = call->srv->ops->stop(call->opaque);

	if (r == -ESHUTDOWN)
		return qmp_call_error(call, QMP_ERR_GENERIC, "The guest has shut down");
	return r;
}

static int cmd_cont(struct qmp_call *call, struct json_object *args,
		    struct json_object **ret)
{
	int r = call->srv->ops->cont(call->opaque);

	if (r == -ESHUTDOWN)
		return qmp_call_error(call, QMP_ERR_GENERIC,
				      "Resetting the Virtual Machine is required");
	return r;
}

static int cmd_quit(struct qmp_call *call, struct json_object *args,
		    struct json_object **ret)
{
	call->srv->ops->quit(call->opaque);
	return 0;
}

static int cmd_system_powerdown(struct qmp_call *call, struct json_object *args,
				struct json_object **ret)
{
	return call->srv->ops->powerdown(call->opaque);
}

static int cmd_system_reset(struct qmp_call *call, struct json_object *args,
			    struct json_object **ret)
{
	call->srv->ops->reset(call->opaque);
	return 0;
}

static int cmd_query_cpus_fast(struct qmp_call *call, struct json_object *args,
			       struct json_object **ret)
{
	struct qmp_cpu_info *cpus = calloc(QMP_MAX_CPUS, sizeof(*cpus));
	char path[64];
	int n;

	if (!cpus)
		return -ENOMEM;
	n = call->srv->ops->cpus(call->opaque, cpus, QMP_MAX_CPUS);
	*ret = json_object_new_array();
	for (int i = 0; i < n; i++) {
		struct json_object *o = json_object_new_object();

		snprintf(path, sizeof(path), "/machine/unattached/device[%d]", cpus[i].index);
		json_object_object_add(o, "cpu-index", json_object_new_int(cpus[i].index));
		json_object_object_add(o, "qom-path", json_object_new_string(path));
		json_object_object_add(o, "thread-id", json_object_new_int(cpus[i].thread_id));
		json_object_object_add(o, "target", json_object_new_string("x86_64"));
		json_object_array_add(*ret, o);
	}
	free(cpus);
	return 0;
}

static const struct qmp_param qmp_capabilities_params[] = {
	{ "enable", json_type_array, true },
	{ NULL },
};

const struct qmp_command qmp_builtin_cmds[] = {
	{ "qmp_capabilities", cmd_qmp_capabilities, qmp_capabilities_params },
	{ "query-version", cmd_query_version, NULL },
	{ "query-commands", cmd_query_commands, NULL },
	{ "query-status", cmd_query_status, NULL },
	{ "stop", cmd_stop, NULL },
	{ "cont", cmd_cont, NULL },
	{ "quit", cmd_quit, NULL },
	{ "system_powerdown", cmd_system_powerdown, NULL },
	{ "system_reset", cmd_system_reset, NULL },
	{ "query-cpus-fast", cmd_query_cpus_fast, NULL },
};
const size_t qmp_nr_builtin_cmds = ARRAY_SIZE(qmp_builtin_cmds);

int qmp_server_add_commands(struct qmp_server *srv, const struct qmp_command *cmds,
			    size_t n, void *opaque)
{
	void *dummy;

	if (srv->nr_tables >= (int)ARRAY_SIZE(srv->tables))
		return -ENOSPC;
	for (size_t i = 0; i < n; i++)
		if (find_command(srv, cmds[i].name, &dummy))
			return -EEXIST;
	srv->tables[srv->nr_tables++] = (struct qmp_table){ cmds, n, opaque };
	return 0;
}

