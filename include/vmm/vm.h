/* One KVM virtual machine: the KVM fds, guest RAM, I/O buses, vCPUs, the
 * legacy devices and the machine-wide run state (running, paused, ended).
 * The run state is driven by requests from any thread (QMP, vCPUs, signals)
 * and acknowledged by each vCPU thread; see vm_pause(). */
#ifndef VMM_VM_H
#define VMM_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "vmm/bus.h"
#include "vmm/log.h"
#include "vmm/mem.h"

struct vcpu;
struct device;
struct serial;
struct pm;
struct kvm_cpuid2;

/* Why the guest stopped for good. */
enum vm_end {
	VM_END_NONE = 0,
	VM_END_POWEROFF,   /* guest powered off: exit 0 */
	VM_END_RESET,      /* guest asked for a reset/reboot: exit 0 */
	VM_END_QUIT,       /* host asked to quit (QMP quit, signal): exit 0 */
	VM_END_PANIC,      /* guest reported a panic: exit 1 */
	VM_END_ERROR,      /* KVM or VMM failure: exit 1 */
};

enum vm_state { VM_RUNNING, VM_PAUSED, VM_ENDED };

/* Where the guest is in its migration life; QMP's inmigrate/postmigrate. */
enum vm_phase {
	VM_PHASE_NORMAL,
	VM_PHASE_INMIGRATE,    /* destination waiting for the guest's state */
	VM_PHASE_POSTMIGRATE,  /* source after handoff: the guest never runs here */
};

/* Called on the thread that paused/resumed the VM, with vm->lock NOT held:
 * devices drain in-flight work on pause (must be complete on return). */
struct vm_pause_hook {
	void (*pause)(void *opaque);
	void (*resume)(void *opaque);
	void *opaque;
};

#define VM_MAX_PAUSE_HOOKS 32
#define VM_MAX_LISTENERS 8

/* Run-state changes reported to listeners (QMP turns them into events). */
enum vm_event {
	VM_EV_STOP,       /* paused */
	VM_EV_RESUME,     /* running again */
	VM_EV_SHUTDOWN,   /* ended: poweroff, quit, panic or error */
	VM_EV_RESET,      /* guest or host asked for a reset */
};

/* Called on the thread that changed the state, with vm->lock NOT held; must
 * not block (hand the event to the loop thread). */
struct vm_listener {
	void (*fn)(void *opaque, enum vm_event ev, enum vm_end why);
	void *opaque;
};

struct vm {
	int kvm_fd;
	int vm_fd;
	int vcpu_mmap_size;
	struct guest_mem mem;
	struct bus pio;             /* set up before vCPUs start, then read-only */
	struct bus mmio;            /* likewise */
	int nr_vcpus;
	struct vcpu **vcpus;
	struct kvm_cpuid2 *cpuid;   /* KVM_GET_SUPPORTED_CPUID, filtered */
	struct serial *serial;
	struct pm *pm;
	int nr_devices;             /* device registry; set up before start */
	struct device *devices;

	/* lock guards state, requested, held, rehearsing, acked, end, phase,
	 * end_msg, the hooks and listener arrays; cond signals any change of them. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum vm_state state;
	enum vm_state requested;    /* what vCPUs are asked to reach */
	bool held;                  /* vCPU threads wait for vm_start() */
	bool rehearsing;            /* vm_rehearse_pause() has the vCPUs */
	int acked;                  /* vCPUs that reached `requested` */
	enum vm_end end;
	enum vm_phase phase;
	char end_msg[256];
	int nr_pause_hooks;
	struct vm_pause_hook pause_hooks[VM_MAX_PAUSE_HOOKS];
	int nr_listeners;
	struct vm_listener listeners[VM_MAX_LISTENERS];
	int end_eventfd;            /* becomes readable once end != NONE */
	unsigned pause_gen;         /* bumped by every vm_pause() */
	uint64_t clock_ns;          /* kvmclock saved at pause */
	unsigned throttle_pct;      /* share of time vCPUs sleep (auto-converge); lock */
	uint64_t throttle_kick_ns;  /* last vm_throttle_kick(); lock */
};

/* Opens /dev/kvm, creates the VM with in-kernel irqchip and PIT, and guest
 * RAM of MEM_SIZE bytes; returns 0 or -errno with a message printed. */
