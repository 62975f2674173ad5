/* The VM: KVM setup (irqchip, PIT, TSS, RAM slots) and the machine-wide run
 * state that QMP, signals and vCPUs drive: pause/resume with acknowledgement
 * from every vCPU, and the one-way end of the guest. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include "vmm/cpuid.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

#define VM_TSS_ADDR      0xFFFBD000UL
#define VM_IDENTITY_ADDR 0xFFFBC000ULL

static int vm_check_caps(struct vm *vm)
{
	static const struct { int cap; const char *name; } caps[] = {
		{ KVM_CAP_IRQCHIP, "IRQCHIP" },
		{ KVM_CAP_USER_MEMORY, "USER_MEMORY" },
		{ KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR" },
		{ KVM_CAP_PIT2, "PIT2" },
		{ KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT" },
		{ KVM_CAP_EXT_CPUID, "EXT_CPUID" },
	};

	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		vmm_err("/dev/kvm has an unsupported API version");
		return -ENOTSUP;
	}
	for (size_t i = 0; i < ARRAY_SIZE(caps); i++) {
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0) {
			vmm_err("KVM lacks KVM_CAP_%s", caps[i].name);
			return -ENOTSUP;
		}
	}
	return 0;
}

static int vm_setup_kvm(struct vm *vm)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	uint64_t ident = VM_IDENTITY_ADDR;

	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, VM_TSS_ADDR) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &ident) < 0 ||
	    ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0 ||
	    ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		int err = -errno;

		vmm_err("KVM VM setup failed: %s", strerror(errno));
		return err;
	}
	for (int i = 0; i < vm->mem.nr_regions; i++) {
		const struct mem_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region kr = {
			.slot = (uint32_t)i, .guest_phys_addr = r->gpa, .memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)r->host,
		};

		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0) {
			int err = -errno;

			vmm_err("cannot map guest RAM into KVM: %s", strerror(errno));
			return err;
		}
	}
	return 0;
}

int vm_create(struct vm *vm, uint64_t mem_size, int nr_vcpus)
{
	pthread_condattr_t ca;
	int err;

	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = vm->end_eventfd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&vm->cond, &ca);
	pthread_condattr_destroy(&ca);
	vm->nr_vcpus = nr_vcpus;
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		err = -errno;
		vmm_err("cannot open /dev/kvm: %s", strerror(errno));
		return err;
	}
	err = vm_check_caps(vm);
	if (err)
		goto fail;
	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	vm->cpuid = cpuid_supported(vm->kvm_fd);
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	vm->end_eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vm->vcpus = calloc((size_t)nr_vcpus, sizeof(*vm->vcpus));
	if (vm->vcpu_mmap_size <= 0 || !vm->cpuid || vm->vm_fd < 0 || vm->end_eventfd < 0 ||
	    !vm->vcpus) {
		err = -errno ? -errno : -ENOMEM;
		vmm_err("cannot create the KVM VM: %s", strerror(-err));
		goto fail;
	}
	err = mem_init(&vm->mem, mem_size);
	if (err) {
		vmm_err("cannot allocate %llu MiB of guest RAM: %s",
			(unsigned long long)(mem_size >> 20), strerror(-err));
		goto fail;
	}
	err = vm_setup_kvm(vm);
	if (err)
		goto fail;
	return 0;
fail:
	vm_destroy(vm);
	return err;
}

void vm_destroy(struct vm *vm)
{
	for (int i = 0; vm->vcpus && i < vm->nr_vcpus; i++)
		if (vm->vcpus[i])
			vcpu_destroy(vm->vcpus[i]);
	free(vm->vcpus);
	vm->vcpus = NULL;
	free(vm->devices);
	vm->devices = NULL;
	vm->nr_devices = 0;
	mem_destroy(&vm->mem);
	free(vm->cpuid);
	vm->cpuid = NULL;
	if (vm->end_eventfd >= 0)
		close(vm->end_eventfd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->end_eventfd = vm->vm_fd = vm->kvm_fd = -1;
}

void vm_irq_line(struct vm *vm, uint32_t irq, int level)
{
	struct kvm_irq_level l = { .irq = irq, .level = (uint32_t)level };

	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0)
		vmm_warn("KVM_IRQ_LINE %u failed: %s", irq, strerror(errno));
}

static void vm_notify(struct vm *vm, enum vm_event ev, enum vm_end why)
{
	for (int i = 0; i < vm->nr_listeners; i++)
		vm->listeners[i].fn(vm->listeners[i].opaque, ev, why);
}

static void vm_kick_all(struct vm *vm)
{
	for (int i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i])
			vcpu_kick(vm->vcpus[i]);
}

void vm_end(struct vm *vm, enum vm_end why, const char *fmt, ...)
{
	uint64_t one = 1;
	bool first = false;
	va_list ap;

	pthread_mutex_lock(&vm->lock);
	if (vm->end == VM_END_NONE) {
		first = true;
		vm->end = why;
		va_start(ap, fmt);
		vsnprintf(vm->end_msg, sizeof(vm->end_msg), fmt, ap);
		va_end(ap);
		vm->requested = VM_ENDED;
		vm->state = VM_ENDED;
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
	if (!first)
		return;
	vm_kick_all(vm);
	if (write(vm->end_eventfd, &one, sizeof(one)) < 0)
		vmm_warn("cannot signal the end of the guest: %s", strerror(errno));
	vm_notify(vm, why == VM_END_RESET ? VM_EV_RESET : VM_EV_SHUTDOWN, why);
}

enum vm_end vm_ended(struct vm *vm)
{
	enum vm_end e;

	pthread_mutex_lock(&vm->lock);
	e = vm->end;
	pthread_mutex_unlock(&vm->lock);
	return e;
}

enum vm_state vm_state(struct vm *vm)
{
	enum vm_state s;

	pthread_mutex_lock(&vm->lock);
	s = vm->state;
	pthread_mutex_unlock(&vm->lock);
	return s;
}

/* With vm->lock held: whether the vCPU threads run the guest (not before
 * they start, nor while held for an incoming migration). */
