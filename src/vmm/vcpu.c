/* vCPU threads: KVM_RUN in a loop, exits dispatched to the PIO/MMIO buses,
 * pause requests honoured between runs (see vm_vcpu_checkpoint). A kick is
 * immediate_exit plus a signal, so a request never waits for a guest exit. */
#include <errno.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "vmm/cpuid.h"
#include "vmm/privilege.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

#define VCPU_KICK_SIGNAL SIGUSR1
#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_MODE_NMI    0x4
#define APIC_MODE_EXTINT 0x7

static void vcpu_kick_handler(int sig)
{
	(void)sig;
}

void vcpu_signals_init(void)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };

	sigemptyset(&sa.sa_mask);
	sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
}

static void vcpu_set_lint(struct kvm_lapic_state *l, int reg, uint32_t mode)
{
	uint32_t v;

	memcpy(&v, l->regs + reg, 4);
	v = (v & ~0x700u) | (mode << 8);
	memcpy(l->regs + reg, &v, 4);
}

static int vcpu_setup(struct vcpu *v)
{
	struct vm *vm = v->vm;
	struct kvm_cpuid2 *c = cpuid_for_vcpu(vm->cpuid, v->id, vm->nr_vcpus);
	struct kvm_lapic_state lapic;
	int err = 0;

	if (!c)
		return -ENOMEM;
	if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0)
		err = -errno;
	free(c);
	if (err)
		return err;
	if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0)
		return -errno;
	vcpu_set_lint(&lapic, APIC_LVT_LINT0, APIC_MODE_EXTINT);
	vcpu_set_lint(&lapic, APIC_LVT_LINT1, APIC_MODE_NMI);
	if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0)
		return -errno;
	return 0;
}

int vcpu_create(struct vm *vm, int id, struct vcpu **out)
{
	struct vcpu *v = calloc(1, sizeof(*v));
	int err;

	if (!v)
		return -ENOMEM;
	v->vm = vm;
	v->id = id;
	v->run = MAP_FAILED;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, id);
	if (v->fd < 0)
		goto fail_errno;
	v->run = mmap(NULL, (size_t)vm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      v->fd, 0);
	if (v->run == MAP_FAILED)
		goto fail_errno;
	err = vcpu_setup(v);
	if (err)
		goto fail;
	*out = v;
	return 0;
fail_errno:
	err = -errno;
fail:
	vcpu_destroy(v);
	return err;
}

void vcpu_destroy(struct vcpu *v)
{
	if (v->run != MAP_FAILED && v->run)
		munmap(v->run, (size_t)v->vm->vcpu_mmap_size);
	if (v->fd >= 0)
		close(v->fd);
	free(v);
}

void vcpu_kick(struct vcpu *v)
{
	v->run->immediate_exit = 1;
	__sync_synchronize();
	if (v->started)
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

static void vcpu_io(struct vcpu *v)
{
	struct kvm_run *r = v->run;
	uint8_t *data = (uint8_t *)r + r->io.data_offset;
	bool out = r->io.direction == KVM_EXIT_IO_OUT;

	for (uint32_t i = 0; i < r->io.count; i++, data += r->io.size)
		bus_dispatch(&v->vm->pio, r->io.port, data, r->io.size, out);
}

static void vcpu_system_event(struct vcpu *v)
{
	struct vm *vm = v->vm;

	switch (v->run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		vm_end(vm, VM_END_POWEROFF, "guest powered off");
		break;
	case KVM_SYSTEM_EVENT_RESET:
		vm_end(vm, VM_END_RESET, "guest reset");
		break;
	default:
		vm_end(vm, VM_END_ERROR, "vCPU %d: KVM system event %u", v->id,
		       v->run->system_event.type);
	}
}

/* Handles one exit; returns false when the vCPU must stop. */
static bool vcpu_handle_exit(struct vcpu *v)
{
	struct kvm_run *r = v->run;

	switch (r->exit_reason) {
	case KVM_EXIT_IO:
		vcpu_io(v);
		return true;
	case KVM_EXIT_MMIO:
		bus_dispatch(&v->vm->mmio, r->mmio.phys_addr, r->mmio.data, r->mmio.len,
			     r->mmio.is_write);
		return true;
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_SHUTDOWN:
		vm_end(v->vm, VM_END_RESET, "guest reset (triple fault on vCPU %d)", v->id);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		vcpu_system_event(v);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		vm_end(v->vm, VM_END_ERROR, "vCPU %d: KVM entry failed (reason 0x%llx)", v->id,
		       (unsigned long long)r->fail_entry.hardware_entry_failure_reason);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		vm_end(v->vm, VM_END_ERROR, "vCPU %d: KVM internal error %u", v->id,
		       r->internal.suberror);
		return false;
	default:
		vm_end(v->vm, VM_END_ERROR, "vCPU %d: unexpected KVM exit %u", v->id,
		       r->exit_reason);
		return false;
	}
}

/* Completes the I/O of the last exit without running guest code: KVM_RUN
 * with immediate_exit finishes pending PIO/MMIO and returns -EINTR. Needed
 * before the vCPU's registers are read for migration. */
static void vcpu_settle(void *arg)
{
	struct vcpu *v = arg;

	v->run->immediate_exit = 1;
	if (ioctl(v->fd, KVM_RUN, 0) == 0)
		vcpu_handle_exit(v);
	v->run->immediate_exit = 0;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	unsigned gen = 0;
	sigset_t set;

	privilege_seccomp(THREAD_VCPU);
	v->tid = (int)syscall(SYS_gettid);
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	for (;;) {
		v->run->immediate_exit = 0;
		__sync_synchronize();
		if (!vm_vcpu_checkpoint(v->vm, &gen, vcpu_settle, v))
			break;
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				vm_vcpu_throttle(v->vm, &v->ran_since);
				continue;
			}
			vm_end(v->vm, VM_END_ERROR, "vCPU %d: KVM_RUN failed: %s", v->id,
			       strerror(errno));
			break;
		}
		if (!vcpu_handle_exit(v))
			break;
	}
	return NULL;
}

int vcpu_start(struct vcpu *v)
{
	int err = pthread_create(&v->thread, NULL, vcpu_thread, v);

	if (err)
		return -err;
	v->started = true;
	return 0;
}