int vm_create(struct vm *vm, uint64_t mem_size, int nr_vcpus) VMM_MUST_CHECK;
/* Releases everything vm_create() and later setup acquired. */
void vm_destroy(struct vm *vm);
/* Sets ISA/IOAPIC interrupt line IRQ to LEVEL via KVM_IRQ_LINE. */
void vm_irq_line(struct vm *vm, uint32_t irq, int level);
/* Records why the guest ended (first reason wins), tells vCPUs to stop and
 * wakes the main loop. Safe from any thread, including vCPU threads. */
void vm_end(struct vm *vm, enum vm_end why, const char *fmt, ...) VMM_PRINTF(3, 4);
/* Returns the end reason (VM_END_NONE while the guest can still run). */
enum vm_end vm_ended(struct vm *vm);
/* Stops every vCPU outside KVM_RUN and runs device pause hooks; returns
 * once all have acknowledged. 0, or -ESHUTDOWN if the guest has ended. */
int vm_pause(struct vm *vm) VMM_MUST_CHECK;
/* Resumes a paused VM; 0, -EINVAL if not paused, -ESHUTDOWN if ended,
 * -EPERM after handoff to a migration destination or before incoming state. */
int vm_resume(struct vm *vm) VMM_MUST_CHECK;
/* Stops the vCPUs as vm_pause() does, without the pause hooks, the clock
 * or a STOP event, runs FN(ARG) while they stand still and lets them go
 * again: what a pause will cost, measured ahead of it. *STOP_NS is how long
 * stopping them took (0 if the guest is paused already; FN runs all the
 * same). vm_pause() and vm_resume() wait for it. 0, -EAGAIN before the
 * vCPUs run, -ESHUTDOWN once the guest has ended. */
int vm_rehearse_pause(struct vm *vm, void (*fn)(void *), void *arg, uint64_t *stop_ns);
/* Returns the current run state. */
enum vm_state vm_state(struct vm *vm);
/* Sets the migration phase (see enum vm_phase). */
void vm_set_phase(struct vm *vm, enum vm_phase phase);
/* Returns the migration phase. */
enum vm_phase vm_phase(struct vm *vm);
/* Adds a device pause/resume hook; -ENOSPC when full. */
int vm_add_pause_hook(struct vm *vm, const struct vm_pause_hook *hook) VMM_MUST_CHECK;
/* Adds a run-state listener; -ENOSPC when full. Call before vm_start. */
int vm_add_listener(struct vm *vm, const struct vm_listener *l) VMM_MUST_CHECK;
/* Starts one thread per vCPU (created by vcpu_create_all), held before
 * its first KVM_RUN until vm_start(); a migration's destination does this
 * while it waits, so the thread starts are no part of the downtime. Does
 * nothing if the threads exist; 0 or -errno (the guest then ended). */
int vm_spawn_vcpus(struct vm *vm) VMM_MUST_CHECK;
/* Reports VM_EV_RESUME, as QEMU's RESUME event marks any start (on a
 * migration's destination: the guest runs there from now on), and lets the
 * vCPU threads run (vm_spawn_vcpus() first if need be); 0 or -errno. */
int vm_start(struct vm *vm) VMM_MUST_CHECK;
/* Waits for every vCPU thread to finish (after vm_end). */
void vm_join(struct vm *vm);
/* vCPU side of the run state: acknowledges and waits out a pause; returns
 * false once the vCPU must finish. GEN is the vCPU's last acked pause;
 * SETTLE(ARG), if given, runs once before acknowledging a pause. */
bool vm_vcpu_checkpoint(struct vm *vm, unsigned *gen, void (*settle)(void *), void *arg);
/* CLOCK_MONOTONIC in ns. */
uint64_t vm_now_ns(void);
/* The calling thread's CPU time in ns: what a piece of work costs, without
 * the time other threads held the CPU meanwhile. */
uint64_t vm_thread_ns(void);
/* Auto-converge for migration: from now on vCPUs sleep PCT% (0-99) of the
 * time; 0 turns it off. A throttled vCPU sleeps when it is kicked, so the
 * caller kicks them (vm_throttle_kick) every few ms. */
void vm_set_throttle(struct vm *vm, unsigned pct);
/* Kicks every vCPU if the VM is throttled, at most every 10 ms. */
void vm_throttle_kick(struct vm *vm);
/* vCPU side: after a kick, sleeps PCT/(100-PCT) of the time it ran since
 * *RAN_SINCE (at most 1 s; a pause or the end wakes it at once). A first
 * kick, or one over 2 s after the last, only starts the clock. */
void vm_vcpu_throttle(struct vm *vm, uint64_t *ran_since);
/* Process exit status for an end reason (0 for clean ends, 1 otherwise). */
int vm_end_status(enum vm_end why);

#endif
