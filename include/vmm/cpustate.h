/* KVM state of vCPUs and of the VM's in-kernel devices, as plain structs with
 * state descriptions, for migration. Get order and set order are written
 * down in cpustate.c where they are done: on restore the LAPIC must precede
 * the MSRs (the TSC-deadline MSR is dropped unless the LAPIC timer is already
 * in TSC-deadline mode). */
#ifndef VMM_CPUSTATE_H
#define VMM_CPUSTATE_H

#include <linux/kvm.h>
#include <stdint.h>
#include "vmm/log.h"

#define CPU_MAX_MSRS 256

struct vmstate_desc;
struct vcpu;
struct vm;

struct cpu_state {
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xsave xsave;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs debugregs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	uint32_t nmsrs;
	uint32_t msr_index[CPU_MAX_MSRS];
	uint64_t msr_data[CPU_MAX_MSRS];
};

extern const struct vmstate_desc cpu_state_vmsd;

struct vm_kvm_state {
	struct kvm_irqchip pic_master;
	struct kvm_irqchip pic_slave;
	struct kvm_irqchip ioapic;
	struct kvm_pit_state2 pit;
	uint64_t clock_ns;
	uint32_t tsc_khz;
};

extern const struct vmstate_desc vm_kvm_state_vmsd;

/* MSR indexes worth migrating: KVM's list filtered to those vCPU 0 can read.
 * Fills IDX (CPU_MAX_MSRS entries); returns the count or -errno. Call it
 * before vCPU 0 runs: its ioctls wait for as long as the vCPU is in KVM_RUN. */
int cpustate_msr_list(struct vm *vm, uint32_t *idx) VMM_MUST_CHECK;
/* Reads the full state of paused vCPU V, with MSRS from cpustate_msr_list. */
int cpustate_save(struct vcpu *v, const uint32_t *msrs, int nmsrs, struct cpu_state *s)
	VMM_MUST_CHECK;
/* Loads S into vCPU V (not yet run); 0 or -errno with a reason in ERR. */
int cpustate_load(struct vcpu *v, const struct cpu_state *s, char *err, size_t errlen)
	VMM_MUST_CHECK;
/* Reads the in-kernel irqchip, PIT, kvmclock (saved at pause) and TSC rate. */
int vmstate_kvm_save(struct vm *vm, struct vm_kvm_state *s) VMM_MUST_CHECK;
/* Loads them into a VM that has not started; 0 or -errno with ERR set. */
int vmstate_kvm_load(struct vm *vm, const struct vm_kvm_state *s, char *err, size_t errlen)
	VMM_MUST_CHECK;

#endif
