/* CPUID given to the guest: what KVM supports, with per-vCPU topology (APIC
 * IDs) and the hypervisor leaves that make the guest use kvmclock. */
#ifndef VMM_CPUID_H
#define VMM_CPUID_H

#include "vmm/log.h"

struct kvm_cpuid2;

/* Fetches KVM_GET_SUPPORTED_CPUID from KVM_FD, plus the TSC deadline timer
 * when KVM has it; returns a malloc'd table or NULL with errno set. */
struct kvm_cpuid2 *cpuid_supported(int kvm_fd);
/* Returns a malloc'd copy of BASE adjusted for vCPU ID of NR_VCPUS, or NULL. */
struct kvm_cpuid2 *cpuid_for_vcpu(const struct kvm_cpuid2 *base, int id, int nr_vcpus);

#endif