static bool vm_vcpus_run(const struct vm *vm)
{
	return vm->nr_vcpus && vm->vcpus[0] && vm->vcpus[0]->started && !vm->held;
}

/* Takes vm->lock once no rehearsal (vm_rehearse_pause) is under way. */
static void vm_lock_settled(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	while (vm->rehearsing && vm->end == VM_END_NONE)
		pthread_cond_wait(&vm->cond, &vm->lock);
}

/* With vm->lock held: asks every vCPU out of KVM_RUN and waits until each
 * has acknowledged at its checkpoint, or the guest ended. */
static void vm_stop_vcpus(struct vm *vm)
{
	vm->pause_gen++;
	vm->acked = 0;
	vm->requested = VM_PAUSED;
	pthread_cond_broadcast(&vm->cond);	/* wakes throttled vCPUs */
	pthread_mutex_unlock(&vm->lock);
	vm_kick_all(vm);
	pthread_mutex_lock(&vm->lock);
	while (vm->acked < vm->nr_vcpus && vm->end == VM_END_NONE)
		pthread_cond_wait(&vm->cond, &vm->lock);
}

int vm_pause(struct vm *vm)
{
	struct kvm_clock_data clock = { 0 };

	vm_lock_settled(vm);
	if (vm->end != VM_END_NONE) {
		pthread_mutex_unlock(&vm->lock);
		return -ESHUTDOWN;
	}
	if (vm->state == VM_PAUSED) {
		pthread_mutex_unlock(&vm->lock);
		return 0;
	}
	if (!vm_vcpus_run(vm)) {
		pthread_mutex_unlock(&vm->lock);
		return -EAGAIN;   /* nothing runs yet (incoming migration) */
	}
	vm_stop_vcpus(vm);
	if (vm->end != VM_END_NONE) {
		pthread_mutex_unlock(&vm->lock);
		return -ESHUTDOWN;
	}
	vm->state = VM_PAUSED;
	pthread_mutex_unlock(&vm->lock);
	/* Keep the guest's clock from jumping over the time spent paused. */
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) == 0)
		vm->clock_ns = clock.clock;
	for (int i = 0; i < vm->nr_pause_hooks; i++)
		vm->pause_hooks[i].pause(vm->pause_hooks[i].opaque);
	vm_notify(vm, VM_EV_STOP, VM_END_NONE);
	return 0;
}

