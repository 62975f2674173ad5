/* vCPU threads: one thread per vCPU runs KVM_RUN and dispatches exits to the
 * buses. Each thread is a small state machine (running, paused, finished)
 * driven by vm->requested; a kick (signal + immediate_exit) gets it out of
 * KVM_RUN quickly. */
#ifndef VMM_VCPU_H
#define VMM_VCPU_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "vmm/log.h"

struct vm;
struct kvm_run;

struct vcpu {
	struct vm *vm;
	int id;
	int fd;
	struct kvm_run *run;     /* mmap of the vCPU fd */
	pthread_t thread;
	int tid;                 /* host thread id, once started */
	bool started;
	uint64_t ran_since;      /* vCPU thread: throttle accounting (vm_vcpu_throttle) */
};

/* Creates vCPU ID with the VM's CPUID and the LAPIC set up for the boot
 * protocol (LINT0 ExtINT, LINT1 NMI); returns 0 or -errno. */
int vcpu_create(struct vm *vm, int id, struct vcpu **out) VMM_MUST_CHECK;
/* Closes and frees a vCPU whose thread is not running. */
void vcpu_destroy(struct vcpu *vcpu);
/* Starts the vCPU thread; 0 or -errno. */
int vcpu_start(struct vcpu *vcpu) VMM_MUST_CHECK;
/* Forces the vCPU out of KVM_RUN soon; safe from any thread. */
void vcpu_kick(struct vcpu *vcpu);
/* Installs the (empty) kick signal handler; call once before vcpu_start. */
void vcpu_signals_init(void);

#endif
