/* QMP control socket: the QEMU Machine Protocol subset vmm speaks on
 * --qmp unix:PATH (transport, parser, dispatcher, events), with no KVM
 * knowledge: commands reach the VM through a backend ops table, and
 * qmp_vm.c implements that table on struct vm. Names and fields follow
 * QEMU (docs/interop/qmp-spec, qapi/run-state.json, qapi/misc.json).
 *
 *   client                                              vmm
 *     |  <-- {"QMP":{"version":{..},"capabilities":[]}}   on connect
 *     |  --> {"execute":"query-status"}
 *     |  <-- {"error":{"class":"CommandNotFound",..}}     before negotiation
 *     |  --> {"execute":"qmp_capabilities"}
 *     |  <-- {"return":{}}                                now in command mode
 *     |  --> {"execute":"stop","id":7}
 *     |  <-- {"event":"STOP","timestamp":{"seconds":..,"microseconds":..}}
 *     |  <-- {"return":{},"id":7}                         id echoed as sent
 *     |  <-- {"event":"SHUTDOWN","data":{..},"timestamp":{..}}   any time
 *
 * Every message is one JSON value followed by CRLF. A request over
 * QMP_MSG_MAX bytes, or a client whose unread output passes QMP_OUT_MAX, is
 * answered (if possible) and dropped; malformed JSON is answered with a
 * GenericError and the rest of that line is skipped. Events without data
 * omit "data", as QEMU does. Everything but qmp_server_event() runs on the
 * loop thread. */
#ifndef VMM_QMP_H
#define VMM_QMP_H

#include <stdbool.h>
#include <stddef.h>
#include <json-c/json.h>
#include "vmm/log.h"

#define QMP_MSG_MAX      (64 * 1024)   /* largest request, bytes */
#define QMP_OUT_MAX      (1024 * 1024) /* unread output before a client is dropped */
#define QMP_MAX_CLIENTS  16
#define QMP_MAX_TABLES   4             /* command tables added by other modules */
#define QMP_EVENT_QUEUE_MAX 1024       /* events not yet delivered */
#define QMP_DESC_MAX     256

struct loop;
struct vm;
struct qmp_server;
struct qmp_client;

/* QEMU's error classes (QapiErrorClass). */
enum qmp_err_class {
	QMP_ERR_GENERIC,            /* GenericError */
	QMP_ERR_COMMAND_NOT_FOUND,  /* CommandNotFound */
	QMP_ERR_DEVICE_NOT_ACTIVE,  /* DeviceNotActive */
	QMP_ERR_DEVICE_NOT_FOUND,   /* DeviceNotFound */
	QMP_ERR_KVM_MISSING_CAP,    /* KVMMissingCap */
};

/* One command being executed; handlers read it and fail through
 * qmp_call_error(). */
struct qmp_call {
	struct qmp_server *srv;
	struct qmp_client *client;  /* who sent the command */
	void *opaque;               /* the backend's or the command table's */
	bool failed;
	enum qmp_err_class err_class;
	char desc[QMP_DESC_MAX];
};

/* Runs a command with validated ARGS (never NULL); 0 with *RET set (NULL
 * means {}), or negative after qmp_call_error() (a bare -errno becomes a
 * GenericError with strerror's text). */
typedef int (*qmp_cmd_fn)(struct qmp_call *call, struct json_object *args,
			  struct json_object **ret);

/* One argument of a command; an argument not listed is refused, as QEMU's
 * "Parameter 'x' is unexpected". json_type_double also accepts integers. */
struct qmp_param {
	const char *name;
	enum json_type type;
	bool optional;
};

/* One entry of a command table: adding a command is one entry + one
 * function. PARAMS ends with a {NULL} entry; NULL means no arguments. */
struct qmp_command {
	const char *name;
	qmp_cmd_fn fn;
	const struct qmp_param *params;
};

struct qmp_cpu_info {
	int index;       /* cpu-index */
	int thread_id;   /* host thread id of the vCPU thread */
};