int vm_resume(struct vm *vm)
{
	struct kvm_clock_data clock = { .clock = vm->clock_ns };

	vm_lock_settled(vm);
	if (vm->end != VM_END_NONE || vm->state != VM_PAUSED || vm->phase != VM_PHASE_NORMAL) {
		int err = vm->end != VM_END_NONE ? -ESHUTDOWN :
			  vm->phase != VM_PHASE_NORMAL ? -EPERM : -EINVAL;

		pthread_mutex_unlock(&vm->lock);
		return err;
	}
	pthread_mutex_unlock(&vm->lock);
	for (int i = vm->nr_pause_hooks - 1; i >= 0; i--)
		if (vm->pause_hooks[i].resume)
			vm->pause_hooks[i].resume(vm->pause_hooks[i].opaque);
	if (vm->clock_ns && ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
		vmm_warn("KVM_SET_CLOCK failed: %s", strerror(errno));
	pthread_mutex_lock(&vm->lock);
	if (vm->end == VM_END_NONE) {
		vm->requested = VM_RUNNING;
		vm->state = VM_RUNNING;
	}
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	vm_notify(vm, VM_EV_RESUME, VM_END_NONE);
	return 0;
}

int vm_rehearse_pause(struct vm *vm, void (*fn)(void *), void *arg, uint64_t *stop_ns)
{
	uint64_t t0 = vm_now_ns();
	bool ended;

	vm_lock_settled(vm);
	*stop_ns = 0;
	if (vm->end != VM_END_NONE || !vm_vcpus_run(vm)) {
		int err = vm->end != VM_END_NONE ? -ESHUTDOWN : -EAGAIN;

		pthread_mutex_unlock(&vm->lock);
		return err;
	}
	vm->rehearsing = true;
	if (vm->state == VM_RUNNING) {
		vm_stop_vcpus(vm);
		*stop_ns = vm_now_ns() - t0;
	}
	ended = vm->end != VM_END_NONE;
	pthread_mutex_unlock(&vm->lock);
	if (!ended)
		fn(arg);
	pthread_mutex_lock(&vm->lock);
	ended = vm->end != VM_END_NONE;
	if (!ended && vm->state == VM_RUNNING)
		vm->requested = VM_RUNNING;
	vm->rehearsing = false;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return ended ? -ESHUTDOWN : 0;
}

void vm_set_phase(struct vm *vm, enum vm_phase phase)
{
	pthread_mutex_lock(&vm->lock);
	vm->phase = phase;
	pthread_mutex_unlock(&vm->lock);
}

enum vm_phase vm_phase(struct vm *vm)
{
	enum vm_phase p;

	pthread_mutex_lock(&vm->lock);
	p = vm->phase;
	pthread_mutex_unlock(&vm->lock);
	return p;
}

bool vm_vcpu_checkpoint(struct vm *vm, unsigned *gen, void (*settle)(void *), void *arg)
{
	bool run, settled = false;

	pthread_mutex_lock(&vm->lock);
	while (vm->requested == VM_PAUSED || (vm->held && vm->requested == VM_RUNNING)) {
		if (*gen != vm->pause_gen) {
			if (settle && !settled) {
				/* Finish the last exit's I/O before the state is read. */
				pthread_mutex_unlock(&vm->lock);
				settle(arg);
				settled = true;
				pthread_mutex_lock(&vm->lock);
				continue;
			}
			*gen = vm->pause_gen;
			vm->acked++;
			pthread_cond_broadcast(&vm->cond);
		}
		pthread_cond_wait(&vm->cond, &vm->lock);
	}
	run = vm->requested == VM_RUNNING;
	pthread_mutex_unlock(&vm->lock);
	return run;
}

static uint64_t vm_clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t vm_now_ns(void)
{
	return vm_clock_ns(CLOCK_MONOTONIC);
}

uint64_t vm_thread_ns(void)
{
	return vm_clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

void vm_set_throttle(struct vm *vm, unsigned pct)
{
	pthread_mutex_lock(&vm->lock);
	vm->throttle_pct = pct > 99 ? 99 : pct;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

void vm_throttle_kick(struct vm *vm)
{
	uint64_t now = vm_now_ns();
	bool on;

	pthread_mutex_lock(&vm->lock);
	on = vm->throttle_pct && vm->requested == VM_RUNNING &&
	     now - vm->throttle_kick_ns >= 10000000ULL;
	if (on)
		vm->throttle_kick_ns = now;
	pthread_mutex_unlock(&vm->lock);
	if (on)
		vm_kick_all(vm);
}

void vm_vcpu_throttle(struct vm *vm, uint64_t *ran_since)
{
	uint64_t now = vm_now_ns(), ns, end;
	struct timespec ts;

	pthread_mutex_lock(&vm->lock);
	/* a clock left from an earlier throttle starts over */
	if (!vm->throttle_pct || !*ran_since || now - *ran_since > 2000000000ULL) {
		*ran_since = vm->throttle_pct ? now : 0;
		pthread_mutex_unlock(&vm->lock);
		return;
	}
	ns = (now - *ran_since) * vm->throttle_pct / (100 - vm->throttle_pct);
	end = now + (ns < 1000000000ULL ? ns : 1000000000ULL);
	ts = (struct timespec){ (time_t)(end / 1000000000ULL), (long)(end % 1000000000ULL) };
	while (vm->throttle_pct && vm->requested == VM_RUNNING && vm->end == VM_END_NONE &&
	       pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&vm->lock);
	*ran_since = vm_now_ns();
}

int vm_add_pause_hook(struct vm *vm, const struct vm_pause_hook *hook)
{
	if (vm->nr_pause_hooks == VM_MAX_PAUSE_HOOKS)
		return -ENOSPC;
	vm->pause_hooks[vm->nr_pause_hooks++] = *hook;
	return 0;
}

int vm_add_listener(struct vm *vm, const struct vm_listener *l)
{
	if (vm->nr_listeners == VM_MAX_LISTENERS)
		return -ENOSPC;
	vm->listeners[vm->nr_listeners++] = *l;
	return 0;
}

int vm_spawn_vcpus(struct vm *vm)
{
	if (!vm->nr_vcpus || vm->vcpus[0]->started)
		return 0;
	pthread_mutex_lock(&vm->lock);
	vm->held = true;
	pthread_mutex_unlock(&vm->lock);
	vcpu_signals_init();
	for (int i = 0; i < vm->nr_vcpus; i++) {
		int err = vcpu_start(vm->vcpus[i]);

		if (err) {
			vm_end(vm, VM_END_ERROR, "cannot start vCPU %d: %s", i, strerror(-err));
			return err;
		}
	}
	return 0;
}

int vm_start(struct vm *vm)
{
	int err = vm_spawn_vcpus(vm);

	if (err)
		return err;
	/* Announced first, as QEMU's RESUME is: on a shared CPU the vCPUs
	 * let go run before this thread goes on (a bench round under
	 * emulation: STOP to RESUME 32 ms against a downtime of 21). */
	vm_notify(vm, VM_EV_RESUME, VM_END_NONE);
	pthread_mutex_lock(&vm->lock);
	vm->held = false;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

void vm_join(struct vm *vm)
{
	for (int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = vm->vcpus[i];

		if (v && v->started) {
			pthread_join(v->thread, NULL);
			v->started = false;
		}
	}
}

int vm_end_status(enum vm_end why)
{
	return why == VM_END_PANIC || why == VM_END_ERROR ? 1 : 0;
}
