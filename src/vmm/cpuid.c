/* Guest CPUID: KVM's supported table with the hypervisor bit, the TSC
 * deadline timer and per-vCPU topology (APIC IDs in leaves 0x1 and 0xB, core
 * count for AMD). */
#include <errno.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include "vmm/cpuid.h"

/* KVM emulates the LAPIC's TSC deadline mode but, before Linux 6.14, leaves
 * it out of the supported table: the VMM is to add it. Without it a Linux
 * guest calibrates its LAPIC timer against the PIT, and under nested,
 * emulated KVM some boots of the idle bench guest then kept KVM's PIT thread
 * and the vCPUs busy (about 1000 halt exits a second, 3 s of vCPU CPU in an
 * 11 s migration); with it, seven boots in a row stayed quiet (0.2 s). */
static void cpuid_add_tsc_deadline(int kvm_fd, struct kvm_cpuid2 *c)
{
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) <= 0)
		return;
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == 1)
			c->entries[i].ecx |= 1u << 24;
}

struct kvm_cpuid2 *cpuid_supported(int kvm_fd)
{
	for (int nent = 128; nent <= 4096; nent *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));

		if (!c)
			return NULL;
		c->nent = (uint32_t)nent;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			cpuid_add_tsc_deadline(kvm_fd, c);
			return c;
		}
		free(c);
		if (errno != E2BIG)
			return NULL;
	}
	errno = E2BIG;
	return NULL;
}

static int cpuid_bits(int n)
{
	int b = 0;

	while ((1 << b) < n)
		b++;
	return b;
}

struct kvm_cpuid2 *cpuid_for_vcpu(const struct kvm_cpuid2 *base, int id, int nr)
{
	size_t size = sizeof(*base) + base->nent * sizeof(base->entries[0]);
	struct kvm_cpuid2 *c = malloc(size);

	if (!c)
		return NULL;
	memcpy(c, base, size);
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		switch (e->function) {
		case 1:
			e->ebx = (e->ebx & 0xFFFF) | ((uint32_t)nr << 16) | ((uint32_t)id << 24);
			e->ecx |= 1u << 31;            /* hypervisor present */
			if (nr > 1)
				e->edx |= 1u << 28;    /* HTT: ebx[23:16] is valid */
			break;
		case 0xB:
			e->edx = (uint32_t)id;
			if (e->index == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = (1 << 8);
			} else if (e->index == 1) {
				e->eax = (uint32_t)cpuid_bits(nr);
				e->ebx = (uint32_t)nr;
				e->ecx = (2 << 8) | 1;
			} else {
				e->eax = e->ebx = 0;
				e->ecx = e->index;
			}
			break;
		case 0x80000008:
			e->ecx = (e->ecx & ~0xFFu) | (uint32_t)(nr - 1);
			break;
		}
	}
	return c;
}
