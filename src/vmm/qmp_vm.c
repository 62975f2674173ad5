/* The QMP backend on struct vm: stop/cont/quit/system_powerdown/system_reset,
 * query-status and query-cpus-fast, and a VM listener that turns run-state
 * changes into QEMU's STOP, RESUME, RESET, SHUTDOWN (and GUEST_PANICKED)
 * events. vmm behaves like QEMU with -no-reboot: a reset, whoever asks for
 * it, ends the process with status 0 after RESET and SHUTDOWN events. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "vmm/pm.h"
#include "vmm/qmp.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

struct qmp_vm {
	struct vm *vm;
	struct qmp_server *srv;
	/* set on the loop thread, read by the listener on any thread */
	bool host_quit;          /* quit came over QMP */
	bool host_reset;         /* system_reset came over QMP */
	bool shutdown_sent;      /* SHUTDOWN goes out once */
	const char *status;      /* query-status override, or NULL */
};

static int qvm_stop(void *opaque)
{
	struct qmp_vm *q = opaque;

	return vm_pause(q->vm);
}

/* cont on a running guest is a no-op, as in QEMU. */
static int qvm_cont(void *opaque)
{
	struct qmp_vm *q = opaque;
	int r = vm_resume(q->vm);

	return r == -EINVAL ? 0 : r;
}

static void qvm_quit(void *opaque)
{
	struct qmp_vm *q = opaque;

	__atomic_store_n(&q->host_quit, true, __ATOMIC_SEQ_CST);
	vm_end(q->vm, VM_END_QUIT, "quit requested over QMP");
}

static int qvm_powerdown(void *opaque)
{
	struct qmp_vm *q = opaque;

	if (!q->vm->pm)
		return -ENODEV;
	if (vm_ended(q->vm) != VM_END_NONE)
		return -ESHUTDOWN;
	qmp_server_event(q->srv, "POWERDOWN", NULL);
	pm_power_button(q->vm->pm);
	return 0;
}

static void qvm_reset(void *opaque)
{
	struct qmp_vm *q = opaque;

	__atomic_store_n(&q->host_reset, true, __ATOMIC_SEQ_CST);
	vm_end(q->vm, VM_END_RESET, "system_reset over QMP (vmm exits on reset, like -no-reboot)");
}

static const char *qvm_status(void *opaque)
{
	struct qmp_vm *q = opaque;
	const char *st = __atomic_load_n(&q->status, __ATOMIC_ACQUIRE);

	if (st)
		return st;
	if (vm_ended(q->vm) == VM_END_NONE) {
		if (vm_phase(q->vm) == VM_PHASE_INMIGRATE)
			return "inmigrate";
		if (vm_phase(q->vm) == VM_PHASE_POSTMIGRATE)
			return "postmigrate";
	}
	switch (vm_state(q->vm)) {
	case VM_RUNNING: return "running";
	case VM_PAUSED: return "paused";
	default: return "shutdown";
	}
}

static int qvm_cpus(void *opaque, struct qmp_cpu_info *out, int max)
{
	struct qmp_vm *q = opaque;
	int n = 0;

	for (int i = 0; i < q->vm->nr_vcpus && n < max; i++) {
		struct vcpu *v = q->vm->vcpus[i];

		if (!v)
			continue;
		out[n].index = v->id;
		out[n].thread_id = __atomic_load_n(&v->tid, __ATOMIC_RELAXED);
		n++;
	}
	return n;
}

static void qvm_release(void *opaque)
{
	free(opaque);
}

static const struct qmp_backend_ops qmp_vm_ops = {
	.stop = qvm_stop,
	.cont = qvm_cont,
	.quit = qvm_quit,
	.powerdown = qvm_powerdown,
	.reset = qvm_reset,
	.status = qvm_status,
	.cpus = qvm_cpus,
	.release = qvm_release,
};

/* {"guest":bool,"reason":ShutdownCause} for an end reason. */
static struct json_object *qvm_cause(struct qmp_vm *q, enum vm_end why)
{
	struct json_object *d = json_object_new_object();
	const char *reason;
	bool guest = false;

	switch (why) {
	case VM_END_POWEROFF: reason = "guest-shutdown"; guest = true; break;
	case VM_END_PANIC: reason = "guest-panic"; guest = true; break;
	case VM_END_RESET:
		guest = !__atomic_load_n(&q->host_reset, __ATOMIC_SEQ_CST);
		reason = guest ? "guest-reset" : "host-qmp-system-reset";
		break;
	case VM_END_QUIT:
		reason = __atomic_load_n(&q->host_quit, __ATOMIC_SEQ_CST) ?
			 "host-qmp-quit" : "host-signal";
		break;
	case VM_END_ERROR: reason = "host-error"; break;
	default: reason = "none"; break;
	}
	json_object_object_add(d, "guest", json_object_new_boolean(guest));
	json_object_object_add(d, "reason", json_object_new_string(reason));
	return d;
}

/* Runs on whatever thread changed the state; only queues events. */
static void qvm_listener(void *opaque, enum vm_event ev, enum vm_end why)
{
	struct qmp_vm *q = opaque;

	switch (ev) {
	case VM_EV_STOP:
		qmp_server_event(q->srv, "STOP", NULL);
		return;
	case VM_EV_RESUME:
		qmp_server_event(q->srv, "RESUME", NULL);
		return;
	case VM_EV_RESET:
		qmp_server_event(q->srv, "RESET", qvm_cause(q, VM_END_RESET));
		break;          /* then SHUTDOWN: vmm ends on reset (-no-reboot) */
	case VM_EV_SHUTDOWN:
		if (why == VM_END_PANIC) {
			struct json_object *d = json_object_new_object();

			json_object_object_add(d, "action", json_object_new_string("poweroff"));
			qmp_server_event(q->srv, "GUEST_PANICKED", d);
		}
		break;
	}
	if (!__atomic_exchange_n(&q->shutdown_sent, true, __ATOMIC_SEQ_CST))
		qmp_server_event(q->srv, "SHUTDOWN", qvm_cause(q, why));
}

int qmp_vm_start(struct qmp_server **out, struct loop *loop, struct vm *vm,
		 const char *path)
{
	struct qmp_vm *q = calloc(1, sizeof(*q));
	struct vm_listener l = { qvm_listener, q };
	int r;

	if (!q)
		return -ENOMEM;
	q->vm = vm;
	r = qmp_server_create(&q->srv, loop, path, &qmp_vm_ops, q);
	if (r < 0) {
		if (r == -EADDRINUSE)
			vmm_err("QMP socket %s is in use by a running server", path);
		else if (r == -EEXIST)
			vmm_err("QMP socket path %s exists and is not a socket", path);
		else
			vmm_err("cannot listen on QMP socket %s: %s", path, strerror(-r));
		free(q);
		return r;
	}
	r = vm_add_listener(vm, &l);
	if (r < 0) {
		vmm_err("cannot watch the VM's run state for QMP: %s", strerror(-r));
		qmp_server_destroy(q->srv);    /* frees q through release */
		return r;
	}
	*out = q->srv;
	return 0;
}

void qmp_vm_set_status(struct qmp_server *srv, const char *status)
{
	struct qmp_vm *q = qmp_server_opaque(srv);

	__atomic_store_n(&q->status, status, __ATOMIC_RELEASE);
}