/* What the built-in commands need from the VM; every op runs on the loop
 * thread and OPAQUE is the one given to qmp_server_create(). */
struct qmp_backend_ops {
	int (*stop)(void *opaque);        /* pause; 0 or -errno */
	int (*cont)(void *opaque);        /* resume; 0 or -errno */
	void (*quit)(void *opaque);       /* end vmm (reply is sent first) */
	int (*powerdown)(void *opaque);   /* ACPI power button; 0 or -errno */
	void (*reset)(void *opaque);      /* system_reset: vmm ends (-no-reboot) */
	const char *(*status)(void *opaque);  /* RunState name: "running", ... */
	int (*cpus)(void *opaque, struct qmp_cpu_info *out, int max); /* count */
	void (*release)(void *opaque);    /* optional: called by destroy */
};

/* Creates a server and, when PATH is non-NULL, listens on the unix socket
 * PATH (mode 0600; a stale socket file is replaced, a live one or a
 * non-socket file refused with -EADDRINUSE/-EEXIST). LOOP NULL gives a
 * socketless server for in-memory clients (tests, fuzzing). 0 or -errno. */
int qmp_server_create(struct qmp_server **out, struct loop *loop, const char *path,
		      const struct qmp_backend_ops *ops, void *opaque) VMM_MUST_CHECK;
/* Delivers queued events, flushes every client for at most ~1 s, closes
 * them, removes the socket file and frees SRV (NULL is fine). Call after
 * loop_run() returned and the VM's threads are joined, before loop_destroy(). */
void qmp_server_destroy(struct qmp_server *srv);
/* Adds N commands served with OPAQUE in struct qmp_call (e.g. migration's);
 * 0, -EEXIST if a name is taken, -ENOSPC past QMP_MAX_TABLES. */
int qmp_server_add_commands(struct qmp_server *srv, const struct qmp_command *cmds,
			    size_t n, void *opaque) VMM_MUST_CHECK;
/* Queues event NAME with DATA (owned by the call, NULL for none) stamped
 * now, for every negotiated client; safe from any thread, never blocks. */
void qmp_server_event(struct qmp_server *srv, const char *name, struct json_object *data);
/* Marks CALL failed with class CLS and a printf-style description; returns
 * -EINVAL so handlers can `return qmp_call_error(...)`. */
int qmp_call_error(struct qmp_call *call, enum qmp_err_class cls, const char *fmt, ...)
	VMM_PRINTF(3, 4);
/* Returns the backend OPAQUE given to qmp_server_create(). */
void *qmp_server_opaque(struct qmp_server *srv);

/* Adds a client on connected socket FD (owned from now on; -1 for an
 * in-memory client whose output is read with qmp_client_drain) and sends the
 * greeting; 0 or -errno (FD is closed on failure). */
int qmp_server_attach(struct qmp_server *srv, int fd, struct qmp_client **out)
	VMM_MUST_CHECK;
/* Processes LEN bytes as if client C had sent them; 0, or -EPIPE once C has
 * been dropped (oversized request, output overflow). */
int qmp_client_feed(struct qmp_client *c, const void *buf, size_t len) VMM_MUST_CHECK;
/* Moves up to LEN bytes of an in-memory client's pending output into BUF;
 * returns the number of bytes copied. */
size_t qmp_client_drain(struct qmp_client *c, char *buf, size_t len);

/* --- qmp_vm.c: the backend on struct vm ---------------------------------- */

/* Starts the QMP server for VM on LOOP at unix socket PATH and registers
 * the VM listener that turns run-state changes into STOP/RESUME/SHUTDOWN/
 * RESET events; call before vm_start(), destroy after vm_join(). 0 or -errno
 * with a message printed. */
int qmp_vm_start(struct qmp_server **out, struct loop *loop, struct vm *vm,
		 const char *path) VMM_MUST_CHECK;
/* Overrides query-status's status with STATUS (a string literal such as
 * "inmigrate" or "postmigrate"; NULL reverts to the VM's run state); any
 * thread. */
void qmp_vm_set_status(struct qmp_server *srv, const char *status);

#endif
